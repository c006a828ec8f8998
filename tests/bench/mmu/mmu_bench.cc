// mmu benchmarks. Each reports `x_baseline`: its time divided by a baseline measured in the
// same iteration (interleaved, so machine noise hits both alike).
//   BM_Translate/{0 sequential,1 random}: Translate inside one read section per 4096
//     lookups vs a plain array lookup of the same indices. Target: <= 20 ns, <= 4x.
//   BM_TranslateSectionPerLookup: the same with a read section around every lookup.
//   BM_Fault: the full retry fault path vs resolve + lock + install with no protocol.
//   BM_FaultWithInvalidations: faults while a thread invalidates random 64-page ranges
//     of the same slot, vs the same faults with the invalidator paused.
//   BM_ZapRange/{1,100}/{spread,clustered}: ShadowPageTable::ZapRange over 1 GiB with 1%
//     or 100% mapped vs clearing a flat array of the same entries (which must visit all).
//   BM_ZapRangeSparseVsFull/{spread,clustered}: the 1% zap vs the 100% zap, same run.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <thread>
#include <vector>

#include "benchmark/benchmark.h"
#include "mmu/primary.h"
#include "mmu/secondary_mmu.h"
#include "mmu/shadow_page_table.h"
#include "notifier/hub.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::mmu {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kBase = 0x40000000;
constexpr uint64_t kGiBPages = (uint64_t{1} << 30) / kPageSize;  // 262144
constexpr size_t kBatch = 4096;

double Seconds(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double>(b - a).count();
}

// A primary whose pages never move: address -> a made-up host address (never touched).
class IdentityPrimary : public Primary {
 public:
  absl::StatusOr<PrimaryPage> Resolve(uint64_t address, Access) override {
    return PrimaryPage{address + (uint64_t{1} << 40), true};
  }
};

struct MmuFixture {
  explicit MmuFixture(uint64_t pages) {
    if (!mmu.SetLayout({{0, pages, kBase}}).ok()) std::abort();
    if (!hub.Register(mmu).ok()) std::abort();
  }
  ~MmuFixture() { (void)hub.Unregister(mmu); }
  notifier::NotifierSubscriptions hub;
  IdentityPrimary primary;
  SecondaryMmu mmu{primary};
};

std::vector<Gfn> Indices(bool random, uint64_t pages) {
  std::vector<Gfn> v(kBatch);
  std::mt19937_64 rng(7);
  for (size_t i = 0; i < kBatch; ++i) v[i] = random ? rng() % pages : (i * 8) % pages;
  return v;
}

void BM_Translate(benchmark::State& state) {
  const bool random = state.range(0) != 0;
  MmuFixture f(kGiBPages);
  std::vector<uint64_t> array(kGiBPages);
  for (Gfn g = 0; g < kGiBPages; ++g) {
    array[g] = f.mmu.Fault(g, Access::kRead)->host_address;
  }
  const std::vector<Gfn> idx = Indices(random, kGiBPages);
  double translate_s = 0, array_s = 0;
  for (auto _ : state) {
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    for (Gfn g : idx) sum += array[g];
    const auto t1 = Clock::now();
    {
      auto section = f.mmu.ReadSection();
      for (Gfn g : idx) sum += f.mmu.Translate(g, Access::kRead);
    }
    const auto t2 = Clock::now();
    benchmark::DoNotOptimize(sum);
    array_s += Seconds(t0, t1);
    translate_s += Seconds(t1, t2);
    state.SetIterationTime(Seconds(t1, t2));
  }
  const double n = static_cast<double>(state.iterations() * kBatch);
  state.SetItemsProcessed(static_cast<int64_t>(n));
  state.counters["ns_per_lookup"] = translate_s / n * 1e9;
  state.counters["baseline_ns"] = array_s / n * 1e9;
  state.counters["x_baseline"] = translate_s / array_s;
}
BENCHMARK(BM_Translate)->Arg(0)->Arg(1)->UseManualTime();

void BM_TranslateSectionPerLookup(benchmark::State& state) {
  MmuFixture f(kGiBPages);
  std::vector<uint64_t> array(kGiBPages);
  for (Gfn g = 0; g < kGiBPages; ++g) array[g] = f.mmu.Fault(g, Access::kRead)->host_address;
  const std::vector<Gfn> idx = Indices(true, kGiBPages);
  double translate_s = 0, array_s = 0;
  for (auto _ : state) {
    uint64_t sum = 0;
    const auto t0 = Clock::now();
    for (Gfn g : idx) sum += array[g];
    const auto t1 = Clock::now();
    for (Gfn g : idx) {
      auto section = f.mmu.ReadSection();
      sum += f.mmu.Translate(g, Access::kRead);
    }
    const auto t2 = Clock::now();
    benchmark::DoNotOptimize(sum);
    array_s += Seconds(t0, t1);
    translate_s += Seconds(t1, t2);
    state.SetIterationTime(Seconds(t1, t2));
  }
  const double n = static_cast<double>(state.iterations() * kBatch);
  state.counters["ns_per_lookup"] = translate_s / n * 1e9;
  state.counters["x_baseline"] = translate_s / array_s;
}
BENCHMARK(BM_TranslateSectionPerLookup)->UseManualTime();

constexpr uint64_t kFaultPages = 65536;
constexpr size_t kFaultBatch = 1024;

void BM_Fault(benchmark::State& state) {
  MmuFixture f(kFaultPages);
  IdentityPrimary primary;
  SharedMutex mu;  // the lock type of SecondaryMmu::mu_
  ShadowPageTable plain;
  const std::vector<Gfn> idx = Indices(true, kFaultPages);
  double fault_s = 0, base_s = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < kFaultBatch; ++i) {
      const Gfn g = idx[i];
      absl::StatusOr<PrimaryPage> page = primary.Resolve(kBase + g * kPageSize, Access::kRead);
      MutexLock lock(&mu);
      benchmark::DoNotOptimize(plain.Map(g, ShadowEntry{page->host_address, true, true, false}));
    }
    const auto t1 = Clock::now();
    for (size_t i = 0; i < kFaultBatch; ++i) {
      benchmark::DoNotOptimize(f.mmu.Fault(idx[i], Access::kRead));
    }
    const auto t2 = Clock::now();
    base_s += Seconds(t0, t1);
    fault_s += Seconds(t1, t2);
    state.SetIterationTime(Seconds(t1, t2));
  }
  const double n = static_cast<double>(state.iterations() * kFaultBatch);
  state.counters["ns_per_fault"] = fault_s / n * 1e9;
  state.counters["baseline_ns"] = base_s / n * 1e9;
  state.counters["x_baseline"] = fault_s / base_s;
}
BENCHMARK(BM_Fault)->UseManualTime();

void BM_FaultWithInvalidations(benchmark::State& state) {
  MmuFixture f(kFaultPages);
  const std::vector<Gfn> idx = Indices(true, kFaultPages);
  std::atomic<bool> run_invalidator{false};
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> invalidations{0};
  std::thread invalidator([&] {
    std::mt19937_64 rng(11);
    while (!stop.load(std::memory_order_relaxed)) {
      if (!run_invalidator.load(std::memory_order_relaxed)) {
        std::this_thread::yield();
        continue;
      }
      const uint64_t first = rng() % (kFaultPages - 64);
      auto range = notifier::Range::Make(kBase + first * kPageSize,
                                         kBase + (first + 64) * kPageSize,
                                         notifier::Event::kClear);
      if (f.hub.InvalidateRangeStart(*range).ok()) f.hub.InvalidateRangeEnd(*range);
      invalidations.fetch_add(1, std::memory_order_relaxed);
    }
  });
  double quiet_s = 0, busy_s = 0;
  uint64_t retries_busy = 0;
  for (auto _ : state) {
    const auto t0 = Clock::now();
    for (size_t i = 0; i < kFaultBatch; ++i) benchmark::DoNotOptimize(f.mmu.Fault(idx[i], Access::kRead));
    const auto t1 = Clock::now();
    const uint64_t r0 = f.mmu.stats().retries;
    run_invalidator.store(true);
    const auto t2 = Clock::now();
    for (size_t i = 0; i < kFaultBatch; ++i) benchmark::DoNotOptimize(f.mmu.Fault(idx[i], Access::kRead));
    const auto t3 = Clock::now();
    run_invalidator.store(false);
    retries_busy += f.mmu.stats().retries - r0;
    quiet_s += Seconds(t0, t1);
    busy_s += Seconds(t2, t3);
    state.SetIterationTime(Seconds(t2, t3));
  }
  stop.store(true);
  invalidator.join();
  const double n = static_cast<double>(state.iterations() * kFaultBatch);
  state.counters["ns_per_fault"] = busy_s / n * 1e9;
  state.counters["baseline_ns"] = quiet_s / n * 1e9;
  state.counters["retries_per_fault"] = static_cast<double>(retries_busy) / n;
  state.counters["invalidations"] = static_cast<double>(invalidations.load());
  state.counters["x_baseline"] = busy_s / quiet_s;
}
BENCHMARK(BM_FaultWithInvalidations)->UseManualTime();

// The mapped frames: all of them, or 1% of them either spread out (every 100th frame:
// every leaf table holds ~5 entries) or clustered (the first 1%: 6 full leaf tables).
bool Mapped(Gfn g, bool full, bool clustered) {
  if (full) return true;
  return clustered ? g < kGiBPages / 100 : g % 100 == 0;
}
void MapPattern(ShadowPageTable& spt, bool full, bool clustered) {
  for (Gfn g = 0; g < kGiBPages; ++g) {
    if (Mapped(g, full, clustered)) {
      (void)spt.Map(g, ShadowEntry{(g + 1) << kPageShift, true, false, false});
    }
  }
}

// range(0): percent mapped (1 or 100); range(1): 1 = the 1% is clustered, 0 = spread.
void BM_ZapRange(benchmark::State& state) {
  const bool full = state.range(0) == 100;
  const bool clustered = state.range(1) != 0;
  std::vector<std::atomic<uint64_t>> flat(kGiBPages);
  ShadowPageTable spt;
  double zap_s = 0, flat_s = 0;
  uint64_t zapped = 0;
  for (auto _ : state) {
    MapPattern(spt, full, clustered);  // untimed
    for (Gfn g = 0; g < kGiBPages; ++g) {
      if (Mapped(g, full, clustered)) flat[g].store((g + 1) << kPageShift);
    }
    const auto t0 = Clock::now();
    for (auto& e : flat) e.store(0, std::memory_order_relaxed);  // a flat table must visit all
    const auto t1 = Clock::now();
    zapped += spt.ZapRange({0, kGiBPages});
    const auto t2 = Clock::now();
    spt.ReclaimRetired();  // untimed
    flat_s += Seconds(t0, t1);
    zap_s += Seconds(t1, t2);
    state.SetIterationTime(Seconds(t1, t2));
  }
  state.counters["entries"] = static_cast<double>(zapped / state.iterations());
  state.counters["baseline_us"] = flat_s / state.iterations() * 1e6;
  state.counters["x_baseline"] = zap_s / flat_s;
}
BENCHMARK(BM_ZapRange)
    ->Args({1, 0})
    ->Args({1, 1})
    ->Args({100, 0})
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

// range(0): 1 = the 1% is clustered, 0 = spread.
void BM_ZapRangeSparseVsFull(benchmark::State& state) {
  const bool clustered = state.range(0) != 0;
  ShadowPageTable sparse, full;
  double sparse_s = 0, full_s = 0;
  for (auto _ : state) {
    MapPattern(sparse, false, clustered);
    MapPattern(full, true, false);
    const auto t0 = Clock::now();
    benchmark::DoNotOptimize(full.ZapRange({0, kGiBPages}));
    const auto t1 = Clock::now();
    benchmark::DoNotOptimize(sparse.ZapRange({0, kGiBPages}));
    const auto t2 = Clock::now();
    sparse.ReclaimRetired();
    full.ReclaimRetired();
    full_s += Seconds(t0, t1);
    sparse_s += Seconds(t1, t2);
    state.SetIterationTime(Seconds(t1, t2));
  }
  state.counters["full_us"] = full_s / state.iterations() * 1e6;
  state.counters["x_baseline"] = sparse_s / full_s;
}
BENCHMARK(BM_ZapRangeSparseVsFull)->Arg(0)->Arg(1)->UseManualTime()->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mmuvisor::mmu
