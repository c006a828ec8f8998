// ReclaimDriver: keeps the guest's resident set near a target fraction of RAM (the
// `--resident 25%` of the CLI), at a bounded rate, with statistics.
//
// Each pass: residency of all RAM (mincore through the page server); if more than the
// target is resident, harvest the dirty log, age with the PageClock (young = the hub's
// ClearYoung over the subscribed secondary MMUs, OR "written" from the dirty log or
// NoteHostWrite), and reclaim the victims, grouped into contiguous ranges, through
// Reclaim (reclaim.h; or OomReap, oom_reap.h, the non-blockable path, when asked). Rate:
// at most max_pages_per_second * period pages per pass, and max_batch_pages.
//
// Ownership (Linux: kswapd is the system's, not the mm's): the driver acts on a space it
// does not own; its owner (vmm/machine's Machine, or a test) stops it before the space's
// Teardown (Machine does so first thing in its stop_guests and in its destructor).
//
// Threads: Start() runs passes on one thread named "reclaimd" every `period`; RunOnce()
// may instead be called directly (tests), never concurrently with the thread. Start() and
// Stop() are the owner's, called from one thread at a time. mu_ guards the stop flag and
// the last error; statistics are relaxed atomics.
#ifndef MMUVISOR_VMM_HOST_RECLAIM_DRIVER_H_
#define MMUVISOR_VMM_HOST_RECLAIM_DRIVER_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"
#include "vmm/host/page_clock.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

struct ReclaimDriverOptions {
  double target_resident_fraction = 0.25;  // of all guest RAM pages
  uint64_t max_pages_per_second = 50000;
  absl::Duration period = absl::Milliseconds(10);
  uint64_t max_batch_pages = 1024;
  bool non_blocking = false;  // use OomReap (EAGAIN-retrying) instead of Reclaim
};

// OK, or InvalidArgument naming the field: target_resident_fraction outside [0, 1] (or
// NaN), a period that is not positive and finite, max_pages_per_second or max_batch_pages
// of 0 (nothing would ever be reclaimed).
absl::Status ValidateReclaimDriverOptions(const ReclaimDriverOptions& options);

struct ReclaimDriverStats {
  uint64_t passes = 0;
  uint64_t reclaimed = 0;       // pages discarded with a copy in the store
  uint64_t swapped_in = 0;      // page server swap-ins so far (the other direction)
  uint64_t written_back = 0;    // store writes
  uint64_t skipped = 0;         // victims left resident: failed saves, OOM-skipped ranges
  uint64_t eagain_retries = 0;  // non-blockable starts refused (non_blocking only)
  uint64_t second_chances = 0;  // young pages spared by the clock
  uint64_t errors = 0;          // passes that ended with an error (last_error())
};

class ReclaimDriver {
 public:
  ReclaimDriver(HostAddressSpace& space, const ReclaimDriverOptions& options);
  ~ReclaimDriver();
  ReclaimDriver(const ReclaimDriver&) = delete;
  ReclaimDriver& operator=(const ReclaimDriver&) = delete;

  // Starts the thread. Errors: InvalidArgument (the options, see
  // ValidateReclaimDriverOptions; nothing started), FailedPrecondition (already running).
  absl::Status Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Idempotent; joins the thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

  // One pass; returns the pages reclaimed (InvalidArgument with invalid options, as Start).
  // REQUIRES: the thread is not running.
  absl::StatusOr<uint64_t> RunOnce();

  ReclaimDriverStats stats() const;
  absl::Status last_error() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);

  HostAddressSpace& space_;
  const ReclaimDriverOptions options_;
  PageClock clock_;
  std::thread thread_;

  mutable Mutex mu_;
  std::condition_variable wake_;
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status last_error_ ABSL_GUARDED_BY(mu_);

  // Statistics: relaxed, no ordering partner.
  std::atomic<uint64_t> passes_{0}, reclaimed_{0}, written_back_{0}, skipped_{0},
      eagain_retries_{0}, second_chances_{0}, errors_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_RECLAIM_DRIVER_H_
