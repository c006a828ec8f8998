// Fault injection in the secondary MMUs' fault path, for stress runs: DelayHooks are
// mmu::FaultHooks that sleep, with a given probability, inside the fault path's race
// windows (after the seq snapshot, after resolve, before install), so invalidations land
// there; optionally they turn the MMU's retry checks off (test only) and force an
// invalidation into the window (the must-fail control). EAGAIN from non-blockable starts
// is injected by the one injector of the project, vmm/host/fault_injection.h
// (StartFaultSubscription). Draws are notifier/base/random.h's (seeded, lock-free).
#ifndef MMUVISOR_VMM_STRESS_FAULT_INJECTION_H_
#define MMUVISOR_VMM_STRESS_FAULT_INJECTION_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/time/time.h"
#include "mmu/fault_hooks.h"
#include "notifier/base/random.h"

namespace mmuvisor::vmm::stress {

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
