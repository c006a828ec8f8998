#include "notifier/subscription.h"

#include <utility>

namespace mmuvisor::notifier {

Subscription::Subscription(OpSet ops, std::string name) : ops_(ops), name_(std::move(name)) {}

Subscription::~Subscription() = default;

PairingCounters Subscription::pairing() const {
  // relaxed: statistics; exact once the hub is quiescent (callers join their threads).
  PairingCounters c;
  const uint64_t pairs = pairs_.load(std::memory_order_relaxed);
  c.starts = pairs >> kOpenBits;
  c.open = static_cast<int64_t>(pairs & kOpenMask);
  c.ends = c.starts - static_cast<uint64_t>(c.open);  // open is 0 without an end op
  c.failed_starts = failed_starts_.load(std::memory_order_relaxed);
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
