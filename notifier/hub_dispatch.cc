// The hot paths of the hub: start/end dispatch under each policy, young ops, arch TLBs.
// No lock and no locked instruction is taken here when the hub has no interval
// subscriptions: one SRCU read-side section per walk and one window-gate entry per
// start/end pair, each a store to this thread's own counter slot (thread_shard.h).
#include "absl/base/attributes.h"
#include "notifier/hub.h"

namespace mmuvisor::notifier {

// The classic walks are inlined into start/end (one call level less on the hot path);
// a failed start continues in the out-of-line ClassicStartFailed.
ABSL_ATTRIBUTE_ALWAYS_INLINE inline bool NotifierSubscriptions::ClassicStart(
    const Range& range) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  if (options_.policy == Policy::kSortedEndLast && !range.blockable &&
      list->end_needers >= 2) {
    // v3: with two end-needing subscriptions the subset already called cannot be
    // unwound, so non-blocking invalidation is off for this hub.
    // relaxed: statistic.
    sorted_refusals_.fetch_add(1, std::memory_order_relaxed);
    return true;
  }
  const bool check = checker_.enabled();
  const size_t n = list->subs.size();
  for (size_t i = 0; i < n; ++i) {
    Subscription* sub = list->subs[i];
    if (!sub->ops().Has(Op::kInvalidateRangeStart)) continue;
    const StartResult result = sub->InvalidateRangeStart(range);
    if (check) checker_.OnStart(*sub, range, result);
    // A blockable start may not fail. Linux WARNs and its blockable caller ignores the
    // result; mmuvisor reports it (checker) and treats the start as done, so the
    // caller's end stays paired.
    if (result != StartResult::kOk && !range.blockable) {
      ClassicStartFailed(*list, i, range);
      return true;
    }
  }
  return false;
}

void NotifierSubscriptions::ClassicStartFailed(const SubscriptionList& list, size_t failed,
                                               const Range& range) {
  const Policy policy = options_.policy;
  const bool check = checker_.enabled();
  // v3: every end-needing subscription sits after the failed one; nothing to unwind.
  if (policy == Policy::kSortedEndLast) return;
  // kUpstream and kLegacyUnpaired call every remaining start.
  for (size_t i = failed + 1; i < list.subs.size(); ++i) {
    Subscription* sub = list.subs[i];
    if (!sub->ops().Has(Op::kInvalidateRangeStart)) continue;
    const StartResult result = sub->InvalidateRangeStart(range);
    if (check) checker_.OnStart(*sub, range, result);
  }
  if (policy == Policy::kUpstream) {
    // c2655835fd8c: every subscription with an end gets it (none of them could fail).
    for (Subscription* sub : list.subs) {
      if (!sub->ops().Has(Op::kInvalidateRangeEnd)) continue;
      sub->InvalidateRangeEnd(range);
      if (check) checker_.OnEnd(*sub, range);
    }
  }
  // kLegacyUnpaired: pre-5.12, no end at all; the caller skips end too.
}

ABSL_ATTRIBUTE_ALWAYS_INLINE inline void NotifierSubscriptions::ClassicEnd(
    const Range& range) {
  SrcuReadSection read(srcu_);
  // acquire: pairs with the release in PublishLocked.
  const SubscriptionList* list = list_.load(std::memory_order_acquire);
  const bool check = checker_.enabled();
  for (Subscription* sub : list->subs) {
    if (!sub->ops().Has(Op::kInvalidateRangeEnd)) continue;
    sub->InvalidateRangeEnd(range);
    if (check) checker_.OnEnd(*sub, range);
  }
}

absl::Status NotifierSubscriptions::InvalidateRangeStart(const Range& range) {
  if (range.end <= range.start) return range.Validate();  // InvalidArgument
  // A non-blockable start cannot wait for a registration (the kernel's OOM reaper would
  // fail its mmap_read_trylock): report "try again" with nothing started.
  if (!gate_.Enter(range.blockable)) {
    return absl::UnavailableError(
        "invalidate_range_start: registration in progress (non-blockable, try again)");
  }
  // acquire: pairs with the release in EnsureItree; cannot change while a window is open.
  const bool itree = has_itree_.load(std::memory_order_acquire);
  if (itree && !ItreeStart(range)) {
    gate_.Exit();
    return absl::UnavailableError(
        "invalidate_range_start: an interval subscription would block (try again)");
  }
  if (ClassicStart(range)) {
    // Linux leaves the interval part open here (DESIGN §3); mmuvisor closes it.
    if (itree && options_.unwind_interval_on_failure) ItreeEnd();
    gate_.Exit();
    return absl::UnavailableError(
        "invalidate_range_start: a subscription would block (try again)");
  }
  return absl::OkStatus();
}

void NotifierSubscriptions::InvalidateRangeEnd(const Range& range) {
  // acquire: as in InvalidateRangeStart.
  if (has_itree_.load(std::memory_order_acquire)) ItreeEnd();
  ClassicEnd(range);
  gate_.Exit();
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
