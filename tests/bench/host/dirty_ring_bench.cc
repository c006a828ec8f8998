// BM_DirtyTracking: KVM's dirty ring against its dirty bitmap (the baseline), measured in
// the same iterations, alternating which goes first. Each side is a Machine
// (MachineConfig::dirty_log = kBitmap / kRing, default ring size) running the `touch`
// guest on 1 or 2 vCPUs (state.range(0)): the host writes every page of the range first
// (resident memfd pages, so no page-server fault is timed), then each vCPU stores one byte
// into each of its kPagesPerVcpu pages.
//   touch    the guest's dirtying phase, host clock from the first vCPU's SYNC(START) to
//            the last vCPU's SYNC(TOUCHED): KVM's write faults with dirty logging, plus for
//            the ring its pushes and KVM_EXIT_DIRTY_RING_FULL exits (harvested on the vCPU
//            threads; kPagesPerVcpu > the ring's 4096 entries, so there are some).
//   harvest  HostAddressSpace::HarvestDirtyLog() after the run: what every reclaim window
//            (and reclaim-driver pass) pays with all those pages dirty: KVM_GET_DIRTY_LOG
//            of the slot (and its re-protection) vs walking the rings, KVM_RESET_DIRTY_RINGS
//            (re-protection of the reset pages) and the per-slot bitmap hand-out.
//   idle     the same call again at once: the cost of a window's harvest when nothing was
//            written since (bitmap: the whole slot's bitmap copied and scanned; ring: one
//            flag read per vCPU).
// Counters: <side>_<phase>_us (means) and x_<phase> = ring / bitmap (< 1: ring cheaper).
// The iteration time (manual) is the ring's touch. Skips without /dev/kvm or the ring.
#include <array>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/strings/str_cat.h"
#include "benchmark/benchmark.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/mutex.h"
#include "touch/touch_shared.h"
#include "vmm/host/host_address_space.h"
#include "vmm/kvm/dirty_ring.h"
#include "vmm/machine/machine.h"

// The touch guest's ELF, embedded in mmuvisor_guest_touch_run (tests/vmm/paging).
extern "C" const uint8_t mmv_touch_image_begin[];
extern "C" const uint8_t mmv_touch_image_end[];

namespace mmuvisor::vmm {
namespace {

using Clock = std::chrono::steady_clock;
constexpr uint64_t kPagesPerVcpu = 8192;  // 32 MiB per vCPU

// START of the first vCPU to TOUCHED of the last (vCPU threads).
class TouchClock : public MachineObserver {
 public:
  void OnSync(uint32_t /*vcpu*/, uint64_t stage, absl::Span<const uint64_t> /*values*/) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    const Clock::time_point now = Clock::now();
    MutexLock lock(&mu_);
    if (stage == TOUCH_SYNC_START && (starts_++ == 0 || now < first_start_)) first_start_ = now;
    if (stage == TOUCH_SYNC_TOUCHED && (touched_++ == 0 || now > last_touched_)) {
      last_touched_ = now;
    }
  }
  // REQUIRES: the run is over. Negative if a vCPU did not report both.
  double Seconds(uint32_t vcpus) const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    if (starts_ != vcpus || touched_ != vcpus) return -1;
    return std::chrono::duration<double>(last_touched_ - first_start_).count();
  }

 private:
  mutable Mutex mu_;
  uint32_t starts_ ABSL_GUARDED_BY(mu_) = 0, touched_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point first_start_ ABSL_GUARDED_BY(mu_), last_touched_ ABSL_GUARDED_BY(mu_);
};

struct Sample {
  double touch = 0, harvest = 0, idle = 0;  // seconds
  uint64_t full_exits = 0;
};

absl::StatusOr<Sample> RunOnce(DirtyLogSource source, uint32_t vcpus) {
  TouchClock clock;
  MachineConfig config;
  const uint64_t pages = kPagesPerVcpu * vcpus;
  config.ram_size = ByteSize{(pages * kPageSize + (8ull << 20) + (2ull << 20) - 1) &
                             ~((2ull << 20) - 1)};
  config.vcpus = vcpus;
  config.timeout = absl::Seconds(300);
  config.observer = &clock;
  config.dirty_log = source;
  absl::StatusOr<std::unique_ptr<Machine>> created = Machine::Create(
      config, absl::Span<const uint8_t>(mmv_touch_image_begin, static_cast<size_t>(
                                                                   mmv_touch_image_end -
                                                                   mmv_touch_image_begin)));
  if (!created.ok()) return created.status();
  Machine& m = **created;
  if (m.host().dirty_tracking().mode != DirtyTrackingMode::kDirtyLog) {
    return absl::FailedPreconditionError(m.host().dirty_tracking().reason);
  }
  mmv_boot_info info{};
  if (absl::Status s = m.ReadGuest(Gpa{MMV_BOOT_INFO_GPA},
                                   absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&info),
                                                       sizeof(info)));
      !s.ok()) {
    return s;
  }
  const uint64_t first = (info.free_start + kPageSize - 1) / kPageSize * kPageSize;
  std::array<uint64_t, 8> args{};
  args[TOUCH_ARG_FIRST_GPA] = first;
  args[TOUCH_ARG_PAGES] = kPagesPerVcpu;
  args[TOUCH_ARG_FLAGS] = TOUCH_F_FILLED;
  if (absl::Status s = m.WriteGuest(
          Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args)},
          absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(args.data()), sizeof(args)));
      !s.ok()) {
    return s;
  }
  for (uint64_t p = 0; p < pages; ++p) {
    const uint64_t word = touch_word(first + p * kPageSize);
    if (absl::Status s = m.WriteGuest(Gpa{first + p * kPageSize},
                                      absl::Span<const uint8_t>(
                                          reinterpret_cast<const uint8_t*>(&word), sizeof(word)));
        !s.ok()) {
      return s;
    }
  }
  // Nothing logged yet counts: the boot writes and the self-check are drained here.
  if (absl::Status s = m.host().HarvestDirtyLog(); !s.ok()) return s;
  const RunResult run = m.Run();
  if (run.verdict != Verdict::kClean) {
    return absl::InternalError(absl::StrCat("touch run: ", run.summary));
  }
  Sample sample;
  sample.touch = clock.Seconds(vcpus);
  if (sample.touch < 0) return absl::InternalError("touch run: SYNCs missing");
  Clock::time_point t0 = Clock::now();
  if (absl::Status s = m.host().HarvestDirtyLog(); !s.ok()) return s;
  Clock::time_point t1 = Clock::now();
  if (absl::Status s = m.host().HarvestDirtyLog(); !s.ok()) return s;
  Clock::time_point t2 = Clock::now();
  sample.harvest = std::chrono::duration<double>(t1 - t0).count();
  sample.idle = std::chrono::duration<double>(t2 - t1).count();
  if (m.dirty_ring() != nullptr) sample.full_exits = m.dirty_ring()->stats().full_exits;
  return sample;
}

void BM_DirtyTracking(benchmark::State& state) {
  const uint32_t vcpus = static_cast<uint32_t>(state.range(0));
  {
    absl::StatusOr<KvmSystem> system = KvmSystem::Open();
    if (!system.ok()) return state.SkipWithError(std::string(system.status().message()).c_str());
    absl::StatusOr<KvmVm> vm = system->CreateVm();
    absl::StatusOr<DirtyRingSupport> support =
        vm.ok() ? ProbeDirtyRing(*vm) : absl::StatusOr<DirtyRingSupport>(vm.status());
    if (!support.ok() || !support->offered()) {
      return state.SkipWithError("the dirty ring is not offered by this KVM");
    }
  }
  Sample bitmap_sum, ring_sum;
  uint64_t n = 0;
  for (auto _ : state) {
    const bool ring_first = (n % 2) == 1;
    absl::StatusOr<Sample> a = RunOnce(ring_first ? DirtyLogSource::kRing : DirtyLogSource::kBitmap,
                                       vcpus);
    absl::StatusOr<Sample> b = RunOnce(ring_first ? DirtyLogSource::kBitmap : DirtyLogSource::kRing,
                                       vcpus);
    if (!a.ok() || !b.ok()) {
      return state.SkipWithError((a.ok() ? b.status() : a.status()).ToString().c_str());
    }
    const Sample& bitmap = ring_first ? *b : *a;
    const Sample& ring = ring_first ? *a : *b;
    for (auto [sum, s] : {std::pair{&bitmap_sum, &bitmap}, std::pair{&ring_sum, &ring}}) {
      sum->touch += s->touch;
      sum->harvest += s->harvest;
      sum->idle += s->idle;
      sum->full_exits += s->full_exits;
    }
    state.SetIterationTime(ring.touch);
    ++n;
  }
  if (n == 0) return;
  const double us = 1e6 / static_cast<double>(n);
  state.counters["bitmap_touch_us"] = bitmap_sum.touch * us;
  state.counters["ring_touch_us"] = ring_sum.touch * us;
  state.counters["x_touch"] = ring_sum.touch / bitmap_sum.touch;
  state.counters["bitmap_harvest_us"] = bitmap_sum.harvest * us;
  state.counters["ring_harvest_us"] = ring_sum.harvest * us;
  state.counters["x_harvest"] = ring_sum.harvest / bitmap_sum.harvest;
  state.counters["bitmap_idle_us"] = bitmap_sum.idle * us;
  state.counters["ring_idle_us"] = ring_sum.idle * us;
  state.counters["x_idle"] = ring_sum.idle / bitmap_sum.idle;
  state.counters["ring_full_exits"] =
      static_cast<double>(ring_sum.full_exits) / static_cast<double>(n);
  state.SetItemsProcessed(static_cast<int64_t>(n * kPagesPerVcpu * vcpus));
}
BENCHMARK(BM_DirtyTracking)
    ->ArgName("vcpus")
    ->Arg(1)
    ->Arg(2)
    ->UseManualTime()
    ->Unit(benchmark::kMicrosecond)
    ->Iterations(10);

}  // namespace
}  // namespace mmuvisor::vmm
