// Initial x86 CPU state for mmuvisor guests: the GDT + per-vCPU TSS written into guest RAM,
// and the kvm_regs / kvm_sregs a vCPU starts with. Pure: the VMM applies the values with
// KVM_SET_REGS / KVM_SET_SREGS; nothing here issues an ioctl.
//
// GDT at MMV_GDT_GPA (selectors below); TSS of vCPU i at kTssGpa + i * kTssStride, its
// 16-byte descriptor at selector kTssSelector(i). The selector order makes SYSRET usable
// (STAR[63:48] = kUserCode32Selector). The IDT page (MMV_IDT_GPA) is zeroed here; the VMM
// may install exception stubs behind it afterwards (vmm/machine).
//
// Port I/O at CPL3 is granted by the TSS I/O permission bitmap, never by RFLAGS.IOPL: every
// guest starts with IOPL 0. kvm_pvm runs guest ring 3 in the host's ring 3 and ignores
// IOPL (an OUT with IOPL=3 and no bitmap raises #GP there), while VMX, SVM and kvm_pvm all
// check the bitmap, so the bitmap is the one mechanism that works on every platform. One
// bitmap at kIoBitmapGpa (MMV_IO_BITMAP_GPA) is shared by every vCPU's TSS: each TSS's
// I/O-map base is the bitmap's offset from that TSS, and its limit covers the bitmap and
// the trailing 0xff byte. All bits are clear: every port exits to the VMM, which answers
// the ports it does not know as before.
//
// Long mode at CPL3 (default): CS = user 64-bit code (DPL 3), SS/DS/ES/FS/GS = user data
// (DPL 3), RFLAGS = 0x2 (IOPL 0, IF clear).
// Long mode at CPL0: the same with the kernel selectors (DPL 0): CPL <= IOPL, ports open.
// Both: CR0 = PE|MP|ET|NE|PG, CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER = SCE|LME|LMA, CR3 given.
// RDI = vCPU index, RSI = `arg` (the VMM passes nr_args), RSP = stack top - 8, RIP = entry.
//
// Real mode: CS = DS = ES = FS = GS = SS = selector 0 / base 0 / limit 0xffff, CR0.PE
// clear, paging off, IP = entry, SP = MMV_REAL_MODE_STACK_TOP.
//
// The sregs builders take the vCPU's current sregs (from KVM_GET_SREGS) as `base` and keep
// what they do not own (apic_base, interrupt_bitmap, cr8), so the APIC is left as KVM set it.
#ifndef MMUVISOR_VMM_BOOT_X86_STATE_H_
#define MMUVISOR_VMM_BOOT_X86_STATE_H_

#include <linux/kvm.h>

#include <cstdint>

#include "absl/status/status.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/boot/boot_layout.h"
#include "vmm/boot/guest_ram.h"

namespace mmuvisor::vmm {

// The type TR's cached descriptor carries (kvm_sregs.tr.type). The GDT descriptor is
// always busy, as LTR leaves it. In TR:
//   kBusy (11)      what real hardware holds after LTR; VMX's VM-entry checks require it in
//                   IA-32e mode (any other type fails the entry). The default.
//   kAvailable (9)  for AMD SVM hosts: SVM does not check TR's type, and QEMU's TCG (which
//                   the nested SVM run in CI emulates) consults the I/O bitmap only when the
//                   cached type is 9, as its own LTR leaves it; with 11 every CPL3 port
//                   access #GPs there although the bitmap grants it.
// kvm_pvm accepts either (measured on a kvm_pvm host: hello64 and smp run with both).
enum class TrType : uint8_t { kBusy = 0xb, kAvailable = 0x9 };

enum class GuestPrivilege {
  kUser,    // CPL3, ports through the TSS bitmap: runs natively on PVM (the default)
  kKernel,  // CPL0: instruction-emulated on PVM (~0.5 us/instruction), setup code only
};

inline constexpr uint16_t kKernelCodeSelector = 0x08;  // 64-bit code, DPL 0
inline constexpr uint16_t kKernelDataSelector = 0x10;  // data, DPL 0
inline constexpr uint16_t kUserCode32Selector = 0x18;  // 32-bit code, DPL 3 (SYSRET base)
inline constexpr uint16_t kUserDataSelector = 0x20;    // data, DPL 3
inline constexpr uint16_t kUserCodeSelector = 0x28;    // 64-bit code, DPL 3
inline constexpr uint16_t kFirstTssSelector = 0x30;    // 16-byte system descriptors follow
inline constexpr uint64_t kTssGpa = MMV_GDT_GPA + 0x300;
inline constexpr uint64_t kTssStride = 104;  // 64-bit TSS size; 32 of them fill the page
inline constexpr uint64_t kTssIoMapBaseOffset = 102;  // u16 field of the 64-bit TSS
inline constexpr uint64_t kIoBitmapGpa = MMV_IO_BITMAP_GPA;
inline constexpr uint64_t kIoBitmapBytes = 65536 / 8;  // one bit per port, 0 = granted
inline constexpr uint64_t kRflagsFixed = 1ull << 1;
inline constexpr uint64_t kRflagsIoplMask = 3ull << 12;

constexpr uint16_t TssSelector(uint32_t vcpu) {
  return static_cast<uint16_t>(kFirstTssSelector + 16 * vcpu);
}
constexpr uint64_t TssGpa(uint32_t vcpu) { return kTssGpa + uint64_t{vcpu} * kTssStride; }
// The I/O-map base field: the shared bitmap's offset from this vCPU's TSS.
constexpr uint16_t TssIoMapBase(uint32_t vcpu) {
  return static_cast<uint16_t>(kIoBitmapGpa - TssGpa(vcpu));
}
// Segment limit (inclusive): up to and including the 0xff byte after the bitmap.
constexpr uint32_t TssLimit(uint32_t vcpu) {
  return static_cast<uint32_t>(kIoBitmapGpa + kIoBitmapBytes - TssGpa(vcpu));
}
static_assert(kIoBitmapGpa >= kTssGpa + MMV_UCALL_MAX_VCPUS * kTssStride &&
                  kIoBitmapGpa - kTssGpa < 0x10000,
              "the I/O-map base is a 16-bit offset above every TSS");

// CR0 / CR4 / EFER bits used here (named for tests and diagnostics).
inline constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Mp = 1ull << 1, kCr0Et = 1ull << 4,
                          kCr0Ne = 1ull << 5, kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5, kCr4Osfxsr = 1ull << 9,
                          kCr4Osxmmexcpt = 1ull << 10;
inline constexpr uint64_t kEferSce = 1ull << 0, kEferLme = 1ull << 8, kEferLma = 1ull << 10;

// Writes the GDT and one TSS per vCPU (RSP0 = layout.Ring0StackTop(i)) into the GDT page,
// the shared I/O bitmap (all ports granted, then 0xff) at kIoBitmapGpa, and zeroes the IDT
// page. `ram_is_zero`: the bitmap's and the IDT's zero bytes are already there and are not
// written (only the 0xff byte is). Errors: OutOfRange if RAM does not cover those pages.
absl::Status WriteGdtAndTss(const GuestRamView& ram, const BootLayout& layout,
                            bool ram_is_zero = false);

// REQUIRES: vcpu < layout.nr_vcpus.
kvm_regs LongModeRegs(const BootLayout& layout, uint64_t entry, uint32_t vcpu, uint64_t arg);
kvm_sregs LongModeSregs(const kvm_sregs& base, uint64_t cr3, uint32_t vcpu,
                        GuestPrivilege privilege, TrType tr_type = TrType::kBusy);

kvm_regs RealModeRegs(uint64_t entry);
kvm_sregs RealModeSregs(const kvm_sregs& base);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_X86_STATE_H_
