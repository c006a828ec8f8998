// The hot paths of the hub past the inline fast path of start/end (hub.h): the general
// start/end (shared thread slots, closed gate, interval subscriptions), a failed start
// under each policy, young ops, arch TLBs.
#include "absl/base/attributes.h"
#include "absl/base/optimization.h"
#include "notifier/hub.h"
#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

bool NotifierSubscriptions::ClassicStart(const Range& range) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  return ClassicStartWalk(*list_.load(std::memory_order_acquire), range);
}

void NotifierSubscriptions::ClassicEnd(const Range& range) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  ClassicEndWalk(*list_.load(std::memory_order_acquire), range);
}

void NotifierSubscriptions::ClassicStartFailed(const SubscriptionList& list, size_t failed,
                                               const Range& range) {
  const Policy policy = options_.policy;
  const bool check = checker_.enabled();
  // v3: every end-needing subscription sits after the failed one; nothing to unwind.
  if (policy == Policy::kSortedEndLast) return;
  // kUpstream and kLegacyUnpaired call every remaining start.
  for (size_t i = failed + 1; i < list.starters.size(); ++i) {
    Subscription* sub = list.starters[i];
    const StartResult result = sub->InvalidateRangeStart(range);
    if (check) checker_.OnStart(*sub, range, result);
  }
  if (policy == Policy::kUpstream) {
    // c2655835fd8c: every subscription with an end gets it (none of them could fail).
    for (Subscription* sub : list.enders) {
      sub->InvalidateRangeEnd(range);
      if (check) checker_.OnEnd(*sub, range);
    }
  }
  // kLegacyUnpaired: pre-5.12, no end at all; the caller skips end too.
}

absl::Status NotifierSubscriptions::ClassicStartUnavailable() {
  return absl::UnavailableError(
      "invalidate_range_start: a subscription would block (try again)");
}

absl::Status NotifierSubscriptions::StartSlow(const Range& range) {
  // A non-blockable start cannot wait for a registration (the kernel's OOM reaper would
  // fail its mmap_read_trylock): report "try again" with nothing started.
  if (!gate_.Enter(range.blockable)) {
    return absl::UnavailableError(
        "invalidate_range_start: registration in progress (non-blockable, try again)");
  }
  return StartInWindow(range);
}

bool NotifierSubscriptions::SortedRefusesUpFront(const Range& range) {
  if (options_.policy != Policy::kSortedEndLast || range.blockable) return false;
  // No registration can add an end-needer while this thread holds its window (the gate),
  // so a list that passes here still passes in ClassicStartWalk; one that refuses here
  // would refuse there, after the intervals were invalidated for nothing.
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  if (list_.load(std::memory_order_acquire)->end_needers < 2) return false;
  // relaxed: statistic.
  sorted_refusals_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

absl::Status NotifierSubscriptions::StartInWindow(const Range& range) {
  // acquire: pairs with the release in EnsureItree; cannot change while a window is open.
  const bool itree = has_itree_.load(std::memory_order_acquire);
  // kSortedEndLast's refusal comes before the interval part too (README rule 3: "refused
  // up front"): nothing is invalidated for a start that will be refused.
  if (itree && SortedRefusesUpFront(range)) {
    gate_.Exit();
    return ClassicStartUnavailable();
  }
  if (itree && !ItreeStart(range)) {
    gate_.Exit();
    return absl::UnavailableError(
        "invalidate_range_start: an interval subscription would block (try again)");
  }
  if (ClassicStart(range)) {
    // Linux leaves the interval part open here; mmuvisor closes it (notifier/README.md,
    // "Classic subscriptions").
    if (itree && options_.unwind_interval_on_failure) ItreeEnd();
    gate_.Exit();
    return ClassicStartUnavailable();
  }
  return absl::OkStatus();
}

void NotifierSubscriptions::EndSlow(const Range& range) {
  // The end contract REQUIRES a start on this thread. Without one, an end would take the
  // thread's window count below zero: the registration gate, which waits for the sum of
  // the counts to reach zero, would then wait forever, or admit a registration while
  // another thread's window is open. Linux's unmatched end leaves registration alone
  // (KVM's own count underflow is a KVM_BUG_ON): report it and call nobody.
  if (ABSL_PREDICT_FALSE(!gate_.ThreadHoldsWindow())) return UnmatchedEnd(range);
  // acquire: as in InvalidateRangeStart.
  if (has_itree_.load(std::memory_order_acquire)) ItreeEnd();
  ClassicEnd(range);
  gate_.Exit();
}

void NotifierSubscriptions::UnmatchedEnd(const Range& range) {
  checker_.ReportUnmatchedEnd(this, range);
}

bool NotifierSubscriptions::ClearFlushYoung(uint64_t start, uint64_t end) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  bool young = false;
  for (Subscription* sub : list->subs) {
    if (!sub->ops().Has(Op::kClearFlushYoung)) continue;
    if (checker_.enabled()) checker_.OnOtherOp(*sub, start, end);
    young |= sub->ClearFlushYoung(start, end);  // all of them: OR, no short-circuit
  }
  return young;
}

bool NotifierSubscriptions::ClearYoung(uint64_t start, uint64_t end) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  bool young = false;
  for (Subscription* sub : list->subs) {
    if (!sub->ops().Has(Op::kClearYoung)) continue;
    if (checker_.enabled()) checker_.OnOtherOp(*sub, start, end);
    young |= sub->ClearYoung(start, end);
  }
  return young;
}

bool NotifierSubscriptions::TestYoung(uint64_t address) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  for (Subscription* sub : list->subs) {
    if (!sub->ops().Has(Op::kTestYoung)) continue;
    if (checker_.enabled()) checker_.OnOtherOp(*sub, address, address + 1);
    if (sub->TestYoung(address)) return true;  // stops at the first young
  }
  return false;
}

void NotifierSubscriptions::ArchInvalidateSecondaryTlbs(uint64_t start, uint64_t end) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  for (Subscription* sub : list->subs) {
    if (!sub->ops().Has(Op::kArchInvalidateSecondaryTlbs)) continue;
    if (checker_.enabled()) checker_.OnOtherOp(*sub, start, end);
    sub->ArchInvalidateSecondaryTlbs(start, end);
  }
}

}  // namespace mmuvisor::notifier
