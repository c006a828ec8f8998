#include "notifier/interval_subscription.h"

#include <cassert>

#include "notifier/hub.h"

namespace mmuvisor::notifier {

IntervalSubscription::IntervalSubscription() = default;

IntervalSubscription::~IntervalSubscription() {
  assert(hub_ == nullptr && "IntervalSubscription destroyed while inserted");
}

absl::Status IntervalSubscription::Insert(NotifierSubscriptions& hub, uint64_t start,
                                          uint64_t length) {
  return hub.IntervalInsert(*this, start, length);
}

absl::Status IntervalSubscription::Remove() {
  if (hub_ == nullptr) {
    return absl::FailedPreconditionError("interval remove: not inserted");
  }
  hub_->IntervalRemove(*this);
  return absl::OkStatus();
}

uint64_t IntervalSubscription::ReadBegin() {
  assert(hub_ != nullptr && "ReadBegin on an interval subscription that is not inserted");
  return hub_->IntervalReadBegin(*this);
}

}  // namespace mmuvisor::notifier
