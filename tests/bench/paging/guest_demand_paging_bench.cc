// BM_GuestDemandPaging/vcpus:<n>/pages:<total>: a real ring-3 guest (guests/touch) on n
// vCPUs under KVM writes one byte to every page of its share of `total` pages of guest RAM
// that were all reclaimed to the swap store first (each first touch is a userfaultfd fault
// served by the page server, one handler thread per vCPU), against the same guest on the
// same number of never-touched pages of a Machine whose page server was shut down before
// the run (plain shmem first-touch faults, no userfaultfd), in the same iteration. See
// guest_touch_run.h for the setup and what is timed (first vCPU's START sync to the last
// vCPU's TOUCHED sync; fill, reclaim, boot and the guest's verification are outside).
// Every iteration checks that every page was swapped in and that the guest verified every
// page, or the benchmark stops with an error.
//
// The other arguments: fault_around / fa_max (the page server's base cluster and the stream
// ramp's top, PageServerOptions; 15 / 255 is the default), spin_us (the handlers' spin
// before blocking) and cpl (3: the guest at CPL3, what `mmuvisor run` starts; 0: at CPL0,
// as the KVM selftests' guest runs, which kvm_pvm emulates and maps without shadow faults)
// and dirty_log (2: auto, what `mmuvisor run --resident` uses: none where KVM prefetches
// on faults, as on kvm_pvm, else the ring or the bitmap; 1: the bitmap; 0: no dirty log on
// the slots, so KVM may map the neighbours of a faulting page writable, up to 8 per shadow
// fault). The label names the log the Machine used ("dirty log: none").
//
// Counters: pages_per_s (paged), baseline_pages_per_s, x_baseline = paged time / baseline
// time (how many times slower demand paging is; lower is better), p50_us / p99_us /
// max_us: the page server's per-fault service time (message read -> page installed) over
// the paged runs' faults; faults_per_iter: page-server faults per paged run.
//
// Needs /dev/kvm: without it (this machine, CI) it stops with SkipWithError. To run it,
// use nested KVM (tests/nested/README.md has the full command), e.g.
//   NESTED_TESTS_REGEX=GuestTouch NESTED_EXTRA_CMD="build/<rel>/tests/bench/paging/
//   bench_guest_demand_paging" tests/nested/run-kvm-tests build/<rel>   (one line)
// Under TCG the guest and the host kernel are emulated: absolute numbers mean little.
// bench_paging_page_server (page_server_bench.cc, host threads playing vCPUs) is the
// fallback that runs without KVM.
#include <benchmark/benchmark.h>

#include <algorithm>
#include <string>

#include "absl/strings/str_cat.h"
#include "bench/paging/guest_touch_run.h"
#include "vmm/kvm/system.h"
#include "vmm/paging/latency_histogram.h"

namespace mmuvisor::vmm {
namespace {

void AddInto(LatencyHistogram::Snapshot& sum, const LatencyHistogram::Snapshot& s) {
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i) sum.buckets[i] += s.buckets[i];
  sum.count += s.count;
  sum.sum_ns += s.sum_ns;
  sum.max_ns = std::max(sum.max_ns, s.max_ns);
}

// "" when the run served and verified every page, else what went wrong.
std::string CheckRun(const GuestTouchResult& r, uint64_t pages, bool paged) {
  if (r.pages_touched != pages || r.pages_verified != pages || r.pages_bad != 0) {
    return absl::StrCat(paged ? "paged" : "baseline", " run: touched ", r.pages_touched,
                        ", verified ", r.pages_verified, ", bad ", r.pages_bad, " of ", pages,
                        " pages (first bad gpa 0x", absl::Hex(r.first_bad_gpa), ")");
  }
  if (paged && r.swap_ins != pages) {
    return absl::StrCat("paged run: ", r.swap_ins, " swap-ins for ", pages, " touched pages");
  }
  if (!paged && r.server_faults != 0) {
    return absl::StrCat("baseline run: ", r.server_faults, " page-server faults (expected none)");
  }
  return "";
}

void BM_GuestDemandPaging(benchmark::State& state) {
  const auto vcpus = static_cast<uint32_t>(state.range(0));
  const auto pages = static_cast<uint64_t>(state.range(1));
  if (absl::StatusOr<KvmSystem> kvm = KvmSystem::Open(); !kvm.ok()) {
    state.SkipWithError(absl::StrCat("needs /dev/kvm: ", kvm.status().message(),
                                     " (run it in nested KVM: tests/nested/README.md)")
                            .c_str());
    return;
  }
  GuestTouchOptions options;
  options.vcpus = vcpus;
  options.fault_around_pages = static_cast<uint32_t>(state.range(2));
  options.fault_around_max_pages = static_cast<uint32_t>(state.range(3));
  options.spin_ns = static_cast<uint32_t>(state.range(4) * 1000);
  options.pages_per_vcpu = pages / vcpus;
  options.privilege = state.range(5) == 0 ? GuestPrivilege::kKernel : GuestPrivilege::kUser;
  options.dirty_log = state.range(6) == 0   ? DirtyLogSource::kNone
                      : state.range(6) == 1 ? DirtyLogSource::kBitmap
                                            : DirtyLogSource::kAuto;
  const uint64_t touched = options.pages_per_vcpu * vcpus;
  double paged_ns = 0;
  double baseline_ns = 0;
  uint64_t faults = 0;
  LatencyHistogram::Snapshot latency;

  for (auto _ : state) {
    options.memory = TouchMemory::kNeverTouched;
    absl::StatusOr<GuestTouchResult> base = RunGuestTouch(options);
    options.memory = TouchMemory::kDemandPaged;
    absl::StatusOr<GuestTouchResult> paged =
        base.ok() ? RunGuestTouch(options) : absl::StatusOr<GuestTouchResult>(base.status());
    if (!paged.ok()) {
      state.SkipWithError(paged.status().ToString().c_str());
      break;
    }
    std::string problem = CheckRun(*base, touched, false);
    if (problem.empty()) problem = CheckRun(*paged, touched, true);
    if (!problem.empty()) {
      state.SkipWithError(problem.c_str());
      break;
    }
    const double ns = absl::ToDoubleNanoseconds(paged->touch_time);
    state.SetIterationTime(ns * 1e-9);
    paged_ns += ns;
    baseline_ns += absl::ToDoubleNanoseconds(base->touch_time);
    faults += paged->server_faults;
    AddInto(latency, paged->fault_latency);
    state.SetLabel(absl::StrCat("dirty log: ", DirtyLogSourceName(paged->dirty_log)));
  }
  if (paged_ns == 0 || baseline_ns == 0) return;
  const auto iters = static_cast<double>(state.iterations());
  const double total = static_cast<double>(touched) * iters;
  state.SetItemsProcessed(static_cast<int64_t>(total));
  state.counters["pages_per_s"] = total / (paged_ns * 1e-9);
  state.counters["baseline_pages_per_s"] = total / (baseline_ns * 1e-9);
  state.counters["x_baseline"] = paged_ns / baseline_ns;
  state.counters["p50_us"] = static_cast<double>(latency.PercentileNs(0.5)) / 1e3;
  state.counters["p99_us"] = static_cast<double>(latency.PercentileNs(0.99)) / 1e3;
  state.counters["max_us"] = static_cast<double>(latency.max_ns) / 1e3;
  state.counters["faults_per_iter"] = static_cast<double>(faults) / iters;
}

// 8192 pages (32 MiB) in all, as BM_DemandPaging, split between the vCPUs.
BENCHMARK(BM_GuestDemandPaging)
    ->ArgNames({"vcpus", "pages", "fault_around", "fa_max", "spin_us", "cpl", "dirty_log"})
    ->Args({1, 8192, 15, 255, 0, 3, 2})  // the default configuration: 16 pages, ramp to
    ->Args({2, 8192, 15, 255, 0, 3, 2})  // 256, dirty log auto
    ->Args({1, 8192, 15, 255, 0, 3, 1})  // the same with the bitmap (the default before auto)
    ->Args({2, 8192, 15, 255, 0, 3, 1})
    ->Args({1, 8192, 15, 15, 0, 3, 1})  // before the ramp: 16 pages per fault
    ->Args({2, 8192, 15, 15, 0, 3, 1})
    ->Args({1, 8192, 0, 0, 0, 3, 1})  // before fault-around: one page per round trip
    ->Args({2, 8192, 0, 0, 0, 3, 1})
    ->Args({1, 8192, 63, 63, 0, 3, 1})  // levers (README, "Cost per page")
    ->Args({2, 8192, 63, 63, 0, 3, 1})
    ->Args({1, 8192, 15, 255, 20, 3, 1})
    ->Args({2, 8192, 15, 255, 20, 3, 1})
    ->Args({1, 8192, 15, 255, 0, 0, 2})  // a CPL0 guest (kvm_pvm: emulated, no shadow faults)
    ->Args({2, 8192, 15, 255, 0, 0, 2})
    ->Args({1, 8192, 15, 255, 0, 0, 1})
    ->Args({2, 8192, 15, 255, 0, 0, 1})
    ->Args({1, 8192, 15, 15, 0, 0, 1})
    ->Args({2, 8192, 15, 15, 0, 0, 1})
    ->Args({1, 8192, 15, 255, 0, 3, 0})  // no dirty log on the slots
    ->Args({2, 8192, 15, 255, 0, 3, 0});

}  // namespace
}  // namespace mmuvisor::vmm
