#include "vmm/host/fault_injection.h"

#include <utility>

#include "absl/time/clock.h"

namespace mmuvisor::vmm {

using notifier::Op;

StartFaultSubscription::StartFaultSubscription(StartFaults faults, std::string name)
    : notifier::Subscription({Op::kRelease, Op::kInvalidateRangeStart, Op::kStartMayFail},
                             std::move(name)),
      faults_(faults),
      rng_(faults.seed | 1) {}

void StartFaultSubscription::Configure(const StartFaults& faults) {
  MutexLock lock(&mu_);
  faults_ = faults;
  rng_ = faults.seed | 1;
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
      // xorshift64*: cheap, deterministic per seed.
      rng_ ^= rng_ >> 12;
      rng_ ^= rng_ << 25;
      rng_ ^= rng_ >> 27;
      const uint64_t r = rng_ * 0x2545F4914F6CDD1Dull;
      fail = static_cast<double>(r >> 11) * 0x1.0p-53 < faults_.eagain_probability;
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
