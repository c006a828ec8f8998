#include "notifier/srcu.h"

#include <utility>

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {

SrcuDomain::SrcuDomain() {
  internal::InitAsymmetricFences();
  // acquire: pairs with the release in InitAsymmetricFences. Without membarrier the
  // fast paths' compiler barrier is not enough: keep them off for good.
  if (!internal::membarrier_ready.load(std::memory_order_acquire)) {
    // relaxed: not yet shared (the owner publishes the hub).
    state_.store(kFullFenceBit, std::memory_order_relaxed);
  }
}

SrcuDomain::~SrcuDomain() { Synchronize(); }

int SrcuDomain::ReadLockShared(std::array<std::atomic<int64_t>, 2>& count) {
  for (;;) {
    // seq_cst (this load, the add and the re-check): the reader half of the
    // store-buffering pair, for a slot shared with other threads (no LightFence needed:
    // a locked RMW is a full barrier, and seq_cst orders it in the C++ model).
    const int idx = static_cast<int>(state_.load(std::memory_order_seq_cst) & kEpochBit);
    count[idx].fetch_add(1, std::memory_order_seq_cst);
    if (static_cast<int>(state_.load(std::memory_order_seq_cst) & kEpochBit) == idx) {
      return idx;
    }
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
    if (round == 0 && wait_hooks_ != nullptr && wait_hooks_->grace_period_waits) {
      wait_hooks_->grace_period_waits();
    }
    internal::WaitStep(round);
  }
}

void SrcuDomain::Synchronize() {
  std::vector<std::function<void()>> ready;
  {
    MutexLock lock(&sync_mu_);
    {
      // Taken under sync_mu_: a callback queued before this call is either in `ready`
      // or in the batch of a Synchronize that held sync_mu_ before us and ran it before
      // letting go. (Swapped outside sync_mu_, an earlier caller could take the batch
      // and lose the race for sync_mu_ to us, and we would return with its callbacks
      // still pending: teardown's link-state update then landed on a subscription whose
      // Unregister had returned.) Callbacks queued before the swap are covered by the
      // grace period below.
      MutexLock queue_lock(&queue_mu_);
      ready.swap(queue_);
    }
    // seq_cst: writer half of the store-buffering pair with ReadLock. A read-modify-write:
    // the gate's Close/Open change kClosedBit of the same word (under another lock).
    const uint32_t before = state_.fetch_xor(kEpochBit, std::memory_order_seq_cst);
    const int old = static_cast<int>(before & kEpochBit);
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

void SrcuDomain::SetWaitHooksForTesting(std::function<void()> grace_period_waits,
                                        std::function<void()> gate_waits) {
  wait_hooks_ = std::make_unique<const WaitHooks>(
      WaitHooks{std::move(grace_period_waits), std::move(gate_waits)});
}

void SrcuDomain::CallAfterGracePeriod(std::function<void()> fn) {
  MutexLock lock(&queue_mu_);
  queue_.push_back(std::move(fn));
}

}  // namespace mmuvisor::notifier
