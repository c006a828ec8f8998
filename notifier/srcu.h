// notifier/srcu.h: a small sleepable-RCU domain (Linux: SRCU) for the hub's classic list.
//
// Readers: idx = ReadLock(); ...may sleep...; ReadUnlock(idx). Lock-free, and on the
// common path free of locked instructions: a thread owns its counter slot
// (thread_shard.h) and updates it with a plain load + store.
// Writers: Synchronize() returns after every read-side section that began before it has
// ended. CallAfterGracePeriod(fn) queues fn; Barrier() runs a grace period and then every
// queued fn (Linux: call_srcu + srcu_barrier). Queued fns also run at the end of every
// Synchronize and in the destructor; every Synchronize returns only after every fn queued
// before it was called has run (the queue is taken under sync_mu_).
//
// Algorithm: two epochs. A reader adds 1 to counts[slot][epoch] and re-reads the epoch;
// if it moved, it backs out and tries again, so no reader enters on an epoch a writer has
// already drained. Synchronize flips the epoch and waits for the old epoch's counts to
// sum to zero. The reader's "add, then load epoch" and the writer's "store epoch, then
// load counts" form a store-buffering pair: LightFence on the reader side, HeavyFence
// (membarrier) on the writer side guarantee that at least one side sees the other. A
// ReadUnlock is a release store that the drain's acquire loads pair with.
//
// State word: state_ holds the epoch (kEpochBit), the closed flag of the WindowGate that
// shares this domain's per-thread lines (kClosedBit), and kFullFenceBit when membarrier
// is unavailable. One load therefore tells the hub's fused start (TryEnterWindowAndRead)
// whether it may use its fast path (only kEpochBit may be set), and one re-load after
// the fence confirms both store-buffering pairs at once: its window count against the
// gate's Close, its read count against Synchronize. The fast path's fence is a compiler
// barrier only, which membarrier makes sufficient; without membarrier (kFullFenceBit)
// the fast path is never taken.
//
// Threads: ReadLock/ReadUnlock from any thread, nested freely; ReadUnlock on the thread
// that called ReadLock. Synchronize and Barrier may sleep and must not be called inside a
// read-side section of the same domain. Queued fns run under sync_mu_ and must not call
// Synchronize. Synchronize calls are serialised by sync_mu_.
#ifndef MMUVISOR_NOTIFIER_SRCU_H_
#define MMUVISOR_NOTIFIER_SRCU_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "absl/base/optimization.h"
#include "absl/base/thread_annotations.h"
#include "notifier/base/mutex.h"
#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

class SrcuDomain {
 public:
  SrcuDomain();
  ~SrcuDomain();  // runs queued callbacks
  SrcuDomain(const SrcuDomain&) = delete;
  SrcuDomain& operator=(const SrcuDomain&) = delete;

  static constexpr uint32_t kEpochBit = 1;      // the current epoch, 0 or 1
  static constexpr uint32_t kClosedBit = 2;     // the sharing WindowGate is closed
  static constexpr uint32_t kFullFenceBit = 4;  // no membarrier: no fast path

  int ReadLock() {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return ReadLockShared(shards_[slot].count);
    for (;;) {
      // kPairOrder (this load, the store) and kRecheckOrder (the re-check), with LightFence:
      // the reader half of the store-buffering pair with Synchronize's epoch flip and count
      // loads.
      const int idx = static_cast<int>(state_.load(internal::kPairOrder) & kEpochBit);
      std::atomic<int64_t>& count = shards_[slot].count[idx];
      // relaxed load: only this thread writes its exclusive slot.
      const int64_t mine = count.load(std::memory_order_relaxed);
      count.store(mine + 1, internal::kPairOrder);
      internal::LightFence();
      if (EpochIs(idx)) return idx;
      // The epoch flipped under us: a writer may already have drained `idx`. Back out.
      // release: as a ReadUnlock (nothing was read yet).
      count.store(mine, std::memory_order_release);
    }
  }
  void ReadUnlock(int idx) {
    const int slot = internal::ThreadSlot();
    if (internal::IsExclusiveSlot(slot)) return ReadUnlockExclusive(slot, idx);
    // release: as in ReadUnlockExclusive.
    shards_[slot].count[idx].fetch_sub(1, std::memory_order_release);
  }

  // ---- The hub's fast path. REQUIRES: slot == ThreadSlot(), IsExclusiveSlot(slot). ----
  // Opens a window of the sharing WindowGate and a read-side section with one fence.
  // false (nothing held): gate closed, epoch flipped, or no membarrier; the caller then
  // uses WindowGate::Enter and ReadLock. Nested windows on a closed gate also land
  // there (the gate admits them).
  bool TryEnterWindowAndRead(int slot, int* idx) {
    // kPairOrder (this load, both stores; kRecheckOrder the re-check), with the compiler
    // barrier that membarrier makes enough (kFullFenceBit clear): the reader half of both
    // store-buffering pairs (Close: closed bit, window counts; Synchronize: epoch, read
    // counts).
    const uint32_t snap = state_.load(internal::kPairOrder);
    if (ABSL_PREDICT_FALSE(snap & ~kEpochBit)) return false;
    Shard& line = shards_[slot];
    // relaxed loads: only this thread writes its exclusive slot.
    const int64_t windows = line.windows.load(std::memory_order_relaxed);
    line.windows.store(windows + 1, internal::kPairOrder);
    std::atomic<int64_t>& count = line.count[snap];
    const int64_t mine = count.load(std::memory_order_relaxed);
    count.store(mine + 1, internal::kPairOrder);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // LightFence, membarrier case
    if (ABSL_PREDICT_TRUE(state_.load(internal::kRecheckOrder) == snap)) {
      *idx = static_cast<int>(snap);
      return true;
    }
    // release (both): as ReadUnlock and WindowGate::Exit (nothing was done yet).
    count.store(mine, std::memory_order_release);
    line.windows.store(windows, std::memory_order_release);
    return false;
  }
  // A read-side section with the same fence rule; false (nothing held): epoch flipped or
  // no membarrier, use ReadLock.
  bool TryReadLock(int slot, int* idx) {
    // kPairOrder: as in TryEnterWindowAndRead (the closed bit does not matter here).
    const uint32_t snap = state_.load(internal::kPairOrder);
    if (ABSL_PREDICT_FALSE(snap & kFullFenceBit)) return false;
    const int i = static_cast<int>(snap & kEpochBit);
    std::atomic<int64_t>& count = shards_[slot].count[i];
    // relaxed load: only this thread writes its exclusive slot.
    const int64_t mine = count.load(std::memory_order_relaxed);
    count.store(mine + 1, internal::kPairOrder);
    std::atomic_signal_fence(std::memory_order_seq_cst);  // LightFence, membarrier case
    if (ABSL_PREDICT_TRUE(EpochIs(i))) {
      *idx = i;
      return true;
    }
    // release: as ReadUnlock (nothing was read yet).
    count.store(mine, std::memory_order_release);
    return false;
  }
  void ReadUnlockExclusive(int slot, int idx) {
    std::atomic<int64_t>& count = shards_[slot].count[idx];
    // release: everything the read-side section did happens-before the writer's acquire
    // load of the count in WaitForEpochDrained (and so before anything freed after it).
    // relaxed load: only this thread writes its exclusive slot.
    count.store(count.load(std::memory_order_relaxed) - 1, std::memory_order_release);
  }

  void Synchronize() ABSL_LOCKS_EXCLUDED(sync_mu_, queue_mu_);
  void CallAfterGracePeriod(std::function<void()> fn) ABSL_LOCKS_EXCLUDED(queue_mu_);
  void Barrier() ABSL_LOCKS_EXCLUDED(sync_mu_, queue_mu_) { Synchronize(); }
  uint64_t grace_periods() const {
    // relaxed: statistic.
    return grace_periods_.load(std::memory_order_relaxed);
  }

  // Test-only (hub_hooks.h): `grace_period_waits` runs once per grace period that finds
  // readers to wait for (under sync_mu_), `gate_waits` once per WindowGate::Close that
  // finds open windows (under the registrar's lock). Both must only signal.
  // REQUIRES: no other thread uses the domain yet.
  void SetWaitHooksForTesting(std::function<void()> grace_period_waits,
                              std::function<void()> gate_waits);

 private:
  friend class WindowGate;  // shares shards_ (windows) and state_ (kClosedBit)

  // One line per thread slot: this domain's read counts and the sharing gate's open
  // windows (an exclusive slot's windows count is its thread's nesting depth).
  struct alignas(64) Shard {
    std::array<std::atomic<int64_t>, 2> count{};
    std::atomic<int64_t> windows{0};
  };
  // After the caller's fence: is the epoch still `idx`? (kRecheckOrder, see ReadLock.)
  bool EpochIs(int idx) const {
    return static_cast<int>(state_.load(internal::kRecheckOrder) & kEpochBit) == idx;
  }
  int ReadLockShared(std::array<std::atomic<int64_t>, 2>& count);
  void WaitForEpochDrained(int idx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  struct WaitHooks {
    std::function<void()> grace_period_waits;
    std::function<void()> gate_waits;
  };

  std::array<Shard, internal::kSlots> shards_{};
  alignas(64) std::atomic<uint32_t> state_{0};
  std::atomic<uint64_t> grace_periods_{0};
  Mutex sync_mu_ ABSL_ACQUIRED_BEFORE(queue_mu_);
  Mutex queue_mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(queue_mu_);
  std::unique_ptr<const WaitHooks> wait_hooks_;  // test only; null in production
};

// RAII read-side section: ReadLock on construction, ReadUnlock on destruction.
class SrcuReadSection {
 public:
  explicit SrcuReadSection(SrcuDomain& srcu) : srcu_(srcu), idx_(srcu.ReadLock()) {}
  ~SrcuReadSection() { srcu_.ReadUnlock(idx_); }
  SrcuReadSection(const SrcuReadSection&) = delete;
  SrcuReadSection& operator=(const SrcuReadSection&) = delete;

 private:
  SrcuDomain& srcu_;
  int idx_;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_SRCU_H_
