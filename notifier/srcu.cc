#include "notifier/srcu.h"

#include <utility>

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

SrcuDomain::SrcuDomain() { internal::InitAsymmetricFences(); }

SrcuDomain::~SrcuDomain() { Synchronize(); }

int SrcuDomain::ReadLockShared(std::array<std::atomic<int64_t>, 2>& count) {
  for (;;) {
    // seq_cst (this load, the add and the re-check): the reader half of the
    // store-buffering pair, for a slot shared with other threads (no LightFence needed:
    // a locked RMW is a full barrier, and seq_cst orders it in the C++ model).
    const int idx = epoch_.load(std::memory_order_seq_cst);
    count[idx].fetch_add(1, std::memory_order_seq_cst);
    if (epoch_.load(std::memory_order_seq_cst) == idx) return idx;
    // release: as a ReadUnlock (nothing was read yet).
    count[idx].fetch_sub(1, std::memory_order_release);
  }
}

void SrcuDomain::WaitForEpochDrained(int idx) {
  for (int round = 0;; ++round) {
    int64_t sum = 0;
    // seq_cst: the writer half of the store-buffering pair (after HeavyFence in
    // Synchronize); also an acquire of every ReadUnlock's release store.
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
    // Writer half of the asymmetric pair: after it, every reader that loaded the old
    // epoch without seeing the new one has its count visible to the loads below.
    internal::HeavyFence();
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
