#include "notifier/subscription.h"

#include <utility>

namespace mmuvisor::notifier {

Subscription::Subscription(OpSet ops, std::string name) : ops_(ops), name_(std::move(name)) {}

Subscription::~Subscription() = default;

PairingCounters Subscription::pairing() const {
  // relaxed: statistics; exact once the hub is quiescent (callers join their threads).
  PairingCounters c;
  c.ends = ends_.load(std::memory_order_relaxed);
  c.failed_starts = failed_starts_.load(std::memory_order_relaxed);
  c.open = open_.load(std::memory_order_relaxed);
  // With an end, starts are not counted separately: starts = ends + open.
  c.starts = ops_.Has(Op::kInvalidateRangeEnd)
                 ? c.ends + static_cast<uint64_t>(c.open)
                 : starts_.load(std::memory_order_relaxed);
  c.max_depth = max_depth_.load(std::memory_order_relaxed);
  return c;
}

void Subscription::Release(NotifierSubscriptions& /*hub*/) {}
bool Subscription::ClearFlushYoung(uint64_t /*start*/, uint64_t /*end*/) { return false; }
bool Subscription::ClearYoung(uint64_t /*start*/, uint64_t /*end*/) { return false; }
bool Subscription::TestYoung(uint64_t /*address*/) { return false; }
StartResult Subscription::InvalidateRangeStart(const Range& /*range*/) {
  return StartResult::kOk;
}
void Subscription::InvalidateRangeEnd(const Range& /*range*/) {}
void Subscription::ArchInvalidateSecondaryTlbs(uint64_t /*start*/, uint64_t /*end*/) {}

void SubscriptionAllocator::FreeNotifier(std::unique_ptr<Subscription> sub) { sub.reset(); }

}  // namespace mmuvisor::notifier
