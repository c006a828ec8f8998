// notifier/window_gate.h: keeps registration out of open start/end windows.
//
// Linux registers under mm_take_all_locks(), which excludes every invalidation, so a new
// subscription never sees an end without its start. mmuvisor has no mm locks; the hub
// counts open windows here instead. Enter/Exit bracket a window (start .. end); Close
// stops new windows and waits until the open ones end; Open lets them in again.
//
// Storage: the counts live in the hub's SrcuDomain's per-thread lines (one line per
// thread slot holds its read counts and its open windows) and the closed flag is
// kClosedBit of the domain's state word, so the hub's start can enter a window and a
// read-side section with one fence (SrcuDomain::TryEnterWindowAndRead).
// Fast path: Enter is a plain load + store of the thread's own counter slot
// (thread_shard.h), LightFence, and one load of the state word; Exit is one release
// store. Nothing is shared between invalidating threads but the state word, which only
// registrars and grace periods write. The entrant's "add count, load closed" and the
// closer's "set closed, load counts" are a store-buffering pair: LightFence on the
// entrant side and HeavyFence (membarrier) on the closer side guarantee that either the
// closer sees the count or the entrant sees the closed bit. Threads past the exclusive
// slots share a slot and use seq_cst read-modify-writes instead.
//
// Nesting: a thread that already has a window open on this gate enters even while it is
// closed (the kernel's nested start/end runs under locks its thread already holds);
// otherwise a registrar waiting for that window would deadlock with it. An exclusive
// slot's count is its thread's depth; shared slots track depth in thread-local storage.
// REQUIRES (callers): Exit on the thread that called Enter, only while it holds a window
// (ThreadHoldsWindow; the hub checks it, so an unmatched end never drives a count below
// zero, which would hide a real window from Close). Close/Open are serialised by the
// caller (the hub's link_mu_).
#ifndef MMUVISOR_NOTIFIER_WINDOW_GATE_H_
#define MMUVISOR_NOTIFIER_WINDOW_GATE_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "notifier/srcu.h"
#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

class WindowGate {
 public:
  // The gate keeps its counts in `domain`'s per-thread lines and its closed flag in the
  // domain's state word (srcu.h), so the hub's start enters both with one fence.
  explicit WindowGate(SrcuDomain& domain) : domain_(domain) {}
  WindowGate(const WindowGate&) = delete;
  WindowGate& operator=(const WindowGate&) = delete;

  // Opens a window. If the gate is closed: waits when `may_wait`, else returns false
  // without entering (the caller reports "try again", like the OOM reaper's trylock).
  bool Enter(bool may_wait) {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return EnterShared(may_wait);
    std::atomic<int64_t>& count = domain_.shards_[slot].windows;
    // relaxed: only this thread writes its exclusive slot; the value is its depth.
    const int64_t depth = count.load(std::memory_order_relaxed);
    // kPairOrder (the store and the load of the closed bit), with LightFence: entrant
    // half of the store-buffering pair with Close.
    count.store(depth + 1, internal::kPairOrder);
    internal::LightFence();
    if (depth > 0 || !closed()) return true;
    // release: pairs with the acquire loads in Close's drain.
    count.store(depth, std::memory_order_release);
    return may_wait && EnterAfterWait();
  }
  void Exit() {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return ExitShared();
    ExitExclusive(slot);
  }
  // Exit for a window entered on exclusive slot `slot` (SrcuDomain's fast path).
  // REQUIRES: slot == ThreadSlot(), IsExclusiveSlot(slot).
  void ExitExclusive(int slot) {
    std::atomic<int64_t>& count = domain_.shards_[slot].windows;
    // release: the window's work happens-before a registrar's drain (acquire in Close).
    // relaxed load: only this thread writes its exclusive slot.
    count.store(count.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }
  // Does this thread hold a window of this gate? (Exclusive slot: its count is its depth;
  // shared slot: the thread-local depth.) The hub checks it before an end, so an end
  // without a start never takes a count below zero.
  bool ThreadHoldsWindow() const;
  // ThreadHoldsWindow for exclusive slot `slot`: one relaxed load of this thread's line.
  // REQUIRES: slot == ThreadSlot(), IsExclusiveSlot(slot).
  bool HoldsWindowExclusive(int slot) const {
    // relaxed: only this thread writes its exclusive slot.
    return domain_.shards_[slot].windows.load(std::memory_order_relaxed) > 0;
  }
  // Blocks new windows, then waits for open ones to end. May sleep.
  void Close();
  void Open();
  // Sum of open windows (a racy snapshot unless closed).
  int64_t open_windows() const;

 private:
  // kRecheckOrder: entrant half of the store-buffering pair with Close (after LightFence);
  // an open gate read here lets the entrant see what the registration that last opened it
  // published.
  bool closed() const {
    return (domain_.state_.load(internal::kRecheckOrder) & SrcuDomain::kClosedBit) != 0;
  }
  bool EnterShared(bool may_wait);
  void ExitShared();
  // Waits while closed, then enters (exclusive slot, not nested).
  bool EnterAfterWait();
  int ThreadDepth() const;
  void AddThreadDepth(int delta);

  SrcuDomain& domain_;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_WINDOW_GATE_H_
