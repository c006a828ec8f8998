// Mirror: an HMM-style device mirror (Linux lib/test_hmm.c's dmirror) built on an interval
// subscription. It mirrors primary addresses [start, start + length) page by page into its
// own ShadowPageTable (indexed by address >> kPageShift), holding no page references: the
// interval invalidation is what keeps it coherent.
//
//   Fault(address):                          Invalidate(range, cur_seq):
//     seq = ReadBegin()   (sleeps while         lock(mu_)  [try-lock if !blockable:
//                          an overlapping                   contended -> return false]
//                          window is open)      SetSeq(cur_seq)
//     page = primary.Resolve(address)           zap [range) n interval
//     lock(mu_)                                 unlock(mu_); return true
//     ReadRetry(seq)? unlock, again : install
//
// Invariants: an entry maps an address to the page the primary uses for it now, or to
// nothing; AccessPage() runs its callback with mu_ held, so the page cannot be invalidated
// under it (invalidation takes mu_ before the primary changes anything).
// Locks: mu_ (the "user lock") guards pt_ and every install; SetSeq runs under it.
// Threads: Invalidate on invalidating threads; Fault/AccessPage on any thread (they may
// sleep); Attach/Detach on a control thread. Never call the hub from AccessPage's callback.
#ifndef MMUVISOR_MMU_MIRROR_H_
#define MMUVISOR_MMU_MIRROR_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mmu/fault_hooks.h"
#include "mmu/primary.h"
#include "mmu/shadow_page_table.h"
#include "mmu/types.h"
#include "notifier/interval_subscription.h"
#include "notifier/mutex.h"
#include "notifier/range.h"

namespace mmuvisor::notifier {
class NotifierSubscriptions;
}

namespace mmuvisor::mmu {

struct MirrorOptions {
  std::string name = "mirror";
  // A fault that keeps finding itself stale for this long fails with kDeadlineExceeded
  // (test_hmm: HMM_RANGE_DEFAULT_TIMEOUT -> -EBUSY).
  absl::Duration retry_timeout = absl::Seconds(10);
  // Migrations whose range owner equals this tag are ours and are not invalidated
  // (dmirror ignores MMU_NOTIFY_MIGRATE with owner == the device). Null: never skip.
  const void* owner = nullptr;
};

struct MirrorStats {
  uint64_t faults = 0;
  uint64_t retries = 0;
  uint64_t stale_detections = 0;
  uint64_t installs = 0;
  uint64_t timeouts = 0;
  uint64_t invalidations = 0;      // Invalidate calls that did their work
  uint64_t nonblock_refusals = 0;  // non-blockable Invalidate calls that returned false
  uint64_t zapped = 0;
  uint64_t accesses = 0;           // AccessPage callbacks run
};

class Mirror : public notifier::IntervalSubscription {
 public:
  // `primary` must outlive this object.
  explicit Mirror(Primary& primary, MirrorOptions options = {});
  // REQUIRES: detached.
  ~Mirror() override;

  // Starts mirroring [start, start + length) of `hub`'s address space. start and length
  // must be page aligned (kInvalidArgument); the hub's own errors are returned as is.
  absl::Status Attach(notifier::NotifierSubscriptions& hub, uint64_t start, uint64_t length)
      ABSL_LOCKS_EXCLUDED(mu_);
  // Stops mirroring (no Invalidate runs after it returns) and drops every entry.
  absl::Status Detach() ABSL_LOCKS_EXCLUDED(mu_);

  // dmirror_range_fault for one page: mirror the page holding `address` for `access`.
  // Errors: kOutOfRange (outside the interval), kFailedPrecondition (detached),
  // kPermissionDenied (write to a read-only page), kDeadlineExceeded (still stale after
  // options.retry_timeout), or the primary's error. May sleep.
  absl::Status Fault(uint64_t address, Access access) ABSL_LOCKS_EXCLUDED(mu_);

  // dmirror_read/write: runs fn(host address of the page) with mu_ held, faulting the
  // page in first if the mirror has no (sufficient) entry. fn must be short and must not
  // call into the hub or this mirror. Errors as Fault().
  absl::Status AccessPage(uint64_t address, Access access,
                      absl::FunctionRef<void(uint64_t host_address)> fn)
      ABSL_LOCKS_EXCLUDED(mu_);

  // notifier::IntervalSubscription.
  bool Invalidate(const notifier::Range& range, uint64_t cur_seq) override
      ABSL_LOCKS_EXCLUDED(mu_);

  std::optional<ShadowEntry> Lookup(uint64_t address) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t mapped_count() const ABSL_LOCKS_EXCLUDED(mu_);
  MirrorStats stats() const;
  // Test-only: see mmu/fault_hooks.h (hook `gfn` arguments are address >> kPageShift).
  void SetFaultHooksForTesting(FaultHooks hooks);

 private:
  bool Covers(uint64_t address) const ABSL_SHARED_LOCKS_REQUIRED(mu_);

  Primary& primary_;
  const MirrorOptions options_;
  std::unique_ptr<FaultHooks> hooks_;  // test only

  mutable SharedMutex mu_;
  ShadowPageTable pt_ ABSL_GUARDED_BY(mu_);
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t first_page_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t end_page_ ABSL_GUARDED_BY(mu_) = 0;  // exclusive

  std::atomic<uint64_t> faults_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> stale_{0};
  std::atomic<uint64_t> installs_{0};
  std::atomic<uint64_t> timeouts_{0};
  std::atomic<uint64_t> invalidations_{0};
  std::atomic<uint64_t> refusals_{0};
  std::atomic<uint64_t> zapped_{0};
  std::atomic<uint64_t> accesses_{0};
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_MIRROR_H_
