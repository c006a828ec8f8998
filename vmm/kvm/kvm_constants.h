// KVM constants newer than the installed Linux 6.1 UAPI (<linux/kvm.h>), defined here with
// their kernel values so the project can probe for them on newer hosts. Only numbers are
// carried over; each is checked against the 6.1 header so a newer header that already has
// it must agree. Nothing else in the project may spell these numbers.
#ifndef MMUVISOR_VMM_KVM_KVM_CONSTANTS_H_
#define MMUVISOR_VMM_KVM_KVM_CONSTANTS_H_

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cstdint>

namespace mmuvisor::vmm::kvm_abi {

// struct kvm_cpuid2 in C++: the 6.1 UAPI declares its `entries` with __DECLARE_FLEX_ARRAY,
// which in C++ wraps the array after an empty struct (size 1 in C++, 0 in C). So g++ and
// clang++ see offsetof(entries) == 12 and sizeof == 12 where the kernel has 8, and
// KVM_GET_SUPPORTED_CPUID / KVM_SET_CPUID2 expand to ioctl numbers whose size field is 12:
// KVM answers EINVAL (found by booting under nested KVM in QEMU: the C probe worked, the
// C++ call did not; 0xc00cae05 vs 0xc008ae05). The project therefore lays the struct out
// by hand and spells both ioctl numbers with the kernel's size.
inline constexpr size_t kCpuid2HeaderBytes = 8;  // __u32 nent; __u32 padding;
inline constexpr unsigned long kGetSupportedCpuid =
    _IOC(_IOC_READ | _IOC_WRITE, KVMIO, 0x05, kCpuid2HeaderBytes);
inline constexpr unsigned long kSetCpuid2 = _IOC(_IOC_WRITE, KVMIO, 0x90, kCpuid2HeaderBytes);
static_assert(sizeof(kvm_cpuid_entry2) == 40, "kvm_cpuid_entry2 layout");

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
