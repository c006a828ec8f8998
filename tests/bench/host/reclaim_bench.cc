// BM_Reclaim2MiB: HostAddressSpace::Reclaim of 2 MiB (512 resident pages) through the hub,
// with one SecondaryMmu (a DmaPort) subscribed and mapping every page, against a bare
// discard of the same 2 MiB (GuestRam::Discard: MADV_REMOVE on the same
// userfaultfd-registered memfd, no hub, no store) measured in the same iterations.
// Target (issue 5): x_baseline <= 1.25 for write_back:0 (pages saved and clean per a
// verified dirty log: the protocol's cost alone). write_back:1 adds the swap-out write of
// every page (always-write-back mode), reported separately.
// Untimed per iteration: every page faulted back (through the page server) and mapped
// into the SecondaryMmu again, before each of the two timed discards.
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "benchmark/benchmark.h"
#include "vmm/host/dma_port.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kPages = 512;  // 2 MiB

// A dirty log that never reports a write (the benchmark's guest only reads), except the
// self-check's probe.
class QuietDirtyLog : public DirtyLog {
 public:
  absl::StatusOr<std::vector<uint64_t>> Fetch(const GuestMemorySlot& slot) override {
    std::vector<uint64_t> bits((slot.size.value / kPageSize + 63) / 64, 0);
    if (probe_pending_) bits[0] = 1;
    probe_pending_ = false;
    return bits;
  }
  std::string Describe() const override { return "bench-dirty-log"; }
  bool probe_pending_ = false;
};

void Repopulate(HostAddressSpace& space, DmaPort& dma) {
  uint8_t byte = 0;
  for (uint64_t p = 0; p < kPages; ++p) {
    byte ^= *static_cast<volatile uint8_t*>(space.PagePointer(p));  // fault back in
  }
  benchmark::DoNotOptimize(byte);
  uint8_t b[8];
  for (uint64_t p = 0; p < kPages; ++p) {
    if (!dma.Read(Gpa{p * kPageSize}, absl::MakeSpan(b)).ok()) std::abort();  // map it
  }
}

void BM_Reclaim2MiB(benchmark::State& state) {
  const bool write_back = state.range(0) != 0;
  QuietDirtyLog log;
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.fault_around_pages = 31;
  if (!write_back) {
    o.dirty_log = &log;
    o.dirty_probe = [&log](const GuestMemorySlot&) {
      log.probe_pending_ = true;
      return absl::OkStatus();
    };
  }
  auto space = HostAddressSpace::Create(o);
  if (!space.ok()) return state.SkipWithError(space.status().ToString().c_str());
  auto dma = DmaPort::Create(**space);
  if (!dma.ok()) return state.SkipWithError(dma.status().ToString().c_str());
  for (uint64_t p = 0; p < kPages; ++p) {
    std::memset((*space)->PagePointer(p), static_cast<int>(p + 1), kPageSize);
  }
  if (!(*space)->Reclaim(PageRange{0, kPages}).ok()) return state.SkipWithError("first reclaim");

  using Clock = std::chrono::steady_clock;
  double hub_seconds = 0, bare_seconds = 0;
  uint64_t written = 0;
  for (auto _ : state) {
    Repopulate(**space, **dma);
    const auto t0 = Clock::now();
    absl::StatusOr<ReclaimResult> r = (*space)->Reclaim(PageRange{0, kPages});
    const auto t1 = Clock::now();
    if (!r.ok() || r->reclaimed != kPages) return state.SkipWithError("reclaim");
    written += r->written_back;

    Repopulate(**space, **dma);
    const auto t2 = Clock::now();
    if (!(*space)->ram()->Discard(0, kPages).ok()) return state.SkipWithError("discard");
    const auto t3 = Clock::now();

    const double hub = std::chrono::duration<double>(t1 - t0).count();
    hub_seconds += hub;
    bare_seconds += std::chrono::duration<double>(t3 - t2).count();
    state.SetIterationTime(hub);
  }
  const double iterations = static_cast<double>(state.iterations());
  state.counters["x_baseline"] = bare_seconds > 0 ? hub_seconds / bare_seconds : 0;
  state.counters["baseline_us"] = bare_seconds / iterations * 1e6;
  state.counters["hub_us"] = hub_seconds / iterations * 1e6;
  state.counters["written_per_iter"] = static_cast<double>(written) / iterations;
  state.SetBytesProcessed(state.iterations() * static_cast<int64_t>(kPages * kPageSize));
}
BENCHMARK(BM_Reclaim2MiB)
    ->ArgName("write_back")
    ->Arg(0)
    ->Arg(1)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace mmuvisor::vmm
