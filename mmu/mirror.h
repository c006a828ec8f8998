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
//     detached? unlock, refuse
//     ReadRetry(seq)? unlock, again : install
//
// Detach, in the order a driver must use (zap before remove, so no window is left in which
// an invalidation reaches nobody while an entry still maps the page it removes):
//   lock(mu_); attached_ = false; zap everything; unlock     (Fault/AccessPage now refuse)
//   wait until no Fault is in flight  (it may still call ReadBegin, which needs the interval)
//   Remove()                                                 (no Invalidate after it)
//
// Invariants: an entry maps an address to the page the primary uses for it now, or to
// nothing; there is no entry while detached; AccessPage() runs its callback with mu_ held,
// so the page cannot be invalidated under it (invalidation takes mu_ before the primary
// changes anything). A Fault calls ReadBegin only while the interval is inserted.
// Locks: mu_ (the "user lock") guards pt_, attached_ and every install; SetSeq runs under
// it. flight_mu_ (leaf, taken inside mu_ or alone) counts faults in flight for Detach.
// Threads: Invalidate on invalidating threads; Fault/AccessPage on any thread (they may
// sleep), also while Detach runs (see Detach); Attach/Detach on one control thread, never
// concurrently with each other. Never call the hub or this mirror from AccessPage's
// callback, nor Detach from a fault hook (it would wait for that fault).
#ifndef MMUVISOR_MMU_MIRROR_H_
#define MMUVISOR_MMU_MIRROR_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
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
#include "notifier/base/mutex.h"
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
  // Stops mirroring: drops every entry, then removes the interval (no Invalidate runs
  // after it returns). Fault and AccessPage may run concurrently with it: once it has
  // begun, they install nothing and use no entry, and fail with kFailedPrecondition
  // ("detached"); an AccessPage callback that began before it finishes before the zap, on
  // a page that is still current. Detach waits for faults in flight (each stops within one
  // attempt: at its locked check before the install, or at its next attempt). Errors: kFailedPrecondition if not
  // attached; if Remove fails the mirror is attached again (with no entries) and its error
  // is returned with context. REQUIRES: not called from a fault hook or AccessPage's fn.
  absl::Status Detach() ABSL_LOCKS_EXCLUDED(mu_, flight_mu_);

  // dmirror_range_fault for one page: mirror the page holding `address` for `access`.
  // Errors: kOutOfRange (outside the interval), kFailedPrecondition (detached),
  // kPermissionDenied (write to a read-only page), kDeadlineExceeded (still stale after
  // options.retry_timeout), or the primary's error. May sleep. Detached (also while Detach
  // runs, or detached before the install) is checked first, then the interval.
  absl::Status Fault(uint64_t address, Access access) ABSL_LOCKS_EXCLUDED(mu_, flight_mu_);

  // dmirror_read/write: runs fn(host address of the page) with mu_ held, faulting the
  // page in first if the mirror has no (sufficient) entry. fn must be short and must not
  // call into the hub or this mirror. Errors as Fault(); kFailedPrecondition ("detached")
  // without running fn once Detach has begun.
  absl::Status AccessPage(uint64_t address, Access access,
                          absl::FunctionRef<void(uint64_t host_address)> fn)
      ABSL_LOCKS_EXCLUDED(mu_, flight_mu_);

  // notifier::IntervalSubscription.
  bool Invalidate(const notifier::Range& range, uint64_t cur_seq) override
      ABSL_LOCKS_EXCLUDED(mu_);

  std::optional<ShadowEntry> Lookup(uint64_t address) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t mapped_count() const ABSL_LOCKS_EXCLUDED(mu_);
  MirrorStats stats() const;
  // Test-only: see mmu/fault_hooks.h (hook `gfn` arguments are address >> kPageShift).
  void SetFaultHooksForTesting(FaultHooks hooks);
  // Test-only: runs on the detaching thread between Detach's two steps, with no lock
  // held. Install before Detach starts.
  void SetDetachHookForTesting(std::function<void()> between_steps);

 private:
  bool Covers(uint64_t address) const ABSL_SHARED_LOCKS_REQUIRED(mu_);
  absl::Status DetachedError(const char* op, uint64_t address) const;
  // Fault's entry and exit: counted in faults_in_flight_, which Detach drains.
  absl::Status EnterFault(uint64_t address) ABSL_LOCKS_EXCLUDED(mu_, flight_mu_);
  void ExitFault() ABSL_LOCKS_EXCLUDED(flight_mu_);
  absl::Status FaultAttempts(uint64_t address, Access access) ABSL_LOCKS_EXCLUDED(mu_);

  Primary& primary_;
  const MirrorOptions options_;
  std::unique_ptr<FaultHooks> hooks_;  // test only
  std::function<void()> detach_hook_;  // test only

  mutable SharedMutex mu_;
  ShadowPageTable pt_ ABSL_GUARDED_BY(mu_);
  bool attached_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t first_page_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t end_page_ ABSL_GUARDED_BY(mu_) = 0;  // exclusive

  // Faults between their attached_ check and their return: they may call ReadBegin, which
  // needs the interval inserted, so Detach waits for 0 before Remove. A fault enters only
  // under mu_ with attached_ true (Detach clears it under mu_ first), so none enters after
  // Detach's first step.
  mutable Mutex flight_mu_ ABSL_ACQUIRED_AFTER(mu_);
  std::condition_variable flight_cv_;  // signalled when faults_in_flight_ drops to 0
  uint64_t faults_in_flight_ ABSL_GUARDED_BY(flight_mu_) = 0;

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
