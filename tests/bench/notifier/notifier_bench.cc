// Benchmarks of notifier/ (issue 3). Each reports `x_baseline`, a ratio against a
// baseline measured in the same run:
//   BM_StartEndDispatch/<subs>/<checker>: hub start+end vs calling the same callbacks
//     directly (target <= 1.5).
//   BM_DisjointInvalidation/threads:N: N threads on disjoint ranges vs one thread,
//     aggregate throughput ratio (2.0 = perfect scaling; no global lock on the path).
//   BM_IntervalInvalidation/<intervals>/<pattern>: one overlapping invalidation with N
//     intervals registered vs with 10 (target: 10^5 within 3x of 10). pattern:0 sweeps the
//     intervals in address order (a reclaim sweep: neighbouring leaves and subscriptions),
//     pattern:1 jumps by a stride of 7919 intervals (every invalidation meets a cold leaf
//     and a cold subscription); each reports its own x_baseline. tree_first_ns: the
//     tree's own lookup, scattered, without the hub or the callback.
#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <vector>

#include "benchmark/benchmark.h"
#include "notifier/hub.h"
#include "notifier/interval_subscription.h"
#include "notifier/interval_tree.h"

namespace mmuvisor::notifier {
namespace {

using Clock = std::chrono::steady_clock;

// This thread's CPU time in ns: the machine is shared, so ratios use CPU time, which
// other processes' load does not inflate (wall time is reported by the framework).
double ThreadCpuNs() {
  timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e9 + static_cast<double>(ts.tv_nsec);
}

constexpr int kRounds = 8;

template <typename Fn>
double NsPerOp(int64_t iterations, Fn&& fn) {
  const double t0 = ThreadCpuNs();
  for (int64_t i = 0; i < iterations; ++i) fn(i);
  return (ThreadCpuNs() - t0) / static_cast<double>(iterations);
}

// KVM-like: start takes the MMU lock, raises in_progress and widens the range; end bumps
// seq and drops the count (kvm_mmu_invalidate_begin/end without a shadow table).
class BenchKvm : public Subscription {
 public:
  BenchKvm() : Subscription(OpSet::KvmLike(), "bench-kvm") {}
  StartResult InvalidateRangeStart(const Range& r) override {
    std::lock_guard<std::mutex> lock(mmu_lock_);
    if (in_progress_++ == 0) {
      range_start_ = r.start;
      range_end_ = r.end;
    } else {
      range_start_ = std::min(range_start_, r.start);
      range_end_ = std::max(range_end_, r.end);
    }
    return StartResult::kOk;
  }
  void InvalidateRangeEnd(const Range&) override {
    std::lock_guard<std::mutex> lock(mmu_lock_);
    ++seq_;
    --in_progress_;
  }

 private:
  std::mutex mmu_lock_;
  int64_t in_progress_ = 0;
  uint64_t seq_ = 0;
  uint64_t range_start_ = 0, range_end_ = 0;
};

void BM_StartEndDispatch(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  const bool check = state.range(1) != 0;
  NotifierSubscriptions hub({.check_pairing = check});
  std::vector<std::unique_ptr<BenchKvm>> subs;
  for (int i = 0; i < n; ++i) {
    subs.push_back(std::make_unique<BenchKvm>());
    if (!hub.Register(*subs.back()).ok()) state.SkipWithError("register failed");
  }
  std::vector<Subscription*> direct;  // newest first, like the hub
  for (auto it = subs.rbegin(); it != subs.rend(); ++it) direct.push_back(it->get());
  const Range range{0x1000, 0x2000, Event::kClear, true, nullptr};

  // Baseline: the same virtual callbacks, called directly, same order.
  const int64_t kReps = 200000 / n + 1000;
  auto direct_pair = [&](int64_t) {
    for (Subscription* s : direct) benchmark::DoNotOptimize(s->InvalidateRangeStart(range));
    for (Subscription* s : direct) s->InvalidateRangeEnd(range);
  };
  auto hub_pair = [&](int64_t) {
    benchmark::DoNotOptimize(hub.InvalidateRangeStart(range));
    hub.InvalidateRangeEnd(range);
  };
  NsPerOp(kReps / 4, direct_pair);  // warm up
  for (auto _ : state) hub_pair(0);
  // Alternate the two, several rounds, and keep each one's minimum: on a shared machine
  // a round that another process interrupted only ever looks slower, for either side.
  double direct_ns = 1e18, hub_ns = 1e18;
  for (int round = 0; round < kRounds; ++round) {
    direct_ns = std::min(direct_ns, NsPerOp(kReps / kRounds, direct_pair));
    hub_ns = std::min(hub_ns, NsPerOp(kReps / kRounds, hub_pair));
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["direct_ns"] = direct_ns;
  state.counters["hub_ns"] = hub_ns;
  state.counters["x_baseline"] = hub_ns / direct_ns;
  for (auto& s : subs) {
    if (!hub.Unregister(*s).ok()) state.SkipWithError("unregister failed");
  }
}
BENCHMARK(BM_StartEndDispatch)
    ->ArgNames({"subs", "checker"})
    ->ArgsProduct({{1, 4, 16, 64}, {0, 1}})
    ->Iterations(20000);

// Lock-free per-range work: the callback touches a counter chosen by the range, so
// disjoint ranges share no cache line and any serialisation left is the hub's own.
class ShardedSub : public Subscription {
 public:
  ShardedSub() : Subscription({Op::kInvalidateRangeStart, Op::kInvalidateRangeEnd}, "sharded") {}
  StartResult InvalidateRangeStart(const Range& r) override {
    // relaxed: a private counter per shard, statistics only.
    slots_[(r.start >> 20) % kSlots].v.fetch_add(1, std::memory_order_relaxed);
    return StartResult::kOk;
  }
  void InvalidateRangeEnd(const Range& r) override {
    slots_[(r.start >> 20) % kSlots].v.fetch_sub(1, std::memory_order_relaxed);
  }

 private:
  static constexpr int kSlots = 8;
  struct alignas(64) Slot {
    std::atomic<int64_t> v{0};
  };
  std::array<Slot, kSlots> slots_{};
};

// One hub shared by every thread of every BM_DisjointInvalidation instance, with four
// sharded subscriptions (leaked on purpose: benchmark threads may outlive a local).
NotifierSubscriptions& SharedParallelHub() {
  static NotifierSubscriptions* hub = [] {
    auto* h = new NotifierSubscriptions({.check_pairing = false});
    for (int i = 0; i < 4; ++i) {
      if (!h->Register(*new ShardedSub()).ok()) abort();
    }
    return h;
  }();
  return *hub;
}

// Pairs per second of one thread alone, measured by the Threads(1) instance of this run.
std::atomic<double> one_thread_pairs_per_s{0};

// Each thread invalidates its own range (thread t: [(t+1) MiB, +4 KiB)) in a loop.
// x_baseline (summed over threads) = aggregate pairs/s over that of one thread alone:
// 2.0 is perfect scaling for Threads(2); a global lock on the path would give <= 1.
void BM_DisjointInvalidation(benchmark::State& state) {
  NotifierSubscriptions& hub = SharedParallelHub();
  const uint64_t base = uint64_t(state.thread_index() + 1) << 20;
  const Range r{base, base + 0x1000, Event::kClear, true, nullptr};
  const double cpu0 = ThreadCpuNs();
  const Clock::time_point t0 = Clock::now();
  for (auto _ : state) {
    if (hub.InvalidateRangeStart(r).ok()) hub.InvalidateRangeEnd(r);
  }
  const double s = std::chrono::duration<double>(Clock::now() - t0).count();
  // CPU time per pair, averaged over threads: load-independent; it would rise with
  // threads if they bounced a shared cache line or waited on a lock.
  state.counters["cpu_ns_pair"] = benchmark::Counter(
      (ThreadCpuNs() - cpu0) / static_cast<double>(state.iterations()),
      benchmark::Counter::kAvgThreads);
  const double rate = static_cast<double>(state.iterations()) / s;
  if (state.threads() == 1) one_thread_pairs_per_s.store(rate);
  state.SetItemsProcessed(state.iterations());
  // Summed over threads by the framework.
  state.counters["Mpairs_s"] = rate / 1e6;
  const double one = one_thread_pairs_per_s.load();
  state.counters["x_baseline"] = one > 0 ? rate / one : 0;
}
BENCHMARK(BM_DisjointInvalidation)->Threads(1)->Threads(2)->UseRealTime()
    ->MinTime(1.0);

class BenchInterval : public IntervalSubscription {
 public:
  bool Invalidate(const Range&, uint64_t cur_seq) override {
    std::lock_guard<std::mutex> lock(user_lock_);
    SetSeq(cur_seq);
    return true;
  }

 private:
  std::mutex user_lock_;
};

// Builds a hub with `n` 4 KiB intervals 64 KiB apart and returns ns per invalidation of
// a 4 KiB range that overlaps exactly one of them (a different one each time).
struct IntervalSetup {
  explicit IntervalSetup(int64_t n) : subs(static_cast<size_t>(n)) {
    for (int64_t i = 0; i < n; ++i) {
      if (!subs[i].Insert(hub, static_cast<uint64_t>(i) << 16, 4096).ok()) abort();
    }
  }
  ~IntervalSetup() {
    for (BenchInterval& s : subs) {
      if (!s.Remove().ok()) abort();
    }
  }
  void Invalidate(int64_t i) {
    const uint64_t start = static_cast<uint64_t>(i % static_cast<int64_t>(subs.size())) << 16;
    const Range r{start, start + 4096, Event::kClear, true, nullptr};
    benchmark::DoNotOptimize(hub.InvalidateRangeStart(r));
    hub.InvalidateRangeEnd(r);
  }
  // The floor: the same callback on the same subscription, called without the hub (its
  // cost grows with n only through the memory the subscriptions themselves occupy).
  void CallDirect(int64_t i) {
    const size_t k = static_cast<size_t>(i % static_cast<int64_t>(subs.size()));
    const uint64_t start = static_cast<uint64_t>(k) << 16;
    const Range r{start, start + 4096, Event::kClear, true, nullptr};
    IntervalSubscription& sub = subs[k];  // through the base, as the hub calls it
    benchmark::DoNotOptimize(sub.Invalidate(r, 3));
  }
  NotifierSubscriptions hub{HubOptions{.check_pairing = false}};
  std::vector<BenchInterval> subs;
};

void BM_IntervalInvalidation(benchmark::State& state) {
  const int64_t n = state.range(0);
  const bool scattered = state.range(1) != 0;
  constexpr int64_t kReps = 200000;
  IntervalSetup base(10);
  IntervalSetup setup(n);
  NsPerOp(kReps / 4, [&](int64_t i) { base.Invalidate(i); });
  const double direct10_ns = NsPerOp(kReps, [&](int64_t i) { base.CallDirect(i); });
  state.counters["direct10_ns"] = direct10_ns;
  int64_t i = 0;
  for (auto _ : state) setup.Invalidate(i++);
  // The baseline and both patterns alternate round by round, each keeping its minimum
  // (as in BM_StartEndDispatch): a VM that changes speed during the run slows all three
  // alike, instead of skewing a baseline measured before the rest. Scattered is stride
  // 7919, sweep is address order; each round continues where the previous one stopped.
  double base_ns = 1e18, n_ns = 1e18, n_seq_ns = 1e18;
  for (int round = 0; round < kRounds; ++round) {
    const int64_t first = round * kReps / kRounds;
    base_ns = std::min(base_ns, NsPerOp(kReps / kRounds, [&](int64_t k) {
      base.Invalidate(first + k);
    }));
    n_ns = std::min(n_ns, NsPerOp(kReps / kRounds, [&](int64_t k) {
      setup.Invalidate((first + k) * 7919);
    }));
    n_seq_ns = std::min(n_seq_ns, NsPerOp(kReps / kRounds, [&](int64_t k) {
      setup.Invalidate(first + k);
    }));
  }
  state.counters["n_seq_ns"] = n_seq_ns;
  state.counters["direct_n_ns"] =
      NsPerOp(kReps, [&](int64_t k) { setup.CallDirect(k * 7919); });
  // Latency floor: the next subscription's index depends on a load from this one (as in
  // the hub, where the walk must finish before the callback runs), so misses cannot
  // overlap. One cold subscription per invalidation costs at least this.
  uint64_t dep = 0;
  const double direct_n_dep_ns = NsPerOp(kReps, [&](int64_t k) {
    const int64_t idx = k * 7919 + static_cast<int64_t>(dep);
    setup.CallDirect(idx);
    const size_t j = static_cast<size_t>(idx % static_cast<int64_t>(setup.subs.size()));
    dep = setup.subs[j].start() & 1;  // always 0, but the CPU must wait for the load
  });
  state.counters["direct_n_dep_ns"] = direct_n_dep_ns;
  // The tree's share: First alone (no hub, no callback) on a copy of the hub's tree, in
  // the scattered pattern, each query's position depending on the previous answer (as in
  // the hub, where the lock orders one invalidation after the other).
  {
    IntervalTree tree;
    for (BenchInterval& s : setup.subs) tree.Insert(s.start(), s.last(), &s);
    uint64_t dep_first = 0;
    auto first = [&](int64_t k) {
      const size_t j = static_cast<size_t>((k * 7919 + static_cast<int64_t>(dep_first)) %
                                           static_cast<int64_t>(setup.subs.size()));
      const uint64_t s = static_cast<uint64_t>(j) << 16;
      IntervalTree::Cursor c;
      dep_first = tree.First(s, s + 4095, &c) ? (c.start() & 1) : 1;  // always 0
    };
    NsPerOp(kReps / 4, first);
    double first_ns = 1e18;
    for (int round = 0; round < kRounds; ++round) {
      first_ns = std::min(first_ns, NsPerOp(kReps / kRounds, [&](int64_t k) {
        first(round * kReps / kRounds + k);
      }));
    }
    state.counters["tree_first_ns"] = first_ns;
    for (BenchInterval& s : setup.subs) tree.Remove(s.start(), &s);
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["base10_ns"] = base_ns;
  state.counters["n_ns"] = n_ns;
  state.counters["x_baseline"] = (scattered ? n_ns : n_seq_ns) / base_ns;
  // What the scatter's x_baseline cannot go below on this machine, now: the 10-interval
  // invalidation with its hot callback swapped for the dependent call on a cold
  // subscription, i.e. a lookup that costs nothing. Only the host's memory latency moves it
  // (issue 13's item 4; notifier/README.md).
  state.counters["x_floor"] = (base_ns - direct10_ns + direct_n_dep_ns) / base_ns;
}
BENCHMARK(BM_IntervalInvalidation)
    ->ArgNames({"intervals", "pattern"})
    ->ArgsProduct({{10, 1000, 100000}, {0, 1}});

}  // namespace
}  // namespace mmuvisor::notifier
