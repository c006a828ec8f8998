// notifier/hub_hooks.h: HubHooks, test-only instrumentation of the hub's lifetime paths
// (teardown, unregister, grace periods, the registration gate, interval waits).
//
// Each hook runs on the thread that reached that point of the protocol, so a test can land
// another thread's operation exactly there (the race windows of teardown and unregister)
// instead of hoping a storm hits them. `teardown_*` and `unregister_release_claimed` run
// with no hub lock held and may call into the hub from other threads (not from their own:
// teardown is inside a read-side section there, and a grace period would wait for itself).
// `grace_period_waits` and `gate_waits` run with the domain's grace-period lock or the
// hub's link lock (held by registrars) held: they must only signal (set a flag, notify),
// never call the hub.
// `itree_waits` and `release_waits` run with no lock held, just before the thread sleeps.
//
// Null by default; the hub tests one pointer on these slow paths only (never on start/end).
// Threads: install with NotifierSubscriptions::SetHooksForTesting before any other thread
// uses the hub. Never set in production code.
#ifndef MMUVISOR_NOTIFIER_HUB_HOOKS_H_
#define MMUVISOR_NOTIFIER_HUB_HOOKS_H_

#include <functional>

namespace mmuvisor::notifier {

class Subscription;

struct HubHooks {
  // Release(): the dying mark is set (Register, Get and Insert now fail), nothing walked.
  std::function<void()> teardown_marked;
  // Release(): every interval got its kRelease invalidation; its window is still open
  // (the tree is frozen by it).
  std::function<void()> teardown_itree_walked;
  // Release(): inside the read-side section of the classic walk, list loaded, before the
  // first ->Release.
  std::function<void()> teardown_walk;
  // Unregister(): this call has claimed `sub`'s ->Release (inside its read-side section)
  // and is about to call it.
  std::function<void(Subscription& sub)> unregister_release_claimed;
  // A grace period found readers it must wait for (once per grace period).
  std::function<void()> grace_period_waits;
  // A registration closing the window gate found open windows (once per close).
  std::function<void()> gate_waits;
  // An interval Remove or ReadBegin is about to sleep until the last end.
  std::function<void()> itree_waits;
  // Release(): another Release() holds the teardown lock; this one is about to wait for
  // it to return (only fired when the lock was found held, so a second Release that
  // returns without waiting never reports it).
  std::function<void()> release_waits;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_HUB_HOOKS_H_
