#include "vmm/host/fault_injection.h"

#include <utility>

#include "absl/time/clock.h"
#include "notifier/base/random.h"

namespace mmuvisor::vmm {

using notifier::Op;

StartFaultSubscription::StartFaultSubscription(StartFaults faults, std::string name)
    : notifier::Subscription({Op::kRelease, Op::kInvalidateRangeStart, Op::kStartMayFail},
                             std::move(name)),
      faults_(faults) {}

void StartFaultSubscription::Configure(const StartFaults& faults) {
  MutexLock lock(&mu_);
  faults_ = faults;
}

void StartFaultSubscription::Release(notifier::NotifierSubscriptions& /*hub*/) {
  releases_.fetch_add(1, std::memory_order_relaxed);
}

notifier::StartResult StartFaultSubscription::InvalidateRangeStart(
    const notifier::Range& range) {
  starts_.fetch_add(1, std::memory_order_relaxed);
  absl::Duration delay;
  bool fail = false;
  {
    MutexLock lock(&mu_);
    if (range.blockable) {
      delay = faults_.blockable_delay;
    } else if (faults_.eagain_next > 0) {
      --faults_.eagain_next;
      fail = true;
    } else if (faults_.eagain_probability > 0.0) {
      // Draw number under mu_: deterministic per seed and start order.
      fail = Chance(faults_.seed, draws_++, faults_.eagain_probability);
    }
  }
  if (delay > absl::ZeroDuration()) absl::SleepFor(delay);  // blockable: may sleep
  if (fail) {
    eagains_.fetch_add(1, std::memory_order_relaxed);
    return notifier::StartResult::kAgain;
  }
  return notifier::StartResult::kOk;
}

}  // namespace mmuvisor::vmm
