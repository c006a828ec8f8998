#include "notifier/pairing_checker.h"

#include <cstdint>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mmuvisor::notifier {
namespace {

void RaiseMax(std::atomic<int64_t>& max, int64_t value) {
  // relaxed: a statistic; the CAS loop only keeps the maximum monotonic.
  int64_t seen = max.load(std::memory_order_relaxed);
  while (value > seen &&
         !max.compare_exchange_weak(seen, value, std::memory_order_relaxed)) {
  }
}

}  // namespace

const char* ViolationKindName(ViolationKind kind) {
  switch (kind) {
    case ViolationKind::kEndWithoutStart: return "end without start";
    case ViolationKind::kCallbackAfterUnregister: return "callback after unregister";
    case ViolationKind::kCallbackAfterTeardown: return "callback after teardown";
    case ViolationKind::kBlockableStartFailed: return "blockable start failed";
    case ViolationKind::kFailingStartHasEnd: return "failing start has an end";
    case ViolationKind::kUndeclaredStartFailure: return "undeclared start failure";
  }
  return "unknown";
}

std::string Violation::ToString() const {
  return absl::StrFormat("%s: subscription '%s' (%p) range %s", ViolationKindName(kind),
                         subscription, address, range.ToString());
}

std::string PairingSummary::ToString() const {
  std::string out = absl::StrFormat(
      "starts=%d ends=%d failed_starts=%d open=%d max_depth=%d unlinked_with_open=%d "
      "violations=%d",
      starts, ends, failed_starts, open, max_depth, unlinked_with_open, violations);
  for (const Violation& v : first_violations) absl::StrAppend(&out, "\n  ", v.ToString());
  return out;
}

void PairingChecker::ReportUnlinked(Subscription& sub, const Range& range) {
  // acquire: as in CheckLinked.
  switch (sub.link_state_.load(std::memory_order_acquire)) {
    case Subscription::LinkState::kUnregistered:
      Report(ViolationKind::kCallbackAfterUnregister, sub, range);
      break;
    case Subscription::LinkState::kTornDown:
      Report(ViolationKind::kCallbackAfterTeardown, sub, range);
      break;
    default:
      break;
  }
}

void PairingChecker::RaiseDepth(Subscription& sub, int64_t open) {
  // A racing end without start (kBorrowBit) makes the count meaningless for a moment.
  if ((static_cast<uint64_t>(open) & Subscription::kBorrowBit) != 0) return;
  RaiseMax(sub.max_depth_, open);
  RaiseMax(max_depth_, open);
}

bool PairingChecker::OnFailedStart(Subscription& sub, const Range& range) {
  // relaxed: statistics (see OnStart).
  sub.failed_starts_.fetch_add(1, std::memory_order_relaxed);
  failed_starts_.fetch_add(1, std::memory_order_relaxed);
  if (range.blockable) Report(ViolationKind::kBlockableStartFailed, sub, range);
  if (sub.ops().Has(Op::kInvalidateRangeEnd)) {
    Report(ViolationKind::kFailingStartHasEnd, sub, range);
  }
  if (!sub.ops().Has(Op::kStartMayFail)) {
    Report(ViolationKind::kUndeclaredStartFailure, sub, range);
  }
  return range.blockable;
}

void PairingChecker::EndWithoutStart(Subscription& sub, const Range& range) {
  // relaxed: statistics. OnEnd's decrement found no open window and borrowed one start.
  if (!sub.ops().Has(Op::kInvalidateRangeStart)) {
    // An end alone is legal (Linux calls it without a start op). Count it as one whole
    // window: the borrowed start goes back and one more is added, so starts = ends.
    constexpr uint64_t kStart = uint64_t{1} << Subscription::kOpenBits;
    sub.pairs_.fetch_add(kStart + 1, std::memory_order_relaxed);
    return;
  }
  // Give it back, so one bug is reported once and starts = ends + open still holds.
  sub.pairs_.fetch_add(1, std::memory_order_relaxed);
  Report(ViolationKind::kEndWithoutStart, sub, range);
}

void PairingChecker::OnOtherOp(Subscription& sub, uint64_t start, uint64_t end) {
  if (!enabled_) return;
  CheckLinked(sub, Range{start, end, Event::kClear, true, nullptr});
}

void PairingChecker::OnRelease(Subscription& sub, bool teardown_returned) {
  const Range all{0, UINT64_MAX, Event::kRelease, true, nullptr};
  if (teardown_returned) return Report(ViolationKind::kCallbackAfterTeardown, sub, all);
  if (!enabled_) return;
  CheckLinked(sub, all);
}

void PairingChecker::ReportUnmatchedEnd(const void* hub, const Range& range) {
  Keep(Violation{ViolationKind::kEndWithoutStart, "(no window open on this thread)", hub,
                 range});
}

void PairingChecker::OnUnlinked(Subscription& sub) {
  if (!enabled_) return;
  // relaxed: statistics. The subscription's totals move to the retired sums so that
  // Summary() still counts them after it is gone.
  const PairingCounters c = sub.pairing();
  retired_starts_.fetch_add(c.starts, std::memory_order_relaxed);
  retired_ends_.fetch_add(c.ends, std::memory_order_relaxed);
  if (c.open > 0) unlinked_with_open_.fetch_add(c.open, std::memory_order_relaxed);
}

void PairingChecker::Report(ViolationKind kind, const Subscription& sub, const Range& range) {
  Keep(Violation{kind, sub.name(), &sub, range});
}

void PairingChecker::Keep(Violation violation) {
  // relaxed: statistic; the list itself is guarded by mu_.
  violation_count_.fetch_add(1, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  if (kept_.size() < kMaxKept) kept_.push_back(std::move(violation));
}

PairingSummary PairingChecker::Summary(const PairingCounters& linked) const {
  PairingSummary s;
  // relaxed: statistics, exact once the hub is quiescent.
  s.starts = linked.starts + retired_starts_.load(std::memory_order_relaxed);
  s.ends = linked.ends + retired_ends_.load(std::memory_order_relaxed);
  s.failed_starts = failed_starts_.load(std::memory_order_relaxed);
  s.open = linked.open;
  s.max_depth = max_depth_.load(std::memory_order_relaxed);
  s.unlinked_with_open = unlinked_with_open_.load(std::memory_order_relaxed);
  s.violations = violation_count_.load(std::memory_order_relaxed);
  MutexLock lock(&mu_);
  s.first_violations = kept_;
  return s;
}

}  // namespace mmuvisor::notifier
