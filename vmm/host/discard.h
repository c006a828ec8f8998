// Discard: drop a range's contents (a balloon's inflate; Linux: madvise(MADV_REMOVE)). One
// kClear window: the store's copies are dropped *first*, then the pages, so no later fault
// can bring old data back; the next access reads zeros. memfd RAM loses its pages through a
// hole punch, which works whatever the owner's protection of the range (discard.cc).
//
// Threads: as Reclaim (reclaim.h).
#ifndef MMUVISOR_VMM_HOST_DISCARD_H_
#define MMUVISOR_VMM_HOST_DISCARD_H_

#include "absl/status/status.h"
#include "vmm/host/page_range_lock.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// Errors: InvalidArgument (range), FailedPrecondition (torn down), the discard's errno.
absl::Status Discard(HostAddressSpace& space, PageRange range);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_DISCARD_H_
