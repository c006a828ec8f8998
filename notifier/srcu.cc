#include "notifier/srcu.h"

#include <utility>

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

SrcuDomain::~SrcuDomain() { Synchronize(); }

int SrcuDomain::ReadLock() {
  std::array<std::atomic<int64_t>, 2>& count = shards_[internal::ThreadShard(kShards)].count;
  for (;;) {
    // seq_cst (this load, the add and the re-check): the reader half of the
    // store-buffering pair with Synchronize's epoch store and count loads.
    int idx = epoch_.load(std::memory_order_seq_cst);
    count[idx].fetch_add(1, std::memory_order_seq_cst);
    if (epoch_.load(std::memory_order_seq_cst) == idx) return idx;
    // The epoch flipped under us: a writer may already have drained `idx`. Back out.
    // release: our section has not begun, nothing to publish, but keep the counter
    // updates ordered like a ReadUnlock for the drain's acquire loads.
    count[idx].fetch_sub(1, std::memory_order_release);
  }
}

void SrcuDomain::ReadUnlock(int idx) {
  // release: everything the read-side section did happens-before the writer's acquire
  // load of the count in WaitForEpochDrained (and so before anything freed after it).
  shards_[internal::ThreadShard(kShards)].count[idx].fetch_sub(1, std::memory_order_release);
}

void SrcuDomain::WaitForEpochDrained(int idx) {
  for (int round = 0;; ++round) {
    int64_t sum = 0;
    // seq_cst: the writer half of the store-buffering pair (see ReadLock); also an
    // acquire of every ReadUnlock's release. A section may ReadLock on one shard and
    // ReadUnlock on another (moved threads do not exist here, but sums are what count).
    for (Shard& shard : shards_) sum += shard.count[idx].load(std::memory_order_seq_cst);
    if (sum == 0) return;
    internal::WaitStep(round);
  }
}

void SrcuDomain::Synchronize() {
  std::vector<std::function<void()>> ready;
  {
    // Callbacks queued before this point are covered by the grace period below.
    MutexLock lock(&queue_mu_);
    ready.swap(queue_);
  }
  {
    MutexLock lock(&sync_mu_);
    // relaxed: only writers store the epoch, and they are serialised by sync_mu_.
    int old = epoch_.load(std::memory_order_relaxed);
    // seq_cst: writer half of the store-buffering pair with ReadLock.
    epoch_.store(old ^ 1, std::memory_order_seq_cst);
    WaitForEpochDrained(old);
    // relaxed: statistic.
    grace_periods_.fetch_add(1, std::memory_order_relaxed);
    // Run them before releasing sync_mu_, so that a concurrent Synchronize (a barrier
    // caller) cannot return while callbacks queued before it are still pending.
    for (std::function<void()>& fn : ready) fn();
  }
}

void SrcuDomain::CallAfterGracePeriod(std::function<void()> fn) {
  MutexLock lock(&queue_mu_);
  queue_.push_back(std::move(fn));
}

}  // namespace mmuvisor::notifier
