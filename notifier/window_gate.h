// notifier/window_gate.h: keeps registration out of open start/end windows.
//
// Linux registers under mm_take_all_locks(), which excludes every invalidation, so a new
// subscription never sees an end without its start. mmuvisor has no mm locks; the hub
// counts open windows here instead. Enter/Exit bracket a window (start .. end); Close
// stops new windows and waits until the open ones end; Open lets them in again.
//
// Fast path: Enter is a plain load + store of the thread's own counter slot
// (thread_shard.h), LightFence, and one load of `closed_`; Exit is one release store.
// Nothing is shared between invalidating threads but `closed_`, which only a registrar
// writes. The entrant's "add count, load closed" and the closer's "store closed, load
// counts" are a store-buffering pair: LightFence on the entrant side and HeavyFence
// (membarrier) on the closer side guarantee that either the closer sees the count or the
// entrant sees `closed_`. Threads past the exclusive slots share a slot and use seq_cst
// read-modify-writes instead.
//
// Nesting: a thread that already has a window open on this gate enters even while it is
// closed (the kernel's nested start/end runs under locks its thread already holds);
// otherwise a registrar waiting for that window would deadlock with it. An exclusive
// slot's count is its thread's depth; shared slots track depth in thread-local storage.
// REQUIRES (callers): Exit on the thread that called Enter. Close/Open are serialised by
// the caller (the hub's registration lock).
#ifndef MMUVISOR_NOTIFIER_WINDOW_GATE_H_
#define MMUVISOR_NOTIFIER_WINDOW_GATE_H_

#include <array>
#include <atomic>
#include <cstdint>

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

class WindowGate {
 public:
  WindowGate();
  WindowGate(const WindowGate&) = delete;
  WindowGate& operator=(const WindowGate&) = delete;

  // Opens a window. If the gate is closed: waits when `may_wait`, else returns false
  // without entering (the caller reports "try again", like the OOM reaper's trylock).
  bool Enter(bool may_wait) {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return EnterShared(may_wait);
    const int64_t depth = ArriveExclusive(slot);
    internal::LightFence();
    if (Admits(depth)) return true;
    BackOutExclusive(slot, depth);
    return may_wait && EnterAfterWait();
  }
  void Exit() {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return ExitShared();
    ExitExclusive(slot);
  }

  // Enter split in two, for a caller that shares one LightFence between this gate's
  // store-buffering pair and one of its own (the hub's SRCU section):
  //   depth = ArriveExclusive(slot); ...; LightFence();
  //   if (!Admits(depth)) BackOutExclusive(slot, depth);
  // and ExitExclusive(slot) closes the window. REQUIRES: slot == ThreadSlot() and
  // IsExclusiveSlot(slot).
  int64_t ArriveExclusive(int slot) {
    std::atomic<int64_t>& count = shards_[slot].count;
    // relaxed: only this thread writes its exclusive slot; the value is its depth.
    const int64_t depth = count.load(std::memory_order_relaxed);
    // kPairOrder (this store and Admits's load of closed_), with LightFence: entrant
    // half of the store-buffering pair with Close.
    count.store(depth + 1, internal::kPairOrder);
    return depth;
  }
  // After LightFence: a nested window always enters; otherwise only while open.
  bool Admits(int64_t depth) const {
    return depth > 0 || !closed_.load(internal::kPairOrder);
  }
  void BackOutExclusive(int slot, int64_t depth) {
    // release: pairs with the acquire loads in Close's drain.
    shards_[slot].count.store(depth, std::memory_order_release);
  }
  void ExitExclusive(int slot) {
    std::atomic<int64_t>& count = shards_[slot].count;
    // release: the window's work happens-before a registrar's drain (acquire in Close).
    // relaxed load: only this thread writes its exclusive slot.
    count.store(count.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }
  // Blocks new windows, then waits for open ones to end. May sleep.
  void Close();
  void Open();
  // Sum of open windows (a racy snapshot unless closed).
  int64_t open_windows() const;

 private:
  struct alignas(64) Shard {
    std::atomic<int64_t> count{0};
  };
  bool EnterShared(bool may_wait);
  void ExitShared();
  // Waits while closed, then enters (exclusive slot, not nested).
  bool EnterAfterWait();
  int ThreadDepth() const;
  void AddThreadDepth(int delta);

  std::array<Shard, internal::kSlots> shards_{};
  alignas(64) std::atomic<bool> closed_{false};
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_WINDOW_GATE_H_
