#include "bench/paging/guest_touch_run.h"

#include <array>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/types/span.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/mutex.h"
#include "touch/touch_shared.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/reclaim.h"
#include "vmm/machine/machine.h"
#include "vmm/memory/address.h"

// The touch guest's ELF, embedded by tests/vmm/paging/CMakeLists.txt (touch_image.S).
extern "C" const uint8_t mmv_touch_image_begin[];
extern "C" const uint8_t mmv_touch_image_end[];

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kPage = TOUCH_PAGE;
constexpr uint64_t k2MiB = 2ull << 20;

absl::Span<const uint8_t> TouchImage() {
  return absl::Span<const uint8_t>(
      mmv_touch_image_begin, static_cast<size_t>(mmv_touch_image_end - mmv_touch_image_begin));
}

// The guest's SYNCs, on vCPU threads: the timing marks and the per-vCPU counts.
class TouchObserver : public MachineObserver {
  using Clock = std::chrono::steady_clock;

 public:
  void OnSync(uint32_t /*vcpu*/, uint64_t stage, absl::Span<const uint64_t> values) override
      ABSL_LOCKS_EXCLUDED(mu_) {
    const Clock::time_point now = Clock::now();
    const uint64_t v1 = values.size() > 0 ? values[0] : 0;
    MutexLock lock(&mu_);
    switch (stage) {
      case TOUCH_SYNC_START:
        if (starts_ == 0 || now < first_start_) first_start_ = now;
        ++starts_;
        break;
      case TOUCH_SYNC_TOUCHED:
        if (touched_reports_ == 0 || now > last_touched_) last_touched_ = now;
        ++touched_reports_;
        touched_ += v1;
        break;
      case TOUCH_SYNC_VERIFIED:
        verified_ += v1;
        bad_ += values.size() > 1 ? values[1] : 0;
        if (first_bad_gpa_ == 0 && values.size() > 2) first_bad_gpa_ = values[2];
        break;
      default:
        break;
    }
  }

  // REQUIRES: the vCPUs have stopped (Run() returned). False unless every vCPU sent
  // START and TOUCHED.
  bool Fill(uint32_t vcpus, GuestTouchResult& out) const ABSL_LOCKS_EXCLUDED(mu_) {
    MutexLock lock(&mu_);
    out.pages_touched = touched_;
    out.pages_verified = verified_;
    out.pages_bad = bad_;
    out.first_bad_gpa = first_bad_gpa_;
    if (starts_ != vcpus || touched_reports_ != vcpus) return false;
    out.touch_time = absl::FromChrono(last_touched_ - first_start_);
    return true;
  }

 private:
  mutable Mutex mu_;
  uint32_t starts_ ABSL_GUARDED_BY(mu_) = 0;
  uint32_t touched_reports_ ABSL_GUARDED_BY(mu_) = 0;
  Clock::time_point first_start_ ABSL_GUARDED_BY(mu_);
  Clock::time_point last_touched_ ABSL_GUARDED_BY(mu_);
  uint64_t touched_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t verified_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t bad_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t first_bad_gpa_ ABSL_GUARDED_BY(mu_) = 0;
};

absl::StatusOr<mmv_boot_info> ReadBootInfo(Machine& machine) {
  mmv_boot_info info{};
  absl::Status s = machine.ReadGuest(
      Gpa{MMV_BOOT_INFO_GPA}, absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&info), sizeof(info)));
  if (!s.ok()) return s;
  return info;
}

absl::Status WriteBootArgs(Machine& machine, const std::array<uint64_t, 8>& args) {
  return machine.WriteGuest(
      Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args)},
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(args.data()),
                                sizeof(uint64_t) * args.size()));
}

// Writes touch_word(gpa) at offset 0 of every page of [first, first + pages) through the
// space (so dirty tracking sees it), then reclaims all of them to the swap store.
absl::StatusOr<uint64_t> FillAndReclaim(Machine& machine, uint64_t first_gpa, uint64_t pages) {
  for (uint64_t p = 0; p < pages; ++p) {
    const uint64_t gpa = first_gpa + p * kPage;
    const uint64_t word = touch_word(gpa);
    absl::Status s = machine.WriteGuest(
        Gpa{gpa}, absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(&word), sizeof(word)));
    if (!s.ok()) return s;
  }
  HostAddressSpace& space = machine.host();
  absl::StatusOr<PageRange> range = space.PagesOf(Gpa{first_gpa}, ByteSize{pages * kPage});
  if (!range.ok()) return range.status();
  absl::StatusOr<ReclaimResult> reclaimed = Reclaim(space, *range);
  if (!reclaimed.ok()) return reclaimed.status();
  if (reclaimed->reclaimed != pages) {
    return absl::InternalError(absl::StrCat(
        "reclaim of ", pages, " pages at gpa 0x", absl::Hex(first_gpa), " discarded only ",
        reclaimed->reclaimed, " (save failures ", reclaimed->save_failures, ": ",
        reclaimed->first_save_error.ToString(), ")"));
  }
  return reclaimed->reclaimed;
}

}  // namespace

LatencyHistogram::Snapshot SnapshotDelta(const LatencyHistogram::Snapshot& after,
                                         const LatencyHistogram::Snapshot& before) {
  LatencyHistogram::Snapshot d;
  for (int i = 0; i < LatencyHistogram::kBuckets; ++i) {
    d.buckets[i] = after.buckets[i] - before.buckets[i];
  }
  d.count = after.count - before.count;
  d.sum_ns = after.sum_ns - before.sum_ns;
  d.max_ns = after.max_ns;
  return d;
}

absl::StatusOr<GuestTouchResult> RunGuestTouch(const GuestTouchOptions& options) {
  if (options.vcpus == 0 || options.pages_per_vcpu == 0) {
    return absl::InvalidArgumentError("RunGuestTouch: vcpus and pages_per_vcpu must be > 0");
  }
  if (absl::StatusOr<KvmSystem> kvm = KvmSystem::Open(options.kvm_path); !kvm.ok()) {
    return absl::FailedPreconditionError(
        absl::StrCat("needs ", options.kvm_path, ": ", kvm.status().message()));
  }
  const uint64_t pages = options.pages_per_vcpu * options.vcpus;
  // Image and low memory below 2 MiB; the range; the stacks; rounded up to 2 MiB.
  const uint64_t ram_bytes =
      ((2 * k2MiB + pages * kPage + options.vcpus * MMV_STACK_SIZE) + k2MiB - 1) / k2MiB * k2MiB;

  TouchObserver observer;  // outlives the machine
  MachineConfig config;
  config.kvm_path = options.kvm_path;
  config.ram_size = ByteSize{ram_bytes};
  config.vcpus = options.vcpus;
  config.privilege = options.privilege;
  config.dirty_log = options.dirty_log;
  config.timeout = options.timeout;
  config.observer = &observer;
  config.host.page_server_threads = static_cast<int>(options.vcpus);
  config.host.fault_around_pages = options.fault_around_pages;
  config.host.fault_around_max_pages = options.fault_around_max_pages;
  config.host.page_server_spin_ns = options.spin_ns;
  for (uint32_t i = 0; options.pin && i < options.vcpus; ++i) {
    config.host.page_server_cpus.push_back(static_cast<int>(i));
  }
  absl::StatusOr<std::unique_ptr<Machine>> created = Machine::Create(config, TouchImage());
  if (!created.ok()) return created.status();
  Machine& machine = **created;
  HostAddressSpace& space = machine.host();

  absl::StatusOr<mmv_boot_info> info = ReadBootInfo(machine);
  if (!info.ok()) return info.status();
  const uint64_t first_gpa = (info->free_start + kPage - 1) / kPage * kPage;
  if (first_gpa + pages * kPage > info->free_end) {
    return absl::InvalidArgumentError(absl::StrCat(
        "RunGuestTouch: ", pages, " pages from gpa 0x", absl::Hex(first_gpa),
        " do not fit the free memory [0x", absl::Hex(info->free_start), ", 0x",
        absl::Hex(info->free_end), ")"));
  }
  std::array<uint64_t, 8> args{};
  args[TOUCH_ARG_FIRST_GPA] = first_gpa;
  args[TOUCH_ARG_PAGES] = options.pages_per_vcpu;
  args[TOUCH_ARG_FLAGS] = options.memory == TouchMemory::kDemandPaged ? TOUCH_F_FILLED : 0;
  if (absl::Status s = WriteBootArgs(machine, args); !s.ok()) return s;

  GuestTouchResult result;
  result.dirty_log = machine.dirty_log_source();
  PageServer* server = space.page_server();
  if (options.memory == TouchMemory::kDemandPaged) {
    absl::StatusOr<uint64_t> reclaimed = FillAndReclaim(machine, first_gpa, pages);
    if (!reclaimed.ok()) return reclaimed.status();
    result.reclaimed = *reclaimed;
  } else {
    // The baseline: no userfaultfd. No guest runs yet (Shutdown's requirement); the space's
    // Teardown shuts it down again, which is a no-op.
    server->Shutdown();
  }

  const PageServerStats stats_before = server->Stats();
  const LatencyHistogram::Snapshot latency_before = server->FaultLatency();
  const RunResult run = machine.Run();
  const PageServerStats stats_after = server->Stats();
  if (run.verdict != Verdict::kClean && run.verdict != Verdict::kGuestFailed) {
    return absl::InternalError(absl::StrCat("touch guest run ended ", VerdictName(run.verdict),
                                            ": ", run.summary));
  }
  if (!observer.Fill(options.vcpus, result)) {
    return absl::InternalError(
        absl::StrCat("touch guest did not report START and TOUCHED on every vCPU: ",
                     VerdictName(run.verdict), ": ", run.summary));
  }
  // kGuestFailed with every SYNC in: the guest found bad pages (pages_bad says how many).
  if (run.verdict == Verdict::kGuestFailed && result.pages_bad == 0) {
    return absl::InternalError(absl::StrCat("touch guest failed: ", run.summary));
  }
  result.swap_ins = PagesFromStore(stats_after) - PagesFromStore(stats_before);
  result.server_faults = stats_after.faults - stats_before.faults;
  if (options.memory == TouchMemory::kDemandPaged) {
    // A fault's latency is recorded after its vCPU resumed (page_server.h): wait briefly
    // until every fault of the run is in.
    const absl::Time deadline = absl::Now() + absl::Seconds(2);
    LatencyHistogram::Snapshot latency_after = server->FaultLatency();
    while (latency_after.count - latency_before.count < result.server_faults &&
           absl::Now() < deadline) {
      absl::SleepFor(absl::Milliseconds(1));
      latency_after = server->FaultLatency();
    }
    result.fault_latency = SnapshotDelta(latency_after, latency_before);
  }
  return result;
}

}  // namespace mmuvisor::vmm
