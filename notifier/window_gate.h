// notifier/window_gate.h: keeps registration out of open start/end windows.
//
// Linux registers under mm_take_all_locks(), which excludes every invalidation, so a new
// subscription never sees an end without its start. mmuvisor has no mm locks; the hub
// counts open windows here instead. Enter/Exit bracket a window (start .. end); Close
// stops new windows and waits until the open ones end; Open lets them in again.
//
// Fast path: Enter is one seq_cst add on a per-thread-shard counter plus one load of
// `closed_`; nothing is shared between invalidating threads but those two cache lines,
// and `closed_` is only written by a registrar. The entrant's "add count, load closed" and
// the closer's "store closed, load counts" are a store-buffering pair: seq_cst on both
// sides guarantees that either the closer sees the count or the entrant sees `closed_`.
//
// Nesting: a thread that already has a window open on this gate enters even while it is
// closed (the kernel's nested start/end runs under locks its thread already holds);
// otherwise a registrar waiting for that window would deadlock with it.
// REQUIRES (callers): Exit on the thread that called Enter. Close/Open are serialised by
// the caller (the hub's registration lock).
#ifndef MMUVISOR_NOTIFIER_WINDOW_GATE_H_
#define MMUVISOR_NOTIFIER_WINDOW_GATE_H_

#include <array>
#include <atomic>
#include <cstdint>

namespace mmuvisor::notifier {

class WindowGate {
 public:
  static constexpr int kShards = 16;

  WindowGate() = default;
  WindowGate(const WindowGate&) = delete;
  WindowGate& operator=(const WindowGate&) = delete;

  // Opens a window. If the gate is closed: waits when `may_wait`, else returns false
  // without entering (the caller reports "try again", like the OOM reaper's trylock).
  bool Enter(bool may_wait);
  void Exit();
  // Blocks new windows, then waits for open ones to end. May sleep.
  void Close();
  void Open();
  // Sum of open windows (a racy snapshot unless closed).
  int64_t open_windows() const;

 private:
  struct alignas(64) Shard {
    std::atomic<int64_t> count{0};
  };
  int ThreadDepth() const;
  void AddThreadDepth(int delta);

  std::array<Shard, kShards> shards_{};
  alignas(64) std::atomic<bool> closed_{false};
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_WINDOW_GATE_H_
