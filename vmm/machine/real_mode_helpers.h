// Where KVM's real-mode helpers go in guest-physical space.
//
// On Intel hosts without unrestricted guest, KVM runs a real-mode guest in vm86 mode and
// needs three pages for a TSS (KVM_SET_TSS_ADDR) and, with EPT, one page for an identity
// page table (KVM_SET_IDENTITY_MAP_ADDR, default 0xfffbc000, the page just below the TSS
// QEMU and Firecracker use at 0xfffbd000). KVM backs both with private memslots, which no
// guest memslot may overlap: with RAM aliases or memslot-churn windows reaching 4 GiB, the
// fixed addresses would put them inside guest memory. Both must lie below 4 GiB (KVM takes
// a 32-bit TSS address).
//
// RealModeHelperGpa picks one 4-page block [gpa, gpa + 16 KiB): the identity-map page at
// gpa, the TSS at gpa + 4 KiB. It prefers the usual 0xfffbc000, and otherwise takes the
// highest free block below 4 GiB; nullopt when none is free (the VM then sets neither: SVM,
// PVM and VMX with unrestricted guest never use them, and a real-mode guest on a host that
// needs them fails at KVM_RUN with a reported error).
#ifndef MMUVISOR_VMM_MACHINE_REAL_MODE_HELPERS_H_
#define MMUVISOR_VMM_MACHINE_REAL_MODE_HELPERS_H_

#include <cstdint>
#include <optional>

#include "absl/types/span.h"
#include "vmm/boot/page_tables.h"

namespace mmuvisor::vmm {

inline constexpr uint64_t kDefaultIdentityMapGpa = 0xfffbc000;  // KVM's own default
inline constexpr uint64_t kRealModeHelperBytes = 4 * 4096;      // identity map + 3-page TSS

// `ram_bytes`: guest RAM from gpa 0; `windows`: every other range a memslot may occupy
// (BootOptions::identity_windows: aliases, memslot-churn windows). The local APIC page
// (KVM's APIC-access page on VMX) is kept clear too.
std::optional<uint64_t> RealModeHelperGpa(uint64_t ram_bytes,
                                          absl::Span<const IdentityWindow> windows);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_REAL_MODE_HELPERS_H_
