// GDT/TSS contents and the initial kvm_regs / kvm_sregs for long mode (CPL3, CPL0) and
// real mode.
#include "vmm/boot/x86_state.h"

#include <cstdint>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kRamSize = 16ull << 20;

uint64_t Load64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

BootLayout TwoVcpuLayout() {
  BootLayout layout;
  layout.ram_size = kRamSize;
  layout.nr_vcpus = 2;
  layout.free_start = MMV_IMAGE_GPA + 0x2000;
  layout.free_end = kRamSize - 2 * MMV_STACK_SIZE;
  return layout;
}

// What KVM_GET_SREGS returns after vCPU creation, roughly: fields we must keep.
kvm_sregs ResetSregs() {
  kvm_sregs s{};
  s.apic_base = 0xfee00900;
  s.cr0 = 0x60000010;
  s.cr8 = 0;
  s.interrupt_bitmap[0] = 0x5;
  s.tr.type = 0xb;
  s.tr.limit = 0xffff;
  s.tr.present = 1;
  s.ldt.type = 2;
  s.ldt.limit = 0xffff;
  s.ldt.present = 1;
  return s;
}

// Decodes the GDT entry for `selector` and checks it describes `seg`.
void ExpectDescriptorMatches(const std::vector<uint8_t>& ram, const kvm_segment& seg) {
  const uint64_t d = Load64(ram.data() + MMV_GDT_GPA + (seg.selector & ~7u));
  EXPECT_EQ((d >> 40) & 0xf, seg.type) << "selector " << seg.selector;
  EXPECT_EQ((d >> 44) & 1, seg.s);
  EXPECT_EQ((d >> 45) & 3, seg.dpl);
  EXPECT_EQ((d >> 47) & 1, seg.present);
  EXPECT_EQ((d >> 53) & 1, seg.l);
  EXPECT_EQ((d >> 54) & 1, seg.db);
  EXPECT_EQ((d >> 55) & 1, seg.g);
  const uint64_t base = ((d >> 16) & 0xffffff) | ((d >> 56) << 24);
  EXPECT_EQ(base, seg.base & 0xffffffff);
  uint64_t limit = (d & 0xffff) | (((d >> 48) & 0xf) << 16);
  if (seg.g) limit = (limit << 12) | 0xfff;
  EXPECT_EQ(limit, seg.limit);
}

TEST(GdtTest, WritesFlatSegmentsAndOneTssPerVcpu) {
  std::vector<uint8_t> ram(kRamSize, 0xcc);
  const BootLayout layout = TwoVcpuLayout();
  ASSERT_OK(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, layout));
  const uint8_t* gdt = ram.data() + MMV_GDT_GPA;
  EXPECT_EQ(Load64(gdt), 0u);  // null descriptor
  EXPECT_EQ(Load64(gdt + kKernelCodeSelector), 0x00af9b000000ffffull);
  EXPECT_EQ(Load64(gdt + kKernelDataSelector), 0x00cf93000000ffffull);
  EXPECT_EQ(Load64(gdt + kUserCode32Selector), 0x00cffb000000ffffull);
  EXPECT_EQ(Load64(gdt + kUserDataSelector), 0x00cff3000000ffffull);
  EXPECT_EQ(Load64(gdt + kUserCodeSelector), 0x00affb000000ffffull);
  for (uint32_t i = 0; i < 2; ++i) {
    const uint64_t tss = kTssGpa + i * kTssStride;
    const uint64_t lo = Load64(gdt + TssSelector(i));
    // The limit (20 bits, byte granular) reaches the 0xff byte after the I/O bitmap.
    const uint64_t limit = (lo & 0xffff) | (((lo >> 48) & 0xf) << 16);
    EXPECT_EQ(limit, MMV_IO_BITMAP_GPA + 8192 - tss) << "vCPU " << i;
    EXPECT_EQ((lo >> 55) & 1, 0u) << "byte granularity";
    EXPECT_EQ((lo >> 40) & 0xff, 0x8bu);  // present, DPL 0, busy 64-bit TSS
    EXPECT_EQ(((lo >> 16) & 0xffffff) | ((lo >> 56) << 24), tss);
    EXPECT_EQ(Load64(gdt + TssSelector(i) + 8), 0u);  // base[63:32]
    EXPECT_EQ(Load64(ram.data() + tss + 4), layout.StackBottom(i) + 4096);  // RSP0
    uint16_t iomap;
    std::memcpy(&iomap, ram.data() + tss + 102, sizeof(iomap));
    EXPECT_EQ(tss + iomap, MMV_IO_BITMAP_GPA) << "vCPU " << i;  // the shared bitmap
  }
  // Every port granted (bit clear), then the 0xff byte the CPU may read past port 0xffff.
  for (uint64_t port = 0; port < 65536; port += 8) {
    ASSERT_EQ(ram[MMV_IO_BITMAP_GPA + port / 8], 0) << "ports " << port << ".." << port + 7;
  }
  EXPECT_EQ(ram[MMV_IO_BITMAP_GPA + 8192], 0xff);
  EXPECT_EQ(ram[MMV_IO_BITMAP_GPA + 8193], 0xcc) << "nothing written past the 0xff byte";
  EXPECT_EQ(Load64(gdt + TssSelector(2)), 0u);  // no third vCPU
  for (uint64_t i = 0; i < 0x1000; ++i) ASSERT_EQ(ram[MMV_IDT_GPA + i], 0) << i;
  // The TSS array of the maximum vCPU count fits in the GDT page.
  EXPECT_LE(kTssGpa + MMV_UCALL_MAX_VCPUS * kTssStride, MMV_GDT_GPA + 0x1000);
  EXPECT_LE(TssSelector(MMV_UCALL_MAX_VCPUS), kTssGpa - MMV_GDT_GPA);
  // The last vCPU's bitmap offset and limit still fit their fields (16 and 20 bits), and
  // the bitmap lies in the long-mode-unused real-mode window, below the page tables.
  EXPECT_LT(MMV_IO_BITMAP_GPA - TssGpa(MMV_UCALL_MAX_VCPUS - 1), 0x10000u);
  EXPECT_LT(TssLimit(0), 1u << 20);
  EXPECT_LE(MMV_IO_BITMAP_GPA + 8193, MMV_PAGE_TABLE_GPA);
}

TEST(LongModeTest, TrIsBusyByDefaultAndAvailableOnRequestWhileTheGdtCopyStaysBusy) {
  std::vector<uint8_t> ram(kRamSize, 0);
  ASSERT_OK(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, TwoVcpuLayout()));
  const kvm_sregs busy = LongModeSregs(ResetSregs(), MMV_PAGE_TABLE_GPA, 0, GuestPrivilege::kUser);
  EXPECT_EQ(busy.tr.type, 0xb);  // VMX's VM-entry checks want this
  const kvm_sregs available = LongModeSregs(ResetSregs(), MMV_PAGE_TABLE_GPA, 0,
                                            GuestPrivilege::kUser, TrType::kAvailable);
  EXPECT_EQ(available.tr.type, 0x9);  // what QEMU's TCG checks the I/O bitmap with
  EXPECT_EQ(available.tr.base, busy.tr.base);
  EXPECT_EQ(available.tr.limit, busy.tr.limit);
  const uint64_t lo = Load64(ram.data() + MMV_GDT_GPA + TssSelector(0));
  EXPECT_EQ((lo >> 40) & 0xf, 0xbu) << "the descriptor is busy, as LTR leaves it";
}

TEST(GdtTest, TheLastPossibleVcpuGetsTheSharedBitmapToo) {
  std::vector<uint8_t> ram(kRamSize, 0xcc);
  BootLayout layout = TwoVcpuLayout();
  layout.nr_vcpus = MMV_UCALL_MAX_VCPUS;
  ASSERT_OK(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, layout));
  const uint32_t last = MMV_UCALL_MAX_VCPUS - 1;
  const uint64_t tss = TssGpa(last);
  uint16_t iomap;
  std::memcpy(&iomap, ram.data() + tss + 102, sizeof(iomap));
  EXPECT_EQ(tss + iomap, MMV_IO_BITMAP_GPA);
  const kvm_sregs s = LongModeSregs(ResetSregs(), MMV_PAGE_TABLE_GPA, last, GuestPrivilege::kUser);
  EXPECT_EQ(s.tr.base, tss);
  EXPECT_EQ(s.tr.limit, MMV_IO_BITMAP_GPA + 8192 - tss);
  ExpectDescriptorMatches(ram, s.tr);
}

TEST(GdtTest, RejectsRamWithoutTheGdtPageAndBadVcpuCounts) {
  std::vector<uint8_t> ram(0x1800, 0);
  EXPECT_THAT(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, TwoVcpuLayout()),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("GDT/IDT pages")));
  std::vector<uint8_t> no_bitmap(0xa000, 0);  // ends one byte short of the 0xff byte
  EXPECT_THAT(WriteGdtAndTss(GuestRamView{no_bitmap.data(), no_bitmap.size()}, TwoVcpuLayout()),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("I/O bitmap")));
  std::vector<uint8_t> big(0x10000, 0);
  BootLayout layout = TwoVcpuLayout();
  layout.nr_vcpus = MMV_UCALL_MAX_VCPUS + 1;
  EXPECT_THAT(WriteGdtAndTss(GuestRamView{big.data(), big.size()}, layout),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("33 vCPUs, want 1..32")));
}

TEST(LongModeTest, RegsFollowTheAbi) {
  const BootLayout layout = TwoVcpuLayout();
  const kvm_regs r = LongModeRegs(layout, 0x100123, 1, 0xabcdef);
  EXPECT_EQ(r.rip, 0x100123u);
  EXPECT_EQ(r.rdi, 1u);
  EXPECT_EQ(r.rsi, 0xabcdefu);
  EXPECT_EQ(r.rsp, kRamSize - MMV_STACK_SIZE - 8);
  EXPECT_EQ((r.rsp + 8) % 16, 0u);  // as after a call
  EXPECT_EQ(r.rflags, 0x2u);        // IOPL 0, reserved bit 1, IF clear
  EXPECT_EQ(r.rflags & kRflagsIoplMask, 0u);
  EXPECT_EQ(r.rax, 0u);
  EXPECT_EQ(LongModeRegs(layout, 0x100000, 0, 0).rsp, kRamSize - 8);
}

TEST(LongModeTest, UserSregsEnterCpl3) {
  std::vector<uint8_t> ram(kRamSize, 0);
  ASSERT_OK(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, TwoVcpuLayout()));
  const kvm_sregs base = ResetSregs();
  const kvm_sregs s = LongModeSregs(base, MMV_PAGE_TABLE_GPA, 1, GuestPrivilege::kUser);
  EXPECT_EQ(s.cs.selector, 0x2b);
  EXPECT_EQ(s.cs.dpl, 3);
  EXPECT_EQ(s.cs.l, 1);
  EXPECT_EQ(s.cs.db, 0);
  EXPECT_EQ(s.cs.type, 0xb);
  EXPECT_EQ(s.cs.present, 1);
  EXPECT_EQ(s.cs.s, 1);
  for (const kvm_segment* seg : {&s.ss, &s.ds, &s.es, &s.fs, &s.gs}) {
    EXPECT_EQ(seg->selector, 0x23);
    EXPECT_EQ(seg->dpl, 3);
    EXPECT_EQ(seg->type, 0x3);
    EXPECT_EQ(seg->present, 1);
    EXPECT_EQ(seg->base, 0u);
  }
  ExpectDescriptorMatches(ram, s.cs);
  ExpectDescriptorMatches(ram, s.ss);
  EXPECT_EQ(s.tr.selector, TssSelector(1));
  EXPECT_EQ(s.tr.base, kTssGpa + kTssStride);
  EXPECT_EQ(s.tr.limit, MMV_IO_BITMAP_GPA + 8192 - (kTssGpa + kTssStride));
  ExpectDescriptorMatches(ram, s.tr);
  EXPECT_EQ(s.tr.type, 0xb);
  EXPECT_EQ(s.tr.s, 0);
  EXPECT_EQ(s.ldt.unusable, 1);
  EXPECT_EQ(s.gdt.base, MMV_GDT_GPA);
  EXPECT_GE(s.gdt.limit + 1u, TssSelector(MMV_UCALL_MAX_VCPUS - 1) + 16u);
  EXPECT_EQ(s.idt.base, MMV_IDT_GPA);
  EXPECT_EQ(s.cr0, kCr0Pe | kCr0Mp | kCr0Et | kCr0Ne | kCr0Pg);
  EXPECT_EQ(s.cr3, MMV_PAGE_TABLE_GPA);
  EXPECT_EQ(s.cr4, kCr4Pae | kCr4Osfxsr | kCr4Osxmmexcpt);
  EXPECT_EQ(s.efer, kEferSce | kEferLme | kEferLma);
  // Untouched: what KVM owns.
  EXPECT_EQ(s.apic_base, base.apic_base);
  EXPECT_EQ(s.interrupt_bitmap[0], base.interrupt_bitmap[0]);
}

TEST(LongModeTest, KernelSregsEnterCpl0) {
  std::vector<uint8_t> ram(kRamSize, 0);
  ASSERT_OK(WriteGdtAndTss(GuestRamView{ram.data(), ram.size()}, TwoVcpuLayout()));
  const kvm_sregs s = LongModeSregs(ResetSregs(), 0x10000, 0, GuestPrivilege::kKernel);
  EXPECT_EQ(s.cs.selector, kKernelCodeSelector);
  EXPECT_EQ(s.cs.dpl, 0);
  EXPECT_EQ(s.cs.l, 1);
  EXPECT_EQ(s.ss.selector, kKernelDataSelector);
  EXPECT_EQ(s.ss.dpl, 0);
  ExpectDescriptorMatches(ram, s.cs);
  ExpectDescriptorMatches(ram, s.ds);
  EXPECT_EQ(s.tr.selector, TssSelector(0));
  EXPECT_EQ(s.efer & kEferLma, kEferLma);
}

TEST(RealModeTest, RegsAndSregs) {
  const kvm_regs r = RealModeRegs(MMV_REAL_MODE_LOAD_GPA);
  EXPECT_EQ(r.rip, MMV_REAL_MODE_LOAD_GPA);
  EXPECT_EQ(r.rsp, MMV_REAL_MODE_STACK_TOP);
  EXPECT_EQ(r.rflags, 0x2u);
  kvm_sregs base = ResetSregs();
  base.cr0 |= kCr0Pe | kCr0Pg;  // whatever it was, real mode clears them
  base.efer = kEferLme;
  const kvm_sregs s = RealModeSregs(base);
  for (const kvm_segment* seg : {&s.cs, &s.ss, &s.ds, &s.es, &s.fs, &s.gs}) {
    EXPECT_EQ(seg->selector, 0);
    EXPECT_EQ(seg->base, 0u);
    EXPECT_EQ(seg->limit, 0xffffu);
    EXPECT_EQ(seg->present, 1);
    EXPECT_EQ(seg->db, 0);
    EXPECT_EQ(seg->l, 0);
    EXPECT_EQ(seg->dpl, 0);
  }
  EXPECT_EQ(s.cs.type, 0xb);
  EXPECT_EQ(s.cr0 & (kCr0Pe | kCr0Pg), 0u);
  EXPECT_EQ(s.cr0, 0x60000010u);
  EXPECT_EQ(s.efer, 0u);
  EXPECT_EQ(s.cr4, 0u);
  EXPECT_EQ(s.tr.type, base.tr.type);  // KVM's reset TR/LDT stay
  EXPECT_EQ(s.apic_base, base.apic_base);
}

}  // namespace
}  // namespace mmuvisor::vmm
