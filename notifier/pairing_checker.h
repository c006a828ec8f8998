// notifier/pairing_checker.h: checks that every subscription sees start/end paired.
//
// Each hub owns one checker (on unless HubOptions::check_pairing is false). The hub calls
// it after every classic callback it delivers. The per-subscription counters live in the
// Subscription itself (relaxed atomics), so the common path costs one atomic add per start
// and one per end (Subscription::pairs_ packs starts and open windows), nothing shared
// between subscriptions; only violations take the lock.
//
// A violation is recorded for:
//   kEndWithoutStart          end delivered while the subscription had no open window
//                             (never for a subscription without a start op: Linux
//                             allows an end alone; each of its ends counts as a window),
//                             or (hub-wide, ReportUnmatchedEnd) an end on a thread that
//                             holds no window: the hub reports it and calls nobody;
//   kCallbackAfterUnregister  any op (->Release included) after Unregister/Put returned;
//   kCallbackAfterTeardown    any classic op after the hub's Release returned, or a
//                             ->Release that starts after it returned;
//   kBlockableStartFailed     a start returned kAgain for a blockable range (the hub
//                             treats it as done: it counts as a window, end included);
//   kFailingStartHasEnd       a start failed on a subscription that has an end;
//   kUndeclaredStartFailure   a start failed without kStartMayFail being declared.
// Not violations but counted: windows left open when a subscription was unlinked
// mid-invalidation (Linux allows it; KVM copes), reported as unlinked_with_open.
//
// Threads: all methods are thread-safe. Summary() is exact once the hub is quiescent.
#ifndef MMUVISOR_NOTIFIER_PAIRING_CHECKER_H_
#define MMUVISOR_NOTIFIER_PAIRING_CHECKER_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "notifier/base/mutex.h"
#include "notifier/range.h"
#include "notifier/subscription.h"

namespace mmuvisor::notifier {

enum class ViolationKind : uint8_t {
  kEndWithoutStart,
  kCallbackAfterUnregister,
  kCallbackAfterTeardown,
  kBlockableStartFailed,
  kFailingStartHasEnd,
  kUndeclaredStartFailure,
};
const char* ViolationKindName(ViolationKind kind);

struct Violation {
  ViolationKind kind;
  std::string subscription;  // Subscription::name()
  const void* address;       // the Subscription object
  Range range;               // for young/arch ops: [start, end) with Event::kClear
  std::string ToString() const;
};

struct PairingSummary {
  uint64_t starts = 0;         // successful starts delivered, all subscriptions
  uint64_t ends = 0;           // ends delivered
  uint64_t failed_starts = 0;  // kAgain results
  int64_t open = 0;            // sum of starts - ends over linked subscriptions now
  int64_t max_depth = 0;       // deepest nesting seen on any subscription
  uint64_t unlinked_with_open = 0;  // windows abandoned by mid-window unlink
  uint64_t violations = 0;          // total count (the list below is capped)
  std::vector<Violation> first_violations;  // at most kMaxKept, oldest first
  std::string ToString() const;
};

class PairingChecker {
 public:
  static constexpr size_t kMaxKept = 32;

  explicit PairingChecker(bool enabled) : enabled_(enabled) {}
  PairingChecker(const PairingChecker&) = delete;
  PairingChecker& operator=(const PairingChecker&) = delete;

  bool enabled() const { return enabled_; }

  // Hooks the hub calls. Each checks the link state of `sub` first. The common case
  // (linked, start OK, end with a start) is inline: one acquire load and one relaxed
  // read-modify-write of the subscription's pairs_ word; the rest is out of line.
  void OnStart(Subscription& sub, const Range& range, StartResult result) {
    if (!enabled_) return;
    CheckLinked(sub, range);
    // A blockable start that failed is reported, then counted as a window: the hub
    // treats it as done and the caller's end follows (hub.h, ClassicStartWalk).
    if (ABSL_PREDICT_FALSE(result != StartResult::kOk) && !OnFailedStart(sub, range)) {
      return;
    }
    constexpr uint64_t kStart = uint64_t{1} << Subscription::kOpenBits;
    // relaxed (all pairing counters): statistics owned by one subscription; pairing is
    // judged on the counts, not on their order with other memory.
    if (!sub.ops().Has(Op::kInvalidateRangeEnd)) {
      sub.pairs_.fetch_add(kStart, std::memory_order_relaxed);
      return;
    }
    const int64_t open = static_cast<int64_t>(
        (sub.pairs_.fetch_add(kStart + 1, std::memory_order_relaxed) + 1) &
        Subscription::kOpenMask);
    // relaxed: see above.
    if (ABSL_PREDICT_FALSE(open > sub.max_depth_.load(std::memory_order_relaxed))) {
      RaiseDepth(sub, open);
    }
  }
  void OnEnd(Subscription& sub, const Range& range) {
    if (!enabled_) return;
    CheckLinked(sub, range);
    // relaxed: see OnStart. An end that finds no open window borrows from the start
    // count (kBorrowBit shows it, also to a second such end racing with it);
    // EndWithoutStart puts it back and reports it, unless the subscription has no start
    // op (every end of it borrows; EndWithoutStart counts it as a window instead), so
    // subscriptions with a start pay nothing for that case.
    if (ABSL_PREDICT_FALSE(((sub.pairs_.fetch_sub(1, std::memory_order_relaxed) - 1) &
                            Subscription::kBorrowBit) != 0)) {
      EndWithoutStart(sub, range);
    }
  }
  void OnOtherOp(Subscription& sub, uint64_t start, uint64_t end);
  // Before a ->Release call (unregister or teardown). `teardown_returned`: the hub's
  // Release() has already returned, so this release comes too late (always reported).
  void OnRelease(Subscription& sub, bool teardown_returned);
  // An end on a thread that holds no window of the hub at `hub` (a caller bug: the end
  // contract REQUIRES a start). Always reported, even with the checker off: the hub
  // drops the end, so this report is the only trace of it.
  void ReportUnmatchedEnd(const void* hub, const Range& range) ABSL_LOCKS_EXCLUDED(mu_);
  // The hub unlinked `sub` (unregister, put, teardown); its open windows are abandoned.
  void OnUnlinked(Subscription& sub);

  void Report(ViolationKind kind, const Subscription& sub, const Range& range)
      ABSL_LOCKS_EXCLUDED(mu_);

  // `linked` sums the counters of the hub's linked subscriptions (max_depth unused).
  PairingSummary Summary(const PairingCounters& linked) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t violation_count() const {
    // relaxed: a statistic; Summary() takes the lock for an exact list.
    return violation_count_.load(std::memory_order_relaxed);
  }

 private:
  void CheckLinked(Subscription& sub, const Range& range) {
    // acquire: pairs with the release stores of link_state_ in the hub (unregister and
    // teardown set it only after their grace period).
    if (ABSL_PREDICT_FALSE(sub.link_state_.load(std::memory_order_acquire) >=
                           Subscription::LinkState::kUnregistered)) {
      ReportUnlinked(sub, range);
    }
  }
  void ReportUnlinked(Subscription& sub, const Range& range);
  // Reports a kAgain result; returns true when the hub treats the start as done (a
  // blockable range), so that OnStart counts its window.
  bool OnFailedStart(Subscription& sub, const Range& range);
  void RaiseDepth(Subscription& sub, int64_t open);
  void EndWithoutStart(Subscription& sub, const Range& range);
  void Keep(Violation violation) ABSL_LOCKS_EXCLUDED(mu_);

  const bool enabled_;
  std::atomic<uint64_t> violation_count_{0};
  std::atomic<uint64_t> retired_starts_{0};  // totals of unlinked subscriptions
  std::atomic<uint64_t> retired_ends_{0};
  std::atomic<uint64_t> failed_starts_{0};
  std::atomic<int64_t> max_depth_{0};
  std::atomic<uint64_t> unlinked_with_open_{0};
  mutable Mutex mu_;
  std::vector<Violation> kept_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_PAIRING_CHECKER_H_
