#include "vmm/stress/fault_injection.h"

#include <memory>

#include "absl/time/clock.h"

namespace mmuvisor::vmm::stress {

EagainInjector::EagainInjector(double probability, uint64_t seed)
    : notifier::Subscription(
          notifier::OpSet{notifier::Op::kInvalidateRangeStart, notifier::Op::kStartMayFail},
          "eagain-injector"),
      probability_(probability),
      seed_(seed) {}

notifier::StartResult EagainInjector::InvalidateRangeStart(const notifier::Range& range) {
  if (range.blockable) return notifier::StartResult::kOk;
  // relaxed: a draw number, only uniqueness matters.
  const uint64_t n = draws_.fetch_add(1, std::memory_order_relaxed);
  if (!Chance(seed_, n, probability_)) return notifier::StartResult::kOk;
  injected_.fetch_add(1, std::memory_order_relaxed);
  return notifier::StartResult::kAgain;
}

mmu::FaultHooks MakeDelayHooks(const DelayOptions& options) {
  mmu::FaultHooks hooks;
  hooks.retry_checks = options.retry_checks;
  if (options.probability <= 0) return hooks;
  auto draws = std::make_shared<std::atomic<uint64_t>>(0);
  auto maybe_sleep = [options, draws](mmu::Gfn /*gfn*/, int /*attempt*/) {
    // relaxed: a draw number.
    const uint64_t n = draws->fetch_add(1, std::memory_order_relaxed);
    if (Chance(options.seed, n, options.probability)) absl::SleepFor(options.delay);
  };
  hooks.after_snapshot = maybe_sleep;
  hooks.after_resolve = maybe_sleep;
  hooks.before_install = maybe_sleep;
  return hooks;
}

}  // namespace mmuvisor::vmm::stress
