// Where a Machine's vCPUs get their local APIC: in KVM or nowhere.
//
// Without an irqchip (this project's only setup before), KVM gives each vCPU no LAPIC and
// a CPL0 guest's HLT exits to userspace (KVM_EXIT_HLT: the vCPU is reported halted). That
// costs every process two live patches of the host kernel's text: the first vCPU without
// an in-kernel LAPIC on the host turns the static key `kvm_has_noapic_vcpu` on, and its
// destruction turns it off again (text_poke_bp with sync IPIs to every host CPU, which on
// a host that is itself a VM wakes each of its vCPUs). KVM_CAP_SPLIT_IRQCHIP puts the
// LAPIC in KVM (no PIC or IOAPIC) and avoids both. Measured on kvm_pvm (AMD EPYC, 2 CPUs):
// KVM_CREATE_VCPU ~0.36 -> ~0.08 ms, the VM's release at exit ~0.5 -> ~0.27 ms
// (vmm/README.md, "Process start").
//
// The in-kernel LAPIC changes what a guest can see, so it is chosen only where it cannot:
//   - a long-mode image at CPL3: HLT (and every other privileged instruction) is a #GP
//     there on VMX, SVM and PVM alike, reported through the exception stubs, so the vCPU
//     never waits in the kernel for an interrupt that will not come; a CPL0 or real-mode
//     guest may HLT and must see KVM_EXIT_HLT;
//   - no guest-physical range the VM maps (RAM rounded up to 2 MiB, every identity
//     window: aliases and memslot-churn windows) meets the APIC page [0xfee00000, +4 KiB):
//     KVM would answer guest accesses there itself, and on VMX it puts its APIC-access
//     page there as a private memslot, which a guest memslot must not overlap.
// Application processors start in wait-for-SIPI with an in-kernel LAPIC; the Machine
// makes them runnable (KVM_SET_MP_STATE) before they run.
#ifndef MMUVISOR_VMM_MACHINE_LOCAL_APIC_H_
#define MMUVISOR_VMM_MACHINE_LOCAL_APIC_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "vmm/boot/elf_loader.h"
#include "vmm/boot/page_tables.h"
#include "vmm/boot/x86_state.h"

namespace mmuvisor::vmm {

enum class LocalApicMode : uint8_t {
  kAuto,       // in KVM where the guest cannot tell (WantInKernelLapic)
  kUserspace,  // never in KVM: no irqchip at all
};

inline constexpr uint64_t kLocalApicGpa = 0xfee00000;  // the architectural default base
inline constexpr uint64_t kLocalApicBytes = 4096;

// The rule above. `ram_bytes` is guest RAM from gpa 0; `windows` every other range the
// guest's page tables map (BootOptions::identity_windows).
bool WantInKernelLapic(LocalApicMode mode, BootMode boot, GuestPrivilege privilege,
                       uint64_t ram_bytes, absl::Span<const IdentityWindow> windows);

// "in KVM" or "none", for logs and reports.
absl::string_view LocalApicName(bool in_kernel);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_LOCAL_APIC_H_
