#include "notifier/invalidation_guard.h"

#include <utility>

namespace mmuvisor::notifier {

absl::StatusOr<InvalidationGuard> InvalidationGuard::Start(NotifierSubscriptions& hub,
                                                           const Range& range) {
  absl::Status status = hub.InvalidateRangeStart(range);
  if (!status.ok()) return status;  // start failed: no end, ever
  return InvalidationGuard(hub, range);
}

InvalidationGuard::InvalidationGuard(InvalidationGuard&& other) noexcept
    : hub_(std::exchange(other.hub_, nullptr)), range_(other.range_) {}

InvalidationGuard& InvalidationGuard::operator=(InvalidationGuard&& other) noexcept {
  if (this != &other) {
    End();
    hub_ = std::exchange(other.hub_, nullptr);
    range_ = other.range_;
  }
  return *this;
}

void InvalidationGuard::End() {
  if (NotifierSubscriptions* hub = std::exchange(hub_, nullptr)) hub->InvalidateRangeEnd(range_);
}

}  // namespace mmuvisor::notifier
