// notifier/srcu.h: a small sleepable-RCU domain (Linux: SRCU) for the hub's classic list.
//
// Readers: idx = ReadLock(); ...may sleep...; ReadUnlock(idx). Lock-free: two atomic
// read-modify-writes on a per-thread-shard cache line, never a shared lock.
// Writers: Synchronize() returns after every read-side section that began before it has
// ended. CallAfterGracePeriod(fn) queues fn; Barrier() runs a grace period and then every
// queued fn (Linux: call_srcu + srcu_barrier). Queued fns also run at the end of every
// Synchronize and in the destructor.
//
// Algorithm: two epochs. A reader adds 1 to counts[shard][epoch] and re-reads the epoch;
// if it moved, it backs out and tries again, so no reader enters on an epoch a writer has
// already drained. Synchronize flips the epoch and waits for the old epoch's counts to
// sum to zero. All the epoch/count accesses are seq_cst: the reader's "add, then load
// epoch" and the writer's "store epoch, then load counts" form a store-buffering pair that
// only seq_cst orders (at least one side sees the other).
//
// Threads: ReadLock/ReadUnlock from any thread, nested freely. Synchronize and Barrier
// may sleep and must not be called inside a read-side section of the same domain.
// Queued fns run under sync_mu_ and must not call Synchronize.
// Synchronize calls are serialised by sync_mu_.
#ifndef MMUVISOR_NOTIFIER_SRCU_H_
#define MMUVISOR_NOTIFIER_SRCU_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "notifier/mutex.h"

namespace mmuvisor::notifier {

class SrcuDomain {
 public:
  static constexpr int kShards = 16;

  SrcuDomain() = default;
  ~SrcuDomain();  // runs queued callbacks
  SrcuDomain(const SrcuDomain&) = delete;
  SrcuDomain& operator=(const SrcuDomain&) = delete;

  int ReadLock();
  void ReadUnlock(int idx);

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
  static int MyShard();
  void WaitForEpochDrained(int idx) ABSL_EXCLUSIVE_LOCKS_REQUIRED(sync_mu_);

  std::array<Shard, kShards> shards_{};
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
