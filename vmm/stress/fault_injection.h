// Fault injection for stress runs:
//   - EagainInjector: a classic subscription whose start fails with EAGAIN, with a given
//     probability, in non-blockable ranges (the OOM reaper's), and which has no end — the
//     registration rules say a subscription that can fail must not have one. What the
//     other subscriptions then get depends on the hub's policy: upstream and sorted keep
//     every start/end paired; legacy skips the ends and leaves counts raised for good.
//   - DelayHooks: mmu::FaultHooks that sleep, with a given probability, inside the fault
//     path's race windows (after the seq snapshot, after resolve, before install), so
//     invalidations land there. Optionally turn the MMU's retry checks off (test only).
// Threads: InvalidateRangeStart from any invalidating thread (the random state is a
// per-call hash of an atomic counter: no lock, deterministic per seed and call order).
#ifndef MMUVISOR_VMM_STRESS_FAULT_INJECTION_H_
#define MMUVISOR_VMM_STRESS_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "mmu/fault_hooks.h"
#include "notifier/range.h"
#include "notifier/subscription.h"

namespace mmuvisor::vmm::stress {

// SplitMix64: the stress runner's only source of randomness (seeded, reproducible).
inline uint64_t Mix64(uint64_t x) {
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
// True with probability p for the n-th draw of stream `seed`.
inline bool Chance(uint64_t seed, uint64_t n, double p) {
  if (p <= 0) return false;
  if (p >= 1) return true;
  return static_cast<double>(Mix64(seed ^ Mix64(n)) >> 11) * 0x1.0p-53 < p;
}

class EagainInjector : public notifier::Subscription {
 public:
  EagainInjector(double probability, uint64_t seed);
  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override;
  uint64_t injected() const { return injected_.load(std::memory_order_relaxed); }

 private:
  const double probability_;
  const uint64_t seed_;
  std::atomic<uint64_t> draws_{0};
  std::atomic<uint64_t> injected_{0};
};

struct DelayOptions {
  double probability = 0;  // per window visit
  absl::Duration delay = absl::Microseconds(200);
  uint64_t seed = 0;
  bool retry_checks = true;  // false only for the must-fail test switch
  // No delay runs past this time (one that would is cut to it): the run is stopping and
  // must keep its time bound (stress_options.h RunSlack).
  absl::Time delays_end = absl::InfiniteFuture();
  // Test only (the must-fail control): when set, called with the faulting gfn in the
  // window between resolve and install of each fault's first attempt; it performs a host
  // operation on that page (through the hub, from the faulting thread, no MMU lock held),
  // so the fault races an invalidation deterministically instead of by chance.
  std::function<void(mmu::Gfn gfn)> invalidate_in_window;
};

// Hooks for SecondaryMmu/Mirror::SetFaultHooksForTesting. The returned hooks own their
// state (a shared counter). The forced invalidation runs after any delay of the same
// window.
mmu::FaultHooks MakeDelayHooks(const DelayOptions& options);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_FAULT_INJECTION_H_
