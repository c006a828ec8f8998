// Primary: the primary MMU as a secondary MMU sees it (Linux: get_user_pages /
// hmm_range_fault on the owning mm). The vmm's host address space implements it.
//
// Contract
//   - Resolve(address, access) returns the host page that backs the page-aligned primary
//     address `address` right now, faulting it in first if needed (zero-fill, swap-in,
//     userfaultfd, copy-on-write break for a write). It may sleep. It takes no reference:
//     the secondary MMU relies on the hub's invalidations to learn when the page goes.
//   - For Access::kWrite the page returned must be writable; if the primary forbids
//     writing it returns kPermissionDenied. For Access::kRead, `writable` says whether the
//     secondary may map the page writable anyway.
//   - Errors: kNotFound (nothing is mapped at `address`: the caller reports the fault),
//     kPermissionDenied (see above), kUnavailable (transient: a racing change; the caller
//     retries the whole fault, counted), anything else is passed to the caller as is.
//
// Threads: called concurrently from any faulting thread, never with an MMU lock held, and
// never from inside a notifier callback. The implementation must bracket every change of
// what backs an address with the hub's InvalidateRangeStart/End.
#ifndef MMUVISOR_MMU_PRIMARY_H_
#define MMUVISOR_MMU_PRIMARY_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "mmu/types.h"

namespace mmuvisor::mmu {

struct PrimaryPage {
  uint64_t host_address = 0;  // page aligned, non-zero
  bool writable = false;
};

class Primary {
 public:
  virtual ~Primary() = default;
  virtual absl::StatusOr<PrimaryPage> Resolve(uint64_t address, Access access) = 0;
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_PRIMARY_H_
