// OomReap: reclaim a range without ever blocking (Linux: the OOM reaper's
// __oom_reap_task_mm, mmap_read_trylock + non-blockable mmu_notifier_invalidate_range_start).
// Each attempt is a non-blockable kClear window: trylock of the pages, a non-blockable hub
// start (a subscription may refuse: EAGAIN; one with an access in flight does: a mirror
// whose lock is held, a host copy in its section; a drained SecondaryMmu, which has an end
// and may not refuse, waits for its sections, each at most one page copy, as KVM takes its
// mmu_lock). When the pages are busy or a start is refused the range is untouched and the
// attempt is retried after an exponential backoff (HostAddressSpaceOptions::oom), up to
// max_attempts times, then skipped (counted). An attempt that opens its window reclaims
// (reclaim.h): a VMM must not lose guest data, so mmuvisor's OOM-style path is
// non-blocking *reclaim*, not Linux's discard.
//
// Threads: as Reclaim (reclaim.h); sleeps only in the backoff, never on a busy range or a
// callback (a DeviceMmu's wait in its start is a spin of at most one page copy).
#ifndef MMUVISOR_VMM_HOST_OOM_REAP_H_
#define MMUVISOR_VMM_HOST_OOM_REAP_H_

#include "absl/status/statusor.h"
#include "vmm/host/page_range_lock.h"
#include "vmm/host/reclaim.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

struct OomReapResult {
  bool reaped = false;  // false: skipped after max_attempts
  int attempts = 0;
  uint64_t eagain_retries = 0;
  ReclaimResult reclaim;
};

// Errors: InvalidArgument (range), and any error of an attempt other than Unavailable.
absl::StatusOr<OomReapResult> OomReap(HostAddressSpace& space, PageRange range);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_OOM_REAP_H_
