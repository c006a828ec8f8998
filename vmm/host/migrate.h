// Migrate: move a range's contents to new backing pages (Linux: migrate_pages, with the
// mmu notifier event MMU_NOTIFY_MIGRATE). One kMigrate window: the steps of Reclaim
// (reclaim.h), then FaultBack brings the moved pages in again *inside the window*
// (MADV_POPULATE_READ -> page server -> UFFDIO_COPY from the copies just saved), so the
// guest finds them resident in their new pages when the window closes.
//
// Threads: as Reclaim.
#ifndef MMUVISOR_VMM_HOST_MIGRATE_H_
#define MMUVISOR_VMM_HOST_MIGRATE_H_

#include "absl/status/statusor.h"
#include "vmm/host/page_range_lock.h"
#include "vmm/host/reclaim.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// reclaimed = pages moved to new backing pages; save_failures stayed where they were.
// Errors: as Reclaim, and the fault-back's (a poisoned page: the page server's failure).
absl::StatusOr<ReclaimResult> Migrate(HostAddressSpace& space, PageRange range);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_MIGRATE_H_
