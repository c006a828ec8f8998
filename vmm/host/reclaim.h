// Reclaim: swap a range of guest RAM out to the store (Linux: shrink_folio_list ->
// pageout -> try_to_unmap). One kClear window (host_window.h) whose body is the named
// steps of reclaim_steps.h:
//   WriteProtect  (memfd: drop the page-table entries;) map the range read-only
//   Harvest       fetch the dirty log, after the read-only step, so every earlier store is in it
//   Sort          residency (mincore): not resident / saved-and-clean / to save
//   SavePages     copy each page to save into the store (CRC32C); a failed save
//                 (ENOSPC -> ResourceExhausted, EIO -> Unavailable) leaves it resident
//   DiscardSaved  MADV_REMOVE / hole punch of every page with a good copy in the store
// and the window's close maps the range back to what the owner asked (PageProtection).
//
// Why no write is lost between the save and the discard: from WriteProtect on, a vCPU
// store fails (KVM_RUN -> EFAULT; the VMM waits for the window: vmm/machine), a device
// access was drained at the window's start and the next one faults through the space's
// Resolve, which waits for the window. Reads keep working: before the discard they see the
// page, after it the page server brings back the saved copy.
//
// Threads: any thread; sleeps (I/O, hub callbacks). Not from a hub callback, a page-server
// handler or a window hook.
#ifndef MMUVISOR_VMM_HOST_RECLAIM_H_
#define MMUVISOR_VMM_HOST_RECLAIM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/host/page_range_lock.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// Per page of the range, what the window did. Save errors are here, not in the status of
// the call (a page that failed to save is not an error of the operation).
struct ReclaimResult {
  uint64_t reclaimed = 0;     // pages discarded (their copy is in the store)
  uint64_t written_back = 0;  // pages saved in this window
  uint64_t skipped_clean = 0; // resident, saved-and-clean: discarded without a write
  uint64_t not_resident = 0;  // nothing to do
  uint64_t save_failures = 0; // stayed resident
  absl::Status first_save_error;
};

// Blockable: waits for windows on overlapping pages and for device accesses in flight.
// Errors: InvalidArgument (range not inside RAM), FailedPrecondition (torn down, page
// server not started), the mapping calls' errno.
absl::StatusOr<ReclaimResult> Reclaim(HostAddressSpace& space, PageRange range);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_RECLAIM_H_
