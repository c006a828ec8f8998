// notifier/interval_subscription.h: interval subscriptions (Linux: struct
// mmu_interval_notifier) and their collision-retry read side.
//
// An IntervalSubscription watches [start, start + length) of one hub's address space. On
// every invalidation that overlaps it, the hub calls Invalidate(range, cur_seq) — before
// any classic subscription, on start; end has no callback, it only advances the seq.
//
// The protocol (details and a timeline in notifier/README.md):
//   hub invalidate_seq: starts at 2; even = idle; an overlapping start makes it odd
//   (`|= 1`); only the last end makes it even (`++`) and wakes ReadBegin/Remove waiters.
//   Invalidate() must call SetSeq(cur_seq) under the driver's own lock ("user lock")
//   before tearing its mappings down.
//   Driver fault path:
//     seq = sub.ReadBegin();            // may sleep until no invalidation covers us
//     ...look pages up, no user lock...
//     lock(user lock);
//     if (sub.ReadRetry(seq)) { unlock; goto again; }
//     ...install mappings...; unlock(user lock);
//
// Insert/Remove during a frozen window (invalidate_seq odd) are deferred to the last end;
// Remove then waits until that end has run, so after Remove returns no Invalidate runs.
// Threads: Insert/Remove/ReadBegin may sleep; ReadRetry needs the user lock (the one held
// around SetSeq); CheckRetry is a lockless hint for any thread. Invalidate runs on
// invalidating threads, concurrently with everything else.
#ifndef MMUVISOR_NOTIFIER_INTERVAL_SUBSCRIPTION_H_
#define MMUVISOR_NOTIFIER_INTERVAL_SUBSCRIPTION_H_

#include <atomic>
#include <cstdint>

#include "absl/status/status.h"
#include "notifier/range.h"

namespace mmuvisor::notifier {

class NotifierSubscriptions;

class IntervalSubscription {
 public:
  IntervalSubscription();
  // REQUIRES: not inserted (Remove returned, or never inserted).
  virtual ~IntervalSubscription();
  IntervalSubscription(const IntervalSubscription&) = delete;
  IntervalSubscription& operator=(const IntervalSubscription&) = delete;

  // Linux: ops->invalidate. Return false only when !range.blockable and the work would
  // need to sleep (e.g. the user lock is contended): the whole start then fails with
  // Unavailable. Must call SetSeq(cur_seq) under the user lock when returning true.
  virtual bool Invalidate(const Range& range, uint64_t cur_seq) = 0;

  // Start watching [start, start + length) of `hub`.
  // InvalidArgument: length 0, or start + length past 2^64 - 1 (a Range's end cannot reach
  // it, so neither could an invalidation). FailedPrecondition: already inserted,
  // or the hub's teardown (Release) has begun: it would never get its kRelease
  // invalidation. An insert deferred before teardown began gets it when it enters the tree.
  absl::Status Insert(NotifierSubscriptions& hub, uint64_t start, uint64_t length);
  // Stop watching; after return Invalidate is not running and will not run. May sleep.
  // FailedPrecondition if not inserted. REQUIRES: not called from Invalidate.
  absl::Status Remove();

  // Begin a read: returns a seq for ReadRetry. Sleeps while an invalidation that covers
  // this subscription is open. REQUIRES: inserted (else it aborts, saying so), and no
  // start/end window of this thread open on the hub (it would wait for its own end).
  uint64_t ReadBegin();
  // True: an invalidation ran (or runs) since ReadBegin returned `seq`; start over.
  // REQUIRES: caller holds the user lock that Invalidate holds around SetSeq.
  bool ReadRetry(uint64_t seq) const {
    // relaxed: the user lock orders this against SetSeq's store.
    return invalidate_seq_.load(std::memory_order_relaxed) != seq;
  }
  // Lockless hint: true means retry; false may be stale. Never a substitute for ReadRetry.
  bool CheckRetry(uint64_t seq) const {
    // acquire: pairs with the release in SetSeq, so a true answer is never stale-true.
    return invalidate_seq_.load(std::memory_order_acquire) != seq;
  }
  // REQUIRES: called from Invalidate with the user lock held.
  void SetSeq(uint64_t cur_seq) {
    // release: pairs with the acquire in CheckRetry.
    invalidate_seq_.store(cur_seq, std::memory_order_release);
  }

  uint64_t start() const { return start_; }
  uint64_t last() const { return last_; }  // inclusive
  NotifierSubscriptions* hub() const { return hub_; }

 private:
  friend class NotifierSubscriptions;

  enum class Deferred : uint8_t { kNone, kInsert, kRemove };

  NotifierSubscriptions* hub_ = nullptr;  // set by Insert, cleared when removed
  // The rest is guarded by the hub's interval lock (start_/last_: written by Insert
  // before the subscription is in the tree).
  uint64_t start_ = 0;
  uint64_t last_ = 0;  // inclusive
  bool in_tree_ = false;
  Deferred deferred_ = Deferred::kNone;
  IntervalSubscription* deferred_next_ = nullptr;
  IntervalSubscription* deferred_prev_ = nullptr;
  std::atomic<uint64_t> invalidate_seq_{0};
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INTERVAL_SUBSCRIPTION_H_
