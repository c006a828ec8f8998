#include "notifier/interval_subscription.h"

#include <cassert>
#include <cstdio>
#include <cstdlib>

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
  if (hub_ == nullptr) {
    // A caller's bug (REQUIRES: inserted), and no seq can be right: nothing would ever
    // invalidate what the caller builds from this read, and a seq that always retries
    // would spin it forever. Said plainly, in every build, rather than a null dereference.
    std::fprintf(stderr, "mmuvisor: IntervalSubscription::ReadBegin on a subscription that "
                         "is not inserted (REQUIRES: inserted)\n");
    std::abort();
  }
  return hub_->IntervalReadBegin(*this);
}

}  // namespace mmuvisor::notifier
