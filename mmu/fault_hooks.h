// FaultHooks: test-only instrumentation of the fault paths (SecondaryMmu::Fault,
// Mirror::Fault) and of SecondaryMmu::SetLayout. Each hook runs on the faulting thread, with no MMU or mirror lock held,
// at one window of the protocol, so a test can land an invalidation there
// deterministically. `retry_checks` = false disables every staleness check (the lockless
// pre-checks and the locked RetryGfn/ReadRetry): it exists only so a test can prove that
// the race-window tests fail without them. Never set in production code.
//
// Threads: install before faults start (SetFaultHooksForTesting is not synchronised with
// running faults); hooks themselves may call into the hub from the faulting thread.
#ifndef MMUVISOR_MMU_FAULT_HOOKS_H_
#define MMUVISOR_MMU_FAULT_HOOKS_H_

#include <cstdint>
#include <functional>

#include "mmu/types.h"

namespace mmuvisor::mmu {

struct FaultHooks {
  // After the seq snapshot (SecondaryMmu) / ReadBegin (Mirror), before resolving.
  std::function<void(Gfn gfn, int attempt)> after_snapshot;
  // After the primary resolved the page, before the lockless re-check.
  std::function<void(Gfn gfn, int attempt)> after_resolve;
  // After the last lockless check, just before taking the lock to install.
  std::function<void(Gfn gfn, int attempt)> before_install;
  // When an attempt was found stale, before the next attempt starts.
  std::function<void(Gfn gfn, int attempt)> on_retry;
  // SecondaryMmu::SetLayout, on its thread, at the first moment an invalidation start can
  // see the new layout (the invalidation lock released), before SetLayout returns.
  std::function<void()> after_layout_visible;
  bool retry_checks = true;
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_FAULT_HOOKS_H_
