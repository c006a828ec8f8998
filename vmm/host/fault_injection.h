// StartFaultSubscription: a classic subscription that injects faults into the hub's
// invalidation windows, for tests and the stress scenarios (vmm/host/README.md, "Aging
// and the reclaim driver"):
//   - "try again" (EAGAIN) from non-blockable starts: with a probability, or for the next
//     N such starts (deterministic). It declares kStartMayFail and therefore has no end,
//     as the notifier rules require;
//   - a delay inside every blockable start (widens the race windows between a primary
//     change and the faults that race with it).
// Swap-store errors are injected on the store itself (SwapStore::SetWriteFaultInjection).
//
// The project's one EAGAIN injector: the stress runner registers it too (--eagain P, with
// the run's seed). Draws: notifier/base/random.h's Chance(seed, n, p), n counting the
// non-blockable starts, so a seed gives the same sequence of answers.
//
// Threads: ops run on invalidating threads; Configure() from any thread. mu_ guards the
// configuration and the draw count; counters are relaxed atomics.
#ifndef MMUVISOR_VMM_HOST_FAULT_INJECTION_H_
#define MMUVISOR_VMM_HOST_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "notifier/subscription.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm {

struct StartFaults {
  double eagain_probability = 0.0;  // per non-blockable start
  uint64_t eagain_next = 0;         // fail this many non-blockable starts first
  absl::Duration blockable_delay = absl::ZeroDuration();
  uint64_t seed = 0x2545F4914F6CDD1Dull;
};

class StartFaultSubscription : public notifier::Subscription {
 public:
  explicit StartFaultSubscription(StartFaults faults = {},
                                  std::string name = "start-fault-injector");

  void Configure(const StartFaults& faults) ABSL_LOCKS_EXCLUDED(mu_);

  uint64_t eagains() const { return eagains_.load(std::memory_order_relaxed); }
  uint64_t starts() const { return starts_.load(std::memory_order_relaxed); }
  uint64_t releases() const { return releases_.load(std::memory_order_relaxed); }

  void Release(notifier::NotifierSubscriptions& hub) override;
  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override
      ABSL_LOCKS_EXCLUDED(mu_);

 private:
  Mutex mu_;
  StartFaults faults_ ABSL_GUARDED_BY(mu_);
  uint64_t draws_ ABSL_GUARDED_BY(mu_) = 0;  // non-blockable starts drawn for (Chance)
  // Statistics: relaxed, no ordering partner.
  std::atomic<uint64_t> starts_{0}, eagains_{0}, releases_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_FAULT_INJECTION_H_
