// notifier/invalidation_guard.h: RAII bracket for one invalidation window.
//
//   MMUVISOR_ASSIGN_OR_RETURN(InvalidationGuard guard, InvalidationGuard::Start(hub, range));
//   ...change the mappings of the range...
//   // ~InvalidationGuard calls hub.InvalidateRangeEnd(range)
//
// End is called exactly when start succeeded: Start returns the hub's error (and no guard)
// when the start failed, and the guard ends the window once, on destruction or End().
// Move-only. REQUIRES: destroyed (or End()ed) on the thread that started it; the hub must
// outlive it.
#ifndef MMUVISOR_NOTIFIER_INVALIDATION_GUARD_H_
#define MMUVISOR_NOTIFIER_INVALIDATION_GUARD_H_

#include "absl/status/statusor.h"
#include "notifier/hub.h"
#include "notifier/range.h"

namespace mmuvisor::notifier {

class InvalidationGuard {
 public:
  // Unavailable (EAGAIN) or InvalidArgument from the hub; the window is then not open.
  static absl::StatusOr<InvalidationGuard> Start(NotifierSubscriptions& hub,
                                                 const Range& range);

  InvalidationGuard(InvalidationGuard&& other) noexcept;
  InvalidationGuard& operator=(InvalidationGuard&& other) noexcept;
  InvalidationGuard(const InvalidationGuard&) = delete;
  InvalidationGuard& operator=(const InvalidationGuard&) = delete;
  ~InvalidationGuard() { End(); }

  // Ends the window now; later calls and the destructor do nothing.
  void End();
  bool active() const { return hub_ != nullptr; }
  const Range& range() const { return range_; }

 private:
  InvalidationGuard(NotifierSubscriptions& hub, const Range& range)
      : hub_(&hub), range_(range) {}

  NotifierSubscriptions* hub_;  // null once ended or moved from
  Range range_;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INVALIDATION_GUARD_H_
