// BM_DemandPaging/<threads>/<fault_around>/<spin_us>/<place>: host threads (playing vCPUs)
// write one byte to
// every page of a 32 MiB memfd-backed guest RAM whose pages are all swapped out, served by a
// PageServer with one handler per toucher thread, against the same threads writing to
// never-touched memory of the same kind without userfaultfd (baseline), in the same
// iteration. Setup (fill, save, discard, register) is outside the timed region.
// fault_around: PageServerOptions::fault_around_pages (15 is the default); spin_us: the
// handlers' spin_before_block_ns in µs; place: 0 = nobody pinned, 1 = toucher t and handler
// t pinned to CPU t (same CPU), 2 = toucher t on CPU t, handler t on the next CPU.
//
// Counters: pages_per_s (paged), baseline_pages_per_s, x_baseline = paged time / baseline
// time (how many times slower demand paging is; lower is better), p50_us / p99_us /
// max_us: fault latency seen by the touching thread (first write to a page, clock to clock;
// both runs read the clock around every touch), baseline_p50_us / baseline_p99_us: the same
// for the baseline, server_p50_us / server_p99_us: the server's per-fault service time.
//
// This is the no-KVM fallback (it runs on any Linux host with userfaultfd, so also here and
// in CI). The same measurement with a real guest on 1 and 2 vCPUs is BM_GuestDemandPaging
// (guest_demand_paging_bench.cc), which needs /dev/kvm.
#include <benchmark/benchmark.h>
#include <sched.h>
#include <time.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "vmm/paging/guest_ram.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/paging/page_server.h"
#include "vmm/paging/swap_store.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kPages = 8192;  // 32 MiB of 4 KiB pages

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

template <typename T>
T Must(absl::StatusOr<T> v) {
  if (!v.ok()) {
    std::fprintf(stderr, "benchmark setup failed: %s\n", v.status().ToString().c_str());
    std::abort();
  }
  return std::move(*v);
}

int Cpus() { return static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)); }

void PinSelf(int cpu) {
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(cpu, &set);
  (void)sched_setaffinity(0, sizeof(set), &set);
}

// Each thread writes one byte to each page of its contiguous share. Returns elapsed ns.
// pin: thread t runs on CPU t % Cpus().
uint64_t TouchAll(GuestRam& ram, int threads, LatencyHistogram* latency, bool pin) {
  std::vector<std::thread> workers;
  const uint64_t share = ram.num_pages() / static_cast<uint64_t>(threads);
  const uint64_t start = NowNs();
  for (int t = 0; t < threads; ++t) {
    workers.emplace_back([&, t] {
      if (pin) PinSelf(t % Cpus());
      const uint64_t first = static_cast<uint64_t>(t) * share;
      for (uint64_t p = first; p < first + share; ++p) {
        volatile uint8_t* byte = ram.PageAddress(p) + 64;
        const uint64_t t0 = latency != nullptr ? NowNs() : 0;
        *byte = static_cast<uint8_t>(*byte + 1);
        if (latency != nullptr) latency->Record(NowNs() - t0);
      }
    });
  }
  for (auto& w : workers) w.join();
  return NowNs() - start;
}

void BM_DemandPaging(benchmark::State& state) {
  const int threads = static_cast<int>(state.range(0));
  const auto fault_around = static_cast<uint32_t>(state.range(1));
  const auto spin_ns = static_cast<uint32_t>(state.range(2) * 1000);
  const int place = static_cast<int>(state.range(3));
  PageServerOptions options;
  options.handler_threads = threads;
  options.fault_around_pages = fault_around;
  options.spin_before_block_ns = spin_ns;
  for (int t = 0; place != 0 && t < threads; ++t) {
    options.handler_cpus.push_back((t + (place == 2 ? 1 : 0)) % Cpus());
  }
  const size_t page = 4096;
  LatencyHistogram touch_latency;
  LatencyHistogram baseline_latency;
  LatencyHistogram::Snapshot server_latency;
  double paged_ns = 0;
  double baseline_ns = 0;
  uint64_t pages = 0;
  uint64_t faults = 0;
  std::vector<uint8_t> data(page, 0xA5);

  for (auto _ : state) {
    // Baseline: never-touched memfd memory, no userfaultfd.
    auto plain = Must(GuestRam::Create(kPages * page));
    baseline_ns += static_cast<double>(TouchAll(*plain, threads, &baseline_latency, place != 0));
    plain.reset();

    // Paged: every page saved in the store and absent from RAM.
    auto ram = Must(GuestRam::Create(kPages * page));
    auto store = Must(SwapStore::Create(kPages, page));
    for (uint64_t p = 0; p < kPages; ++p) {
      data[0] = static_cast<uint8_t>(p);
      if (!store->Save(p, data.data()).ok()) std::abort();
    }
    auto server = Must(PageServer::Start({ram->base(), kPages, page}, store.get(), options));
    const uint64_t ns = TouchAll(*ram, threads, &touch_latency, place != 0);
    state.SetIterationTime(static_cast<double>(ns) * 1e-9);
    paged_ns += static_cast<double>(ns);
    pages += kPages;
    const PageServerStats s = server->Stats();
    faults += s.faults;
    if (s.failures != 0 || s.swap_ins + s.fault_around_pages < kPages / 2) {
      state.SkipWithError("page server did not serve the pages from the store");
      break;
    }
    server->Shutdown();
    const auto snap = server->FaultLatency();
    for (int i = 0; i < LatencyHistogram::kBuckets; ++i)
      server_latency.buckets[i] += snap.buckets[i];
    server_latency.count += snap.count;
    server_latency.sum_ns += snap.sum_ns;
    server_latency.max_ns = std::max(server_latency.max_ns, snap.max_ns);
  }
  if (pages == 0) return;
  const auto iters = static_cast<double>(state.iterations());
  const auto lat = touch_latency.TakeSnapshot();
  state.SetItemsProcessed(static_cast<int64_t>(pages));
  state.counters["pages_per_s"] = static_cast<double>(pages) / (paged_ns * 1e-9);
  state.counters["baseline_pages_per_s"] =
      static_cast<double>(kPages) * iters / (baseline_ns * 1e-9);
  state.counters["x_baseline"] = paged_ns / baseline_ns;
  state.counters["p50_us"] = static_cast<double>(lat.PercentileNs(0.5)) / 1e3;
  state.counters["p99_us"] = static_cast<double>(lat.PercentileNs(0.99)) / 1e3;
  state.counters["max_us"] = static_cast<double>(lat.max_ns) / 1e3;
  const auto base_lat = baseline_latency.TakeSnapshot();
  state.counters["baseline_p50_us"] = static_cast<double>(base_lat.PercentileNs(0.5)) / 1e3;
  state.counters["baseline_p99_us"] = static_cast<double>(base_lat.PercentileNs(0.99)) / 1e3;
  state.counters["server_p50_us"] = static_cast<double>(server_latency.PercentileNs(0.5)) / 1e3;
  state.counters["server_p99_us"] = static_cast<double>(server_latency.PercentileNs(0.99)) / 1e3;
  state.counters["faults_per_iter"] = static_cast<double>(faults) / iters;
}

BENCHMARK(BM_DemandPaging)
    ->ArgNames({"threads", "fault_around", "spin_us", "place"})
    ->Args({1, 0, 0, 0})  // the old default: one page per round trip
    ->Args({2, 0, 0, 0})
    ->Args({1, 15, 0, 0})  // the default now
    ->Args({2, 15, 0, 0})
    ->Args({1, 63, 0, 0})
    ->Args({2, 63, 0, 0})
    ->Args({1, 15, 20, 0})  // levers measured, not defaults (README)
    ->Args({2, 15, 20, 0})
    ->Args({1, 0, 0, 1})
    ->Args({1, 0, 0, 2})
    ->Args({1, 0, 20, 2})
    ->UseManualTime()
    ->Iterations(5)
    ->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace mmuvisor::vmm
