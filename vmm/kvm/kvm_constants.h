// KVM constants newer than the installed Linux 6.1 UAPI (<linux/kvm.h>), defined here with
// their kernel values so the project can probe for them on newer hosts. Only numbers are
// carried over; each is checked against the 6.1 header so a newer header that already has
// it must agree. Nothing else in the project may spell these numbers.
#ifndef MMUVISOR_VMM_KVM_KVM_CONSTANTS_H_
#define MMUVISOR_VMM_KVM_KVM_CONSTANTS_H_

#include <linux/kvm.h>

namespace mmuvisor::vmm::kvm_abi {

// Capabilities (KVM_CHECK_EXTENSION), Linux 6.8 unless noted.
inline constexpr int kCapUserMemory2 = 231;     // KVM_CAP_USER_MEMORY2
inline constexpr int kCapMemoryFaultInfo = 232; // KVM_CAP_MEMORY_FAULT_INFO
inline constexpr int kCapMemoryAttributes = 233;  // KVM_CAP_MEMORY_ATTRIBUTES
inline constexpr int kCapGuestMemfd = 234;      // KVM_CAP_GUEST_MEMFD
inline constexpr int kCapVmTypes = 235;         // KVM_CAP_VM_TYPES

// Exit reasons (struct kvm_run::exit_reason) after KVM_EXIT_NOTIFY (37, in 6.1).
inline constexpr unsigned kExitLoongarchIocsr = 38;  // KVM_EXIT_LOONGARCH_IOCSR (6.7)
inline constexpr unsigned kExitMemoryFault = 39;     // KVM_EXIT_MEMORY_FAULT (6.8)

// KVM limits that are kernel-internal (include/linux/kvm_host.h), not UAPI:
// a memslot may hold at most KVM_MEM_MAX_NR_PAGES = (1 << 31) - 1 pages.
inline constexpr unsigned long long kMemMaxNrPages = (1ull << 31) - 1;

#ifdef KVM_CAP_USER_MEMORY2
static_assert(KVM_CAP_USER_MEMORY2 == kCapUserMemory2);
#endif
#ifdef KVM_CAP_MEMORY_FAULT_INFO
static_assert(KVM_CAP_MEMORY_FAULT_INFO == kCapMemoryFaultInfo);
#endif
#ifdef KVM_CAP_GUEST_MEMFD
static_assert(KVM_CAP_GUEST_MEMFD == kCapGuestMemfd);
#endif
#ifdef KVM_EXIT_MEMORY_FAULT
static_assert(KVM_EXIT_MEMORY_FAULT == kExitMemoryFault);
#endif
static_assert(KVM_EXIT_NOTIFY == 37, "6.1 UAPI expected");

}  // namespace mmuvisor::vmm::kvm_abi

#endif  // MMUVISOR_VMM_KVM_KVM_CONSTANTS_H_
