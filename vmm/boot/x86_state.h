// Initial x86 CPU state for mmuvisor guests: the GDT + per-vCPU TSS written into guest RAM,
// and the kvm_regs / kvm_sregs a vCPU starts with. Pure: the VMM applies the values with
// KVM_SET_REGS / KVM_SET_SREGS; nothing here issues an ioctl.
//
// GDT at MMV_GDT_GPA (selectors below); TSS of vCPU i at kTssGpa + i * kTssStride, its
// 16-byte descriptor at selector kTssSelector(i). The selector order makes SYSRET usable
// (STAR[63:48] = kUserCode32Selector). The IDT page (MMV_IDT_GPA) is zeroed and IDTR
// points at it: no handlers, so any guest exception ends in a triple fault
// (KVM_EXIT_SHUTDOWN) which the VMM reports with registers.
//
// Long mode at CPL3 (default): CS = user 64-bit code (DPL 3), SS/DS/ES/FS/GS = user data
// (DPL 3), RFLAGS.IOPL = 3 (port I/O from ring 3 exits to the VMM), IF clear.
// Long mode at CPL0: the same with the kernel selectors (DPL 0); IOPL still 3.
// Both: CR0 = PE|MP|ET|NE|PG, CR4 = PAE|OSFXSR|OSXMMEXCPT, EFER = SCE|LME|LMA, CR3 given.
// RDI = vCPU index, RSI = start argument, RSP = stack top - 8, RIP = entry.
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

enum class GuestPrivilege {
  kUser,    // CPL3, IOPL=3: runs natively on PVM (the default)
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
inline constexpr uint64_t kRflagsFixed = 1ull << 1;
inline constexpr uint64_t kRflagsIopl3 = 3ull << 12;

constexpr uint16_t TssSelector(uint32_t vcpu) {
  return static_cast<uint16_t>(kFirstTssSelector + 16 * vcpu);
}

// CR0 / CR4 / EFER bits used here (named for tests and diagnostics).
inline constexpr uint64_t kCr0Pe = 1ull << 0, kCr0Mp = 1ull << 1, kCr0Et = 1ull << 4,
                          kCr0Ne = 1ull << 5, kCr0Pg = 1ull << 31;
inline constexpr uint64_t kCr4Pae = 1ull << 5, kCr4Osfxsr = 1ull << 9,
                          kCr4Osxmmexcpt = 1ull << 10;
inline constexpr uint64_t kEferSce = 1ull << 0, kEferLme = 1ull << 8, kEferLma = 1ull << 10;

// Writes the GDT and one TSS per vCPU (RSP0 = layout.Ring0StackTop(i)) into the GDT page
// and zeroes the IDT page. Errors: OutOfRange if RAM does not cover those pages.
absl::Status WriteGdtAndTss(const GuestRamView& ram, const BootLayout& layout);

// REQUIRES: vcpu < layout.nr_vcpus.
kvm_regs LongModeRegs(const BootLayout& layout, uint64_t entry, uint32_t vcpu, uint64_t arg);
kvm_sregs LongModeSregs(const kvm_sregs& base, uint64_t cr3, uint32_t vcpu,
                        GuestPrivilege privilege);

kvm_regs RealModeRegs(uint64_t entry);
kvm_sregs RealModeSregs(const kvm_sregs& base);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_X86_STATE_H_
