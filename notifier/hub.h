// notifier/hub.h: NotifierSubscriptions, the per-address-space notifier hub (Linux: struct
// mmu_notifier_subscriptions plus the mmu_notifier_* entry points).
//
// The owner of an address space brackets every change to its mappings:
//   absl::Status s = hub.InvalidateRangeStart(range);   // or use InvalidationGuard
//   if (!s.ok()) { /* Unavailable (EAGAIN): do NOT touch the range, do NOT call end */ }
//   ...change the mappings of [range.start, range.end)...
//   hub.InvalidateRangeEnd(range);                       // same range, same thread
// and calls Release() once at teardown.
//
// Contract (Linux semantics; notifier/README.md explains each rule):
//  - Start delivers to interval subscriptions first, then to classic ones, newest
//    registered first, in one read-side section of the hub's SRCU domain; end likewise.
//  - Only a non-blockable start can fail; the result is Unavailable. What happens to the
//    other subscriptions depends on the Policy below.
//  - Registration waits until no start/end window is open and keeps new ones out while it
//    links (Linux: mm_take_all_locks). Unregister calls Release (if not yet released)
//    inside a read-side section, unlinks and waits for a grace period: after it returns
//    no op of the subscription runs or will run, teardown's included. Put never calls
//    Release; the free runs after a grace period that began after the unlink, so it waits
//    for every walk (teardown's included) that could still see the subscription;
//    Synchronize() waits for pending frees.
//  - Release() (teardown) first marks the hub dying (Register, Get and Insert fail with
//    FailedPrecondition from then on), invalidates every interval with Event::kRelease,
//    calls Release on every classic subscription exactly once (it or a racing Unregister)
//    inside one read-side section, unlinks them all and waits for a grace period: no
//    classic op runs after it returns, and no ->Release is still running.
//  - An end on a thread that holds no window of this hub (a caller bug) is reported by the
//    pairing checker (kEndWithoutStart) and otherwise ignored: no callback, no count.
//  The lifetime rules, beside Linux's, are tabled in the README.
//
// Locks: link_mu_ serialises the registrars that close the window gate and is held
// while they wait for open windows (so a leaked window blocks only registrations).
// reg_mu_ guards the classic list and registration state (writers only; readers
// use SRCU and never take it). itree_mu_ guards the interval tree, invalidate_seq_ and
// active_invalidate_ranges_ (held briefly by starts/ends only when intervals exist).
// Lock order: teardown_mu_ and link_mu_ before reg_mu_ before itree_mu_. Locks held while
// callbacks run: none for start/end, young and arch ops, interval Invalidate from a start,
// and a ->Release from Unregister (SRCU read-side only). Teardown holds teardown_mu_ across its
// interval kRelease Invalidate and every ->Release it calls (a second Release() waits).
// AllocNotifier runs under reg_mu_. FreeNotifier after a Put runs under
// SrcuDomain::sync_mu_ (in whichever thread's Synchronize runs the queue); from a Get
// that failed to link, or from the destructor, under no lock (subscription.h says what
// it may call).
// Threads: every method is thread-safe. Start/end/young ops never take reg_mu_.
// Start/end have an inline fast path (end of this file): without interval subscriptions
// they take no lock and execute no locked instruction (checker off), only stores to this
// thread's own gate and SRCU slots (thread_shard.h).
// REQUIRES (all callbacks except Release): do not call into the same hub.
#ifndef MMUVISOR_NOTIFIER_HUB_H_
#define MMUVISOR_NOTIFIER_HUB_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/hub_hooks.h"
#include "notifier/base/mutex.h"
#include "notifier/interval_subscription.h"
#include "notifier/interval_tree.h"
#include "notifier/pairing_checker.h"
#include "notifier/range.h"
#include "notifier/srcu.h"
#include "notifier/subscription.h"
#include "notifier/thread_shard.h"
#include "notifier/window_gate.h"

namespace mmuvisor::notifier {

// How a failed non-blockable start is handled (the history of the seed thread).
enum class Policy : uint8_t {
  // Linux 5.12+ (c2655835fd8c): call every start even after a failure, then call end on
  // every subscription that has one, then return Unavailable.
  kUpstream,
  // The thread's v3 proposal: end-needing subscriptions are kept last, the walk stops at
  // the first failure (nothing before it needs an end); once two end-needing
  // subscriptions are registered, non-blockable starts fail up front.
  kSortedEndLast,
  // Pre-5.12: every start is called, a failure skips every end. Breaks pairing; exists to
  // reproduce the bug.
  kLegacyUnpaired,
};
const char* PolicyName(Policy policy);

struct HubOptions {
  Policy policy = Policy::kUpstream;
  // mmuvisor closes a gap Linux leaves (notifier/README.md, "Classic subscriptions"): when
  // the interval part of a start succeeded and a classic start then fails, undo the
  // interval part before reporting Unavailable. false reproduces Linux: active ranges stay
  // raised, invalidate_seq odd.
  bool unwind_interval_on_failure = true;
  // Run the PairingChecker (cheap: two relaxed atomic adds per callback).
  bool check_pairing = true;
};

class NotifierSubscriptions {
 public:
  explicit NotifierSubscriptions(HubOptions options = {});
  // Waits for read-side sections in flight (a young op or a ->Release running on another
  // thread finishes first), then runs pending frees and frees the Get subscriptions.
  // REQUIRES: no subscription registered except through Get, no interval inserted, no
  // window open, and no call into the hub begins once destruction has (Linux: the
  // caller's mm_count pin).
  ~NotifierSubscriptions();
  NotifierSubscriptions(const NotifierSubscriptions&) = delete;
  NotifierSubscriptions& operator=(const NotifierSubscriptions&) = delete;

  // ---- Classic subscriptions -------------------------------------------------------
  // InvalidArgument: forbidden op combination (arch TLBs with start/end; kStartMayFail
  // with end). FailedPrecondition: already registered, or the hub was torn down.
  // May sleep until open windows end. REQUIRES: not called from a callback.
  absl::Status Register(Subscription& sub) ABSL_LOCKS_EXCLUDED(link_mu_, reg_mu_);
  // Release (unless already released, by teardown or before), unlink, wait for a grace
  // period. After it returns no op of `sub` runs or will run; `sub` may be destroyed.
  // FailedPrecondition: not registered here, or registered through Get (use Put).
  absl::Status Unregister(Subscription& sub) ABSL_LOCKS_EXCLUDED(reg_mu_);
  // Linux mmu_notifier_get: the linked subscription created by `allocator`, with one more
  // user, or a new one from allocator.AllocNotifier (its error is returned as is).
  // FailedPrecondition once teardown has begun (its subscriptions are being released).
  absl::StatusOr<Subscription*> Get(SubscriptionAllocator& allocator)
      ABSL_LOCKS_EXCLUDED(link_mu_, reg_mu_);
  // Drops a user; the last one unlinks and frees after a grace period (never Release).
  // Safe from Release. FailedPrecondition: not a Get subscription of this hub.
  absl::Status Put(Subscription& sub) ABSL_LOCKS_EXCLUDED(reg_mu_);
  // Waits for a grace period and for every pending free (Linux mmu_notifier_synchronize).
  void Synchronize() ABSL_LOCKS_EXCLUDED(reg_mu_);

  // ---- Invalidation ------------------------------------------------------------------
  // OK: the window is open; the caller must call InvalidateRangeEnd(range).
  // Unavailable: a non-blockable start failed (or a registration is in progress); every
  // subscription that needed an end got it (policy permitting); do not call end.
  // InvalidArgument: empty or wrapping range.
  absl::Status InvalidateRangeStart(const Range& range);
  // REQUIRES: a start of the same range returned OK on this thread. An end on a thread
  // with no window open is reported (kEndWithoutStart) and dropped.
  void InvalidateRangeEnd(const Range& range);

  // ---- Aging and secondary TLBs --------------------------------------------------------
  bool ClearFlushYoung(uint64_t start, uint64_t end);  // OR over all subscriptions
  bool ClearYoung(uint64_t start, uint64_t end);       // OR over all subscriptions
  bool TestYoung(uint64_t address);                    // stops at the first young
  void ArchInvalidateSecondaryTlbs(uint64_t start, uint64_t end);

  // ---- Teardown ------------------------------------------------------------------------
  // Linux __mmu_notifier_release. Idempotent; a concurrent second call returns when the
  // first has. REQUIRES: not called from a callback.
  void Release() ABSL_LOCKS_EXCLUDED(teardown_mu_, reg_mu_, itree_mu_);
  // True from the moment Release() began (registration, Get and Insert are refused).
  bool torn_down() const { return torn_down_.load(std::memory_order_acquire); }

  // ---- Testing -------------------------------------------------------------------------
  // Test-only race-window hooks (hub_hooks.h). REQUIRES: no other thread uses the hub.
  void SetHooksForTesting(HubHooks hooks);

  // ---- Introspection -----------------------------------------------------------------
  Policy policy() const { return options_.policy; }
  const HubOptions& options() const { return options_; }
  size_t subscription_count() const ABSL_LOCKS_EXCLUDED(reg_mu_);
  uint64_t invalidate_seq() const ABSL_LOCKS_EXCLUDED(itree_mu_);
  uint64_t active_invalidate_ranges() const ABSL_LOCKS_EXCLUDED(itree_mu_);
  size_t interval_count() const ABSL_LOCKS_EXCLUDED(itree_mu_);
  const PairingChecker& pairing_checker() const { return checker_; }
  PairingSummary pairing_summary() const ABSL_LOCKS_EXCLUDED(reg_mu_);
  // Non-blockable starts refused up front by kSortedEndLast (two end-needing subs).
  uint64_t sorted_nonblock_refusals() const {
    // relaxed: statistic.
    return sorted_refusals_.load(std::memory_order_relaxed);
  }

 private:
  friend class IntervalSubscription;

  // An immutable snapshot of the classic list in dispatch order, published with a
  // release store and read under SRCU with an acquire load.
  // `starters` and `enders` are `subs` filtered by op (same order), so the start and end
  // walks test no op bits.
  struct SubscriptionList {
    std::vector<Subscription*> subs;
    std::vector<Subscription*> starters;  // subs with kInvalidateRangeStart
    std::vector<Subscription*> enders;    // subs with kInvalidateRangeEnd
    int end_needers = 0;                  // enders.size()
  };

  // The registration checks (op combination, not yet registered, not torn down).
  absl::Status CheckLinkableLocked(const Subscription& sub) const
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  // REQUIRES: the gate closed by this thread (under link_mu_).
  absl::Status LinkLocked(Subscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_mu_, reg_mu_);
  // Get's search (with the dying check): the linked subscription with one more user, or
  // null when none is linked.
  absl::StatusOr<Subscription*> FindGetLocked(SubscriptionAllocator& allocator)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  // Get's registration, gate closed: search again, allocate, link. A subscription that
  // LinkLocked refused is left in `unlinked` for the caller to free after the locks.
  absl::StatusOr<Subscription*> AllocAndLinkLocked(SubscriptionAllocator& allocator,
                                                   std::unique_ptr<Subscription>* unlinked)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(link_mu_, reg_mu_);
  void UnlinkLocked(Subscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);
  void PublishLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(reg_mu_);

  // Start/end after the inline fast path (hub_dispatch.cc) declined: a shared or not yet
  // assigned thread slot, a closed gate, an epoch flip or interval subscriptions.
  // StartSlow enters the gate itself; StartInWindow runs with the gate entered and exits
  // it on failure; EndSlow exits it.
  absl::Status StartSlow(const Range& range);
  absl::Status StartInWindow(const Range& range);
  void EndSlow(const Range& range);
  // An end on a thread that holds no window: reported, nothing else happens.
  ABSL_ATTRIBUTE_NOINLINE void UnmatchedEnd(const Range& range);
  // Classic dispatch over one list; returns true when a start failed (policy handling
  // done). The walks run inside an SRCU read-side section of the caller's.
  bool ClassicStartWalk(const SubscriptionList& list, const Range& range);
  void ClassicEndWalk(const SubscriptionList& list, const Range& range);
  // ClassicStartWalk in its own read-side section; ClassicEnd likewise.
  bool ClassicStart(const Range& range);
  void ClassicEnd(const Range& range);
  // The rest of a walk whose start at list.starters[failed] returned kAgain
  // (non-blockable).
  void ClassicStartFailed(const SubscriptionList& list, size_t failed, const Range& range);
  ABSL_ATTRIBUTE_NOINLINE static absl::Status ClassicStartUnavailable();
  // kSortedEndLast with two end-needers refuses a non-blockable start; checked before the
  // interval part (StartInWindow). Counts the refusal.
  bool SortedRefusesUpFront(const Range& range);

  // Interval part (Linux mn_itree_*). ItreeStart returns false when a non-blockable
  // invalidate failed; it has then undone its own accounting.
  // `release_walk`: teardown's walk; intervals inserted after it get their own kRelease
  // invalidation from the last end.
  bool ItreeStart(const Range& range, bool release_walk = false)
      ABSL_LOCKS_EXCLUDED(itree_mu_);
  void ItreeEnd() ABSL_LOCKS_EXCLUDED(itree_mu_);
  void EnsureItree() ABSL_LOCKS_EXCLUDED(link_mu_, reg_mu_);
  // Teardown's interval part (Linux mn_itree_release). REQUIRES: itree_dying_ set.
  void ItreeRelease() ABSL_LOCKS_EXCLUDED(itree_mu_);
  absl::Status IntervalInsert(IntervalSubscription& sub, uint64_t start, uint64_t length)
      ABSL_LOCKS_EXCLUDED(itree_mu_);
  void IntervalRemove(IntervalSubscription& sub) ABSL_LOCKS_EXCLUDED(itree_mu_);
  uint64_t IntervalReadBegin(IntervalSubscription& sub) ABSL_LOCKS_EXCLUDED(itree_mu_);
  void TreeInsertLocked(IntervalSubscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(itree_mu_);
  void TreeRemoveLocked(IntervalSubscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(itree_mu_);
  void DeferLocked(IntervalSubscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(itree_mu_);
  void UndeferLocked(IntervalSubscription& sub) ABSL_EXCLUSIVE_LOCKS_REQUIRED(itree_mu_);

  const HubOptions options_;
  PairingChecker checker_;
  SrcuDomain srcu_;
  WindowGate gate_;

  std::unique_ptr<const HubHooks> hooks_;  // test only; null in production

  // Serialises Release() calls: a second one returns only once the first has.
  Mutex teardown_mu_ ABSL_ACQUIRED_BEFORE(reg_mu_);
  // Serialises the gate's closers (Register, a Get that links, the first interval
  // insert). Held across the wait for open windows, which therefore holds no reg_mu_.
  Mutex link_mu_ ABSL_ACQUIRED_BEFORE(reg_mu_);
  mutable Mutex reg_mu_ ABSL_ACQUIRED_BEFORE(itree_mu_);
  std::vector<Subscription*> linked_ ABSL_GUARDED_BY(reg_mu_);  // registration order
  uint64_t next_order_ ABSL_GUARDED_BY(reg_mu_) = 1;
  std::vector<Subscription*> unlinked_gets_ ABSL_GUARDED_BY(reg_mu_);  // torn down, users>0
  // acquire/release: pairs the PublishLocked store with the loads in dispatch.
  std::atomic<const SubscriptionList*> list_{nullptr};
  std::atomic<bool> torn_down_{false};         // Release() began (set under reg_mu_)
  std::atomic<bool> teardown_returned_{false};  // Release() returned (checker only)
  std::atomic<bool> has_itree_{false};  // set once, with the gate closed
  std::atomic<uint64_t> sorted_refusals_{0};

  mutable Mutex itree_mu_;
  IntervalTree itree_ ABSL_GUARDED_BY(itree_mu_);
  uint64_t invalidate_seq_ ABSL_GUARDED_BY(itree_mu_) = 2;
  uint64_t active_invalidate_ranges_ ABSL_GUARDED_BY(itree_mu_) = 0;
  IntervalSubscription* deferred_head_ ABSL_GUARDED_BY(itree_mu_) = nullptr;
  // Teardown's dying mark for the interval side, set before its release walk: Insert
  // refuses from then on, so no interval escapes the walk.
  bool itree_dying_ ABSL_GUARDED_BY(itree_mu_) = false;
  // Teardown's release walk has begun: a deferred insert that enters the tree from now
  // on missed it (ItreeEnd then invalidates it with kRelease).
  bool itree_released_ ABSL_GUARDED_BY(itree_mu_) = false;
  // Linux subscriptions->wq: ReadBegin and Remove wait here for invalidate_seq_ to move.
  std::condition_variable itree_wq_;
};

// ---- Inline fast path of start/end ------------------------------------------------------
// Like Linux's mmu_notifier_invalidate_range_start wrappers, the common case is inlined
// into the caller: a thread with an exclusive slot (thread_shard.h), gate open, no
// interval subscriptions, membarrier available. The window-gate entry and the SRCU read
// lock are two store-buffering pairs on this thread's own line: both stores, one
// compiler barrier, one re-load of the domain's state word checks both
// (SrcuDomain::TryEnterWindowAndRead). Anything else backs out and takes the general
// path (hub_dispatch.cc). A failed start continues out of line in ClassicStartFailed.

inline bool NotifierSubscriptions::ClassicStartWalk(const SubscriptionList& list,
                                                    const Range& range) {
  if (ABSL_PREDICT_FALSE(options_.policy == Policy::kSortedEndLast && !range.blockable &&
                         list.end_needers >= 2)) {
    // v3: with two end-needing subscriptions the subset already called cannot be
    // unwound, so non-blocking invalidation is off for this hub.
    // relaxed: statistic.
    sorted_refusals_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const bool check = checker_.enabled();
  Subscription* const* subs = list.starters.data();
  const size_t n = list.starters.size();
  for (size_t i = 0; i < n; ++i) {
    Subscription* sub = subs[i];
    const StartResult result = sub->InvalidateRangeStart(range);
    if (check) checker_.OnStart(*sub, range, result);
    // A blockable start may not fail. Linux WARNs and its blockable caller ignores the
    // result; mmuvisor reports it (checker) and treats the start as done, so the
    // caller's end stays paired.
    if (ABSL_PREDICT_FALSE(result != StartResult::kOk) && !range.blockable) {
      ClassicStartFailed(list, i, range);
      return true;
    }
  }
  return false;
}

inline void NotifierSubscriptions::ClassicEndWalk(const SubscriptionList& list,
                                                  const Range& range) {
  const bool check = checker_.enabled();
  for (Subscription* sub : list.enders) {
    sub->InvalidateRangeEnd(range);
    if (check) checker_.OnEnd(*sub, range);
  }
}

inline absl::Status NotifierSubscriptions::InvalidateRangeStart(const Range& range) {
  if (ABSL_PREDICT_FALSE(range.end <= range.start)) return range.Validate();
  // The raw slot: -1 (unassigned) and shared slots fail IsExclusiveSlot alike.
  const int slot = internal::tls_slot;
  int idx;
  if (ABSL_PREDICT_FALSE(!internal::IsExclusiveSlot(slot) ||
                         !srcu_.TryEnterWindowAndRead(slot, &idx))) {
    return StartSlow(range);  // waits, or reports Unavailable when non-blockable
  }
  // acquire: pairs with the release in EnsureItree; cannot change while a window is open.
  if (ABSL_PREDICT_FALSE(has_itree_.load(std::memory_order_acquire))) {
    srcu_.ReadUnlockExclusive(slot, idx);
    return StartInWindow(range);  // the window stays entered
  }
  // acquire: pairs with the release in PublishLocked.
  const bool failed = ClassicStartWalk(*list_.load(std::memory_order_acquire), range);
  srcu_.ReadUnlockExclusive(slot, idx);
  if (ABSL_PREDICT_TRUE(!failed)) return absl::OkStatus();
  gate_.ExitExclusive(slot);
  return ClassicStartUnavailable();
}

inline void NotifierSubscriptions::InvalidateRangeEnd(const Range& range) {
  const int slot = internal::tls_slot;
  int idx;
  // The thread must hold a window (its own line, already in cache); EndSlow reports an
  // end without one. acquire: as in InvalidateRangeStart.
  if (ABSL_PREDICT_TRUE(internal::IsExclusiveSlot(slot) && gate_.HoldsWindowExclusive(slot) &&
                        !has_itree_.load(std::memory_order_acquire) &&
                        srcu_.TryReadLock(slot, &idx))) {
    // acquire: pairs with the release in PublishLocked.
    ClassicEndWalk(*list_.load(std::memory_order_acquire), range);
    srcu_.ReadUnlockExclusive(slot, idx);
    gate_.ExitExclusive(slot);
    return;
  }
  EndSlow(range);
}

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_HUB_H_
