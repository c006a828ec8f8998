// Protect / Unprotect: change what the owner allows on a range (Linux: mprotect, with the
// mmu notifier event MMU_NOTIFY_PROTECTION_VMA). One kProtectionVma window: mprotect, and
// the space records the protection per page (HostAddressSpace::protection). A guest store
// into a page protected read-only then fails (KVM_RUN -> EFAULT), which vmm/machine
// classifies as a protected write; Resolve and the host copies refuse it
// (PermissionDenied). Protecting a range read-write is a window that changes nothing but
// makes every secondary MMU zap and refault it.
//
// Threads: as Reclaim (reclaim.h).
#ifndef MMUVISOR_VMM_HOST_PROTECT_H_
#define MMUVISOR_VMM_HOST_PROTECT_H_

#include "absl/status/status.h"
#include "vmm/host/host_options.h"
#include "vmm/host/page_range_lock.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// Errors: InvalidArgument (range), FailedPrecondition (torn down), mprotect's errno (the
// recorded protection is then unchanged).
absl::Status Protect(HostAddressSpace& space, PageRange range, PageProtection prot);
inline absl::Status Unprotect(HostAddressSpace& space, PageRange range) {
  return Protect(space, range, PageProtection::kReadWrite);
}

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_PROTECT_H_
