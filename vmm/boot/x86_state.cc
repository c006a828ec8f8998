// GDT/TSS writer and initial register state. See x86_state.h for the layout and values.
#include "vmm/boot/x86_state.h"

#include <cstring>

#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {
namespace {

// Segment type nibbles (kvm_segment.type and descriptor bits 40..43).
constexpr uint8_t kTypeCodeReadAccessed = 0xb;
constexpr uint8_t kTypeDataWriteAccessed = 0x3;
constexpr uint8_t kTypeTss64Busy = 0xb;

// A flat code or data segment (base 0, limit 4 GiB, 4 KiB granularity) as KVM sees it.
kvm_segment FlatSegment(uint16_t selector, uint8_t type, uint8_t dpl, bool code64) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffffffff;
  s.selector = selector;
  s.type = type;
  s.present = 1;
  s.dpl = dpl;
  s.db = code64 ? 0 : 1;  // L=1 requires D=0
  s.s = 1;
  s.l = code64 ? 1 : 0;
  s.g = 1;
  return s;
}

// The same segment as an 8-byte GDT descriptor.
uint64_t Descriptor(const kvm_segment& s) {
  const uint64_t limit = s.g ? (s.limit >> 12) : s.limit;  // 20-bit limit field
  uint64_t d = 0;
  d |= limit & 0xffff;
  d |= (s.base & 0xffffff) << 16;
  d |= uint64_t{s.type} << 40;
  d |= uint64_t{s.s} << 44;
  d |= uint64_t{s.dpl} << 45;
  d |= uint64_t{s.present} << 47;
  d |= ((limit >> 16) & 0xf) << 48;
  d |= uint64_t{s.avl} << 52;
  d |= uint64_t{s.l} << 53;
  d |= uint64_t{s.db} << 54;
  d |= uint64_t{s.g} << 55;
  d |= ((s.base >> 24) & 0xff) << 56;
  return d;
}

kvm_segment TssSegment(uint32_t vcpu) {
  kvm_segment s{};
  s.base = TssGpa(vcpu);
  s.limit = TssLimit(vcpu);
  s.selector = TssSelector(vcpu);
  s.type = kTypeTss64Busy;  // as LTR leaves it; TR's cached type: see TrType
  s.present = 1;
  return s;
}

kvm_segment RealModeSegment(uint8_t type) {
  kvm_segment s{};
  s.base = 0;
  s.limit = 0xffff;
  s.selector = 0;
  s.type = type;
  s.present = 1;
  s.s = 1;
  return s;
}

void Store64(uint8_t* p, uint64_t v) { std::memcpy(p, &v, sizeof(v)); }

}  // namespace

absl::Status WriteGdtAndTss(const GuestRamView& ram, const BootLayout& layout,
                            bool ram_is_zero) {
  if (!ram.Contains(MMV_GDT_GPA, 0x1000) || !ram.Contains(MMV_IDT_GPA, 0x1000) ||
      !ram.Contains(kIoBitmapGpa, kIoBitmapBytes + 1)) {
    return absl::OutOfRangeError(absl::StrFormat(
        "GDT/IDT pages and I/O bitmap [%#x, %#x) lie outside guest RAM [0, %#x)",
        MMV_GDT_GPA, kIoBitmapGpa + kIoBitmapBytes + 1, ram.size));
  }
  if (layout.nr_vcpus == 0 || layout.nr_vcpus > MMV_UCALL_MAX_VCPUS) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "GDT: %u vCPUs, want 1..%u", layout.nr_vcpus, MMV_UCALL_MAX_VCPUS));
  }
  uint8_t* gdt = ram.At(MMV_GDT_GPA);
  std::memset(gdt, 0, 0x1000);
  Store64(gdt + kKernelCodeSelector,
          Descriptor(FlatSegment(kKernelCodeSelector, kTypeCodeReadAccessed, 0, true)));
  Store64(gdt + kKernelDataSelector,
          Descriptor(FlatSegment(kKernelDataSelector, kTypeDataWriteAccessed, 0, false)));
  Store64(gdt + kUserCode32Selector,
          Descriptor(FlatSegment(kUserCode32Selector, kTypeCodeReadAccessed, 3, false)));
  Store64(gdt + kUserDataSelector,
          Descriptor(FlatSegment(kUserDataSelector, kTypeDataWriteAccessed, 3, false)));
  Store64(gdt + kUserCodeSelector,
          Descriptor(FlatSegment(kUserCodeSelector, kTypeCodeReadAccessed, 3, true)));
  for (uint32_t i = 0; i < layout.nr_vcpus; ++i) {
    const kvm_segment tss = TssSegment(i);
    // A 64-bit system descriptor is 16 bytes: the low 8 as usual, then base[63:32].
    Store64(gdt + tss.selector, Descriptor(tss));
    Store64(gdt + tss.selector + 8, tss.base >> 32);
    uint8_t* t = ram.At(tss.base);
    Store64(t + 4, layout.Ring0StackTop(i));  // RSP0 (offset 4, unaligned by design)
    const uint16_t iomap_base = TssIoMapBase(i);
    std::memcpy(t + kTssIoMapBaseOffset, &iomap_base, sizeof(iomap_base));
  }
  // One I/O permission bitmap shared by every TSS: all bits clear (every port granted, so
  // any IN/OUT at CPL3 exits to the VMM), then the 0xff byte the CPU may read past the
  // last port (it reads two bytes per check).
  if (!ram_is_zero) {
    std::memset(ram.At(kIoBitmapGpa), 0, kIoBitmapBytes);
    std::memset(ram.At(MMV_IDT_GPA), 0, 0x1000);
  }
  *ram.At(kIoBitmapGpa + kIoBitmapBytes) = 0xff;
  return absl::OkStatus();
}

kvm_regs LongModeRegs(const BootLayout& layout, uint64_t entry, uint32_t vcpu, uint64_t arg) {
  kvm_regs regs{};
  regs.rip = entry;
  regs.rsp = layout.StackTop(vcpu) - 8;
  regs.rdi = vcpu;
  regs.rsi = arg;
  regs.rflags = kRflagsFixed;  // IOPL 0: ports are granted by the TSS bitmap, never IOPL
  return regs;
}

kvm_sregs LongModeSregs(const kvm_sregs& base, uint64_t cr3, uint32_t vcpu,
                        GuestPrivilege privilege, TrType tr_type) {
  kvm_sregs sregs = base;
  const bool user = privilege == GuestPrivilege::kUser;
  const uint8_t dpl = user ? 3 : 0;
  const uint16_t rpl = dpl;
  sregs.cs = FlatSegment((user ? kUserCodeSelector : kKernelCodeSelector) | rpl,
                         kTypeCodeReadAccessed, dpl, true);
  const kvm_segment data = FlatSegment((user ? kUserDataSelector : kKernelDataSelector) | rpl,
                                       kTypeDataWriteAccessed, dpl, false);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.tr = TssSegment(vcpu);
  sregs.tr.type = static_cast<uint8_t>(tr_type);  // the GDT copy stays busy (x86_state.h)
  sregs.ldt = kvm_segment{};
  sregs.ldt.unusable = 1;
  sregs.gdt.base = MMV_GDT_GPA;
  sregs.gdt.limit = static_cast<uint16_t>(kFirstTssSelector + 16 * MMV_UCALL_MAX_VCPUS - 1);
  sregs.idt.base = MMV_IDT_GPA;
  sregs.idt.limit = 0xfff;
  sregs.cr0 = kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Pg;
  sregs.cr3 = cr3;
  sregs.cr4 = kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt;
  sregs.efer = kEferSce | kEferLme | kEferLma;
  return sregs;
}

kvm_regs RealModeRegs(uint64_t entry) {
  kvm_regs regs{};
  regs.rip = entry;
  regs.rsp = MMV_REAL_MODE_STACK_TOP;
  regs.rflags = kRflagsFixed;
  return regs;
}

kvm_sregs RealModeSregs(const kvm_sregs& base) {
  kvm_sregs sregs = base;
  sregs.cs = RealModeSegment(kTypeCodeReadAccessed);
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss =
      RealModeSegment(kTypeDataWriteAccessed);
  sregs.cr0 = base.cr0 & ~(kCr0Pe | kCr0Pg);
  sregs.cr3 = 0;
  sregs.cr4 = 0;
  sregs.efer = 0;
  return sregs;
}

}  // namespace mmuvisor::vmm
