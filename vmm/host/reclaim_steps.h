// The body of a Reclaim, Migrate or OomReap window, as named steps over one open
// HostWindow (reclaim.h tells why the order keeps every write). Internal to vmm/host.
//
//   SaveAndDiscard = WriteProtect -> Harvest -> SortPages -> SavePages -> DiscardSaved
//   FaultBack      (Migrate only) the discarded pages faulted in again inside the window
#ifndef MMUVISOR_VMM_HOST_RECLAIM_STEPS_H_
#define MMUVISOR_VMM_HOST_RECLAIM_STEPS_H_

#include <cstdint>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/host/host_window.h"
#include "vmm/host/reclaim.h"

namespace mmuvisor::vmm {

// One byte per page of a window's range (index i = page range.first + i): 1 = in the set.
using PageMask = std::vector<uint8_t>;

// The reclaim body in `window`. `discarded` (if not null) receives the pages discarded.
// Errors: the mapping calls' (mprotect, DropMappings, pread, discard), FailedPrecondition
// before the page server is started. A failed harvest is none (nothing is then trusted as
// clean); a failed save is counted in the result.
absl::StatusOr<ReclaimResult> SaveAndDiscard(HostWindow& window, PageMask* discarded);

// Migrate: brings the `discarded` pages back now, into new backing pages, from the copies
// just checked into the store (the page server's UFFDIO_COPY). Read faults are allowed in
// the read-only window; concurrent readers get the same copy.
absl::Status FaultBack(HostWindow& window, const PageMask& discarded);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_RECLAIM_STEPS_H_
