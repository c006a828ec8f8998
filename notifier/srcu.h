// notifier/srcu.h: a small sleepable-RCU domain (Linux: SRCU) for the hub's classic list.
//
// Readers: idx = ReadLock(); ...may sleep...; ReadUnlock(idx). Lock-free, and on the
// common path free of locked instructions: a thread owns its counter slot
// (thread_shard.h) and updates it with a plain load + store.
// Writers: Synchronize() returns after every read-side section that began before it has
// ended. CallAfterGracePeriod(fn) queues fn; Barrier() runs a grace period and then every
// queued fn (Linux: call_srcu + srcu_barrier). Queued fns also run at the end of every
// Synchronize and in the destructor.
//
// Algorithm: two epochs. A reader adds 1 to counts[slot][epoch] and re-reads the epoch;
// if it moved, it backs out and tries again, so no reader enters on an epoch a writer has
// already drained. Synchronize flips the epoch and waits for the old epoch's counts to
// sum to zero. The reader's "add, then load epoch" and the writer's "store epoch, then
// load counts" form a store-buffering pair: LightFence on the reader side, HeavyFence
// (membarrier) on the writer side guarantee that at least one side sees the other. A
// ReadUnlock is a release store that the drain's acquire loads pair with.
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
#include <vector>

#include "absl/base/thread_annotations.h"
#include "notifier/mutex.h"
#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

class SrcuDomain {
 public:
  SrcuDomain();
  ~SrcuDomain();  // runs queued callbacks
  SrcuDomain(const SrcuDomain&) = delete;
  SrcuDomain& operator=(const SrcuDomain&) = delete;

  int ReadLock() {
    const int slot = internal::ThreadSlot();
    if (!internal::IsExclusiveSlot(slot)) return ReadLockShared(shards_[slot].count);
    for (;;) {
      const int idx = ArriveExclusive(slot);
      internal::LightFence();
      if (EpochIs(idx)) return idx;
      // The epoch flipped under us: a writer may already have drained `idx`. Back out.
      ReadUnlockExclusive(slot, idx);
    }
  }
  void ReadUnlock(int idx) {
    const int slot = internal::ThreadSlot();
    if (internal::IsExclusiveSlot(slot)) return ReadUnlockExclusive(slot, idx);
    // release: as in ReadUnlockExclusive.
    shards_[slot].count[idx].fetch_sub(1, std::memory_order_release);
  }

  // ReadLock split in two, for a caller that shares one LightFence between this domain's
  // store-buffering pair and one of its own (the hub's window gate):
  //   idx = ArriveExclusive(slot); ...; LightFence(); if (!EpochIs(idx)) back out;
  // and ReadUnlockExclusive(slot, idx) ends the section. REQUIRES: slot ==
  // ThreadSlot() and IsExclusiveSlot(slot).
  int ArriveExclusive(int slot) {
    // kPairOrder (this load, the store, EpochIs's load), with LightFence: the reader half
    // of the store-buffering pair with Synchronize's epoch store and count loads.
    const int idx = epoch_.load(internal::kPairOrder);
    std::atomic<int64_t>& count = shards_[slot].count[idx];
    // relaxed load: only this thread writes its exclusive slot.
    count.store(count.load(std::memory_order_relaxed) + 1, internal::kPairOrder);
    return idx;
  }
  // After LightFence: false when the epoch flipped since ArriveExclusive (a writer may
  // already have drained `idx`); the caller must back out with ReadUnlockExclusive.
  bool EpochIs(int idx) const { return epoch_.load(internal::kPairOrder) == idx; }
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

 private:
  struct alignas(64) Shard {
    std::array<std::atomic<int64_t>, 2> count{};
  };
  int ReadLockShared(std::array<std::atomic<int64_t>, 2>& count);
  void WaitForEpochDrained(int idx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  std::array<Shard, internal::kSlots> shards_{};
  alignas(64) std::atomic<int> epoch_{0};
  std::atomic<uint64_t> grace_periods_{0};
  Mutex sync_mu_;
  Mutex queue_mu_;
  std::vector<std::function<void()>> queue_ ABSL_GUARDED_BY(queue_mu_);
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
