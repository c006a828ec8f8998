#include "vmm/stress/fault_injection.h"

#include <algorithm>
#include <memory>

#include "absl/time/clock.h"

namespace mmuvisor::vmm::stress {

mmu::FaultHooks MakeDelayHooks(const DelayOptions& options) {
  mmu::FaultHooks hooks;
  hooks.retry_checks = options.retry_checks;
  std::function<void(mmu::Gfn, int)> maybe_sleep;
  if (options.probability > 0) {
    auto draws = std::make_shared<std::atomic<uint64_t>>(0);
    maybe_sleep = [options, draws](mmu::Gfn /*gfn*/, int /*attempt*/) {
      // relaxed: a draw number.
      const uint64_t n = draws->fetch_add(1, std::memory_order_relaxed);
      if (!Chance(options.seed, n, options.probability)) return;
      const absl::Duration left = options.delays_end - absl::Now();
      if (left > absl::ZeroDuration()) absl::SleepFor(std::min(options.delay, left));
    };
    hooks.after_snapshot = maybe_sleep;
    hooks.after_resolve = maybe_sleep;
    hooks.before_install = maybe_sleep;
  }
  if (options.invalidate_in_window) {
    // before_install: after the page was resolved and the lockless re-check passed, just
    // before the locked re-check (RetryGfn) and the install. An invalidation here is the
    // one only the locked re-check can see.
    hooks.before_install = [maybe_sleep, force = options.invalidate_in_window](
                               mmu::Gfn gfn, int attempt) {
      if (maybe_sleep) maybe_sleep(gfn, attempt);
      if (attempt == 0) force(gfn);
    };
  }
  return hooks;
}

}  // namespace mmuvisor::vmm::stress
