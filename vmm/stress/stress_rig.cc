#include "vmm/stress/stress_rig.h"

#include <algorithm>
#include <memory>
#include <optional>
#include <utility>

#include "absl/time/clock.h"
#include "mmu/mirror.h"
#include "notifier/base/page.h"
#include "notifier/base/random.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/reclaim.h"
#include "vmm/host/reclaim_driver.h"
#include "vmm/stress/fault_injection.h"
#include "vmm/stress/host_ops.h"
#include "vmm/stress/host_workload.h"
#include "vmm/stress/kvm_device_hooks.h"
#include "vmm/stress/progress.h"
#include "vmm/stress/traced_mmu.h"

namespace mmuvisor::vmm::stress {
namespace {

uint64_t WindowsOpened(const HostStats& s) {
  return s.reclaims + s.discards + s.migrates + s.protects + s.unmaps + s.oom_reaps +
         s.oom_eagain_retries;
}

// The rig's parts and the order they are built, started, stopped and read in (the header
// says what each is). Declared in the order they may be destroyed in reverse: nothing is
// destroyed before the space's teardown (the destructor's first step).
class StressRig {
 public:
  StressRig(const StressOptions& options, StressGuest& guest);
  ~StressRig();
  StressRig(const StressRig&) = delete;
  StressRig& operator=(const StressRig&) = delete;

  // REQUIRES: guest.Create() succeeded.
  absl::Status Build();
  absl::Status Start(std::FILE* progress, bool tty);
  // Until the guest is done or the deadline; then everything stops (README "Bounded run
  // time"): no new host windows, the guest stopped, the device aborted, all joined.
  void RunToTheEnd();
  absl::StatusOr<HostStressOutcome> Finish();

 private:
  DelayOptions DmaDelays() const;
  absl::Status BuildDmaPath(const DelayOptions& delays);
  ProgressSample Sample() const;
  void StopHostOperations();
  void Teardown();

  const StressOptions& options_;
  StressGuest& guest_;
  HostAddressSpace* space_ = nullptr;  // the guest's, once built
  TraceLog trace_;
  LatencyHistogram fault_latency_;
  DmaTrace dma_trace_;
  // The time bound: faults give up in time, delays end at the deadline.
  bool deadline_at_duration_ = false;  // the run is stopped at --duration
  bool timeout_cut_ = false, delay_cut_ = false;
  absl::Duration wanted_timeout_, fault_timeout_, delay_, limit_;
  std::optional<StartFaultSubscription> injector_;
  std::unique_ptr<HostDeviceHooks> cpu_hooks_, device_hooks_;
  std::unique_ptr<TracedSecondaryMmu> dma_mmu_;
  std::unique_ptr<mmu::Mirror> mirror_;
  bool mirror_attached_ = false;
  std::unique_ptr<dma::DmaMemory> dma_memory_;
  std::unique_ptr<dma::DmaEngine> engine_;
  std::unique_ptr<ReclaimDriver> reclaimd_;
  std::unique_ptr<HostOpDriver> host_ops_;
  std::unique_ptr<MemslotChurn> churn_;
  int layout_observer_ = 0;  // the DMA MMU's memslot observer; 0: none
  std::optional<ProgressPrinter> printer_;
  absl::Time start_;
  bool by_deadline_ = false;
};

StressRig::StressRig(const StressOptions& options, StressGuest& guest)
    : options_(options),
      guest_(guest),
      trace_(!options.trace_path.empty()),
      dma_trace_(trace_, "dma fault", "dma retry") {
  trace_.NameThisThread("stress main");
  wanted_timeout_ =
      options.fault_timeout_given ? options.fault_timeout : guest.default_fault_timeout();
  // The deadline applies to every --duration run, and to a --rounds run whose guest has
  // no grace beyond it (host threads stop at --duration whatever --rounds says).
  deadline_at_duration_ = options.rounds == 0 || guest.rounds_grace() == absl::ZeroDuration();
  fault_timeout_ = deadline_at_duration_
                       ? BoundedFaultTimeout(wanted_timeout_, options.duration,
                                             options.policy == notifier::Policy::kLegacyUnpaired,
                                             &timeout_cut_)
                       : wanted_timeout_;
  delay_ = BoundedDelay(options.delay, fault_timeout_, &delay_cut_);
  limit_ = options.rounds > 0 ? options.duration + guest.rounds_grace() : options.duration;
}

StressRig::~StressRig() {
  StopHostOperations();
  if (printer_) printer_->Stop();
  Teardown();
}

absl::Status StressRig::Build() {
  space_ = &guest_.space();
  notifier::NotifierSubscriptions& hub = space_->hub();
  // The injector first: under the legacy policy a failed start skips the ends of the
  // subscriptions after it too, which is the leak the must-fail run shows.
  if (options_.eagain_probability > 0) {
    injector_.emplace(
        StartFaults{.eagain_probability = options_.eagain_probability, .seed = options_.seed},
        "eagain-injector");
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*injector_));
  }
  cpu_hooks_ = std::make_unique<HostDeviceHooks>(*space_);
  device_hooks_ = std::make_unique<HostDeviceHooks>(*space_);
  if (options_.skip_dma_retry_check_for_testing) {
    MMUVISOR_RETURN_IF_ERROR(device_hooks_->MapDeviceView());
  }
  MMUVISOR_RETURN_IF_ERROR(guest_.Wire({trace_, fault_latency_, fault_timeout_, *cpu_hooks_}));
  MMUVISOR_RETURN_IF_ERROR(BuildDmaPath(DmaDelays()));
  dma::DmaEngineOptions engine_options;
  engine_options.ram_size = space_->num_pages() * kPageSize;
  engine_options.ram_aliases = options_.aliases;
  engine_options.alias_stride = guest_.alias_stride();
  if (trace_.enabled()) {
    engine_options.on_thread_start = [this] { trace_.NameThisThread("DMA engine"); };
  }
  engine_ = std::make_unique<dma::DmaEngine>(*dma_memory_, engine_options);
  MMUVISOR_RETURN_IF_ERROR(guest_.Connect(*engine_));
  if (options_.ops.reclaim > 0) {
    ReclaimDriverOptions reclaim;
    reclaim.target_resident_fraction = options_.resident_target;
    reclaim.max_pages_per_second =
        static_cast<uint64_t>(options_.ops.reclaim * static_cast<double>(options_.op_pages)) + 1;
    reclaimd_ = std::make_unique<ReclaimDriver>(*space_, reclaim);
  }
  host_ops_ = std::make_unique<HostOpDriver>(options_, guest_.free_start(), guest_.free_end(),
                                             *space_, &trace_);
  if (options_.memslot_churn > 0) {
    const std::optional<SpareSlot> spare = guest_.spare_slot();
    if (!spare.has_value()) {
      return absl::InvalidArgumentError(absl::StrCat(
          "--memslot-churn ", options_.memslot_churn, ": this guest has no spare slot"));
    }
    churn_ = std::make_unique<MemslotChurn>(*space_, *spare, options_.memslot_churn, &trace_);
  }
  return absl::OkStatus();
}

DelayOptions StressRig::DmaDelays() const {
  DelayOptions delays{options_.delay_probability, delay_, Mix64(options_.seed),
                      !options_.skip_dma_retry_check_for_testing};
  if (deadline_at_duration_) delays.delays_end = absl::Now() + options_.duration;
  if (!options_.force_dma_fault_races_for_testing) return delays;
  // The must-fail control's race, every time: reclaim the faulting page inside the DMA
  // fault's window, data pages only (MemstressDescriptorFrames says why). The DMA MMU's
  // frames are gpa >> 12; the mirror's are host address >> 12.
  const std::vector<uint64_t> descriptors =
      MemstressDescriptorFrames(guest_.free_start(), guest_.free_end(), options_.vcpus);
  const uint64_t frame_base =
      options_.dma_path == DmaPath::kMirror ? space_->AddressOf(0) / kPageSize : 0;
  delays.invalidate_in_window = [space = space_, descriptors, frame_base](mmu::Gfn frame) {
    const uint64_t gfn = frame - frame_base;
    if (std::find(descriptors.begin(), descriptors.end(), gfn) != descriptors.end()) return;
    absl::StatusOr<PageRange> page = space->PagesOf(Gpa{gfn * kPageSize}, ByteSize{kPageSize});
    // Reclaim, not Migrate: RAM is a memfd, and a migrate faults the page back in at the
    // same offset, so a translation kept across it still reaches the right bytes. After
    // a reclaim the offset is a hole until the guest's next touch swaps it in: what the
    // device then reads or writes through the stale translation is lost.
    if (page.ok()) (void)vmm::Reclaim(*space, *page);  // errors: an impossible range only
  };
  return delays;
}

absl::Status StressRig::BuildDmaPath(const DelayOptions& delays) {
  notifier::NotifierSubscriptions& hub = space_->hub();
  const bool skip = options_.skip_dma_retry_check_for_testing;
  if (options_.dma_path == DmaPath::kSecondary) {
    mmu::SecondaryMmuOptions mmu_options;
    mmu_options.name = "dma-mmu";
    mmu_options.retry_timeout = fault_timeout_;
    dma_mmu_ = std::make_unique<TracedSecondaryMmu>(*space_, mmu_options, &trace_, 1);
    MMUVISOR_RETURN_IF_ERROR(dma_mmu_->SetLayout(space_->SecondaryLayout()));
    // Memslot changes (churn) reach the device's layout before any window reopens.
    layout_observer_ = space_->AddMemslotObserver([mmu = dma_mmu_.get()](const MemslotTable& t) {
      return mmu->SetLayout(HostAddressSpace::SecondaryLayoutOf(t));
    });
    dma_mmu_->SetFaultHooksForTesting(MakeDelayHooks(delays));
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*dma_mmu_));
    auto memory = std::make_unique<dma::SecondaryMmuMemory>(*dma_mmu_, &fault_latency_, skip);
    memory->set_hooks(device_hooks_.get());
    if (trace_.enabled()) memory->set_trace(&dma_trace_);
    dma_memory_ = std::move(memory);
    return absl::OkStatus();
  }
  mmu::MirrorOptions mirror_options;
  mirror_options.name = "dma-mirror";
  mirror_options.retry_timeout = fault_timeout_;
  mirror_ = std::make_unique<mmu::Mirror>(*space_, mirror_options);
  mirror_->SetFaultHooksForTesting(MakeDelayHooks(delays));
  MMUVISOR_RETURN_IF_ERROR(
      mirror_->Attach(hub, space_->AddressOf(0), space_->num_pages() * kPageSize));
  mirror_attached_ = true;
  auto memory = std::make_unique<dma::MirrorMemory>(*mirror_, space_->AddressOf(0));
  memory->set_hooks(device_hooks_.get());
  dma_memory_ = std::move(memory);
  return absl::OkStatus();
}

ProgressSample StressRig::Sample() const {
  const HostStats s = space_->stats();
  const GuestProgress g = guest_.Progress();
  const dma::DmaMemoryStats d = dma_memory_->stats();
  ProgressSample p;
  p.elapsed_s = absl::ToDoubleSeconds(absl::Now() - start_);
  p.pages_verified = g.pages_verified;
  p.invalidations = WindowsOpened(s);
  p.faults = d.faults + g.faults;
  p.retries = d.access_retries + g.retries;
  p.swap_ins = s.swapped_in;
  p.mismatches = g.mismatches;
  p.resident_fraction = ResidentFraction(*space_);
  return p;
}

absl::Status StressRig::Start(std::FILE* progress, bool tty) {
  start_ = absl::Now();
  if (progress != nullptr && options_.progress) {
    printer_.emplace(progress, tty, [this] { return Sample(); });
  }
  engine_->Start();
  MMUVISOR_RETURN_IF_ERROR(guest_.Start());
  if (reclaimd_) {
    MMUVISOR_RETURN_IF_ERROR(reclaimd_->Start());
  }
  host_ops_->Start();
  if (churn_) churn_->Start();
  if (printer_) printer_->Start();
  return absl::OkStatus();
}

void StressRig::StopHostOperations() {
  if (host_ops_) host_ops_->Stop();
  if (churn_) churn_->Stop();
  // Joins its thread, so its last window has closed before the in-progress counts are
  // read (read with it running, one KVM run FAILed naming dma-mmu.in_progress=1 and
  // hub.open_windows=1: `--guest hostile --mem 32M --seed 10 --duration 2s`, 1 of 9).
  if (reclaimd_) reclaimd_->Stop();
}

void StressRig::RunToTheEnd() {
  const absl::Time end = start_ + limit_;
  while (!guest_.Done() && absl::Now() < end) absl::SleepFor(absl::Milliseconds(20));
  by_deadline_ = !guest_.Done();
  // A guest that finished its --rounds early still leaves the churn one whole cycle (an
  // add, a move and a delete), so every kind of change ran whatever the guest's speed.
  while (!by_deadline_ && churn_ && absl::Now() < end) {
    const MemslotChurnStats churn = churn_->stats();
    if (churn.deletes > 0 || churn.failures > 0) break;
    absl::SleepFor(absl::Milliseconds(20));
  }
  if (by_deadline_) {
    StopHostOperations();  // first: with no new windows, faults racing the storm end now
    guest_.Stop(end + RunSlack(options_.duration) / 2);
  }
  // The device stops at its next page piece: the vCPUs are stopping or stopped.
  engine_->Abort();
  guest_.Join();
  StopHostOperations();
  if (printer_) printer_->Stop();
}

void StressRig::Teardown() {
  if (space_ == nullptr) return;
  if (mirror_attached_) (void)mirror_->Detach();
  mirror_attached_ = false;
  if (layout_observer_ != 0) space_->RemoveMemslotObserver(layout_observer_);
  layout_observer_ = 0;
  space_->Teardown();
}

absl::StatusOr<HostStressOutcome> StressRig::Finish() {
  // Collect, while every subscription is still registered; the guest's MMU's counts come
  // before the DMA path's, then the hub's.
  StressRun run;
  run.SetHeader(options_, guest_.mode(), start_);
  run.result.bound_s = absl::ToDoubleSeconds(limit_ + RunSlack(options_.duration));
  run.result.stopped_by_deadline = by_deadline_;
  run.AddCuts(options_,
              {.timeout_name = "fault timeout",
               .timeout_cut = timeout_cut_,
               .wanted_timeout = wanted_timeout_,
               .used_timeout = fault_timeout_,
               .delay_cut = delay_cut_,
               .delay = delay_,
               .forced = "a reclaim of each DMA data fault's page"},
              *engine_);
  const HostStats host = space_->stats();
  run.result.invalidations = WindowsOpened(host);
  run.result.eagain = host.oom_eagain_retries;
  run.result.host_ops = host.reclaims + host.discards;
  run.AddHostOps(*host_ops_);
  if (reclaimd_) run.AddReclaimDriver(*reclaimd_);
  run.result.swap_ins = host.swapped_in;
  run.result.swap_outs = host.written_back;
  const DirtyTrackingChoice& dirty = space_->dirty_tracking();
  run.result.dirty_reason = dirty.reason;
  // The guest names a log's source (KvmGuest::Collect); host threads have none.
  run.result.dirty_log = dirty.mode == DirtyTrackingMode::kDirtyLog ? "bitmap" : "write-back";
  run.result.aliases = options_.aliases;
  if (churn_) {
    const MemslotChurnStats churn = churn_->stats();
    run.result.churn_adds = churn.adds;
    run.result.churn_moves = churn.moves;
    run.result.churn_deletes = churn.deletes;
    run.result.churn_failures = churn.failures;
    run.result.first_churn_failure = churn.first_failure;
  }
  run.AddEngine(*engine_);
  run.AddDmaPathStats(dma_memory_->stats());
  MMUVISOR_RETURN_IF_ERROR(guest_.Collect(run));
  if (dma_mmu_) run.AddMmu(*dma_mmu_);
  if (mirror_) run.AddMirror(*mirror_);
  run.AddHub(space_->hub());
  run.result.fault_latency = Percentiles(fault_latency_);
  // The run's memslot counts on counter tracks, at its end (the churn's thread records
  // the slot count at each change).
  const StressResult& r = run.result;
  trace_.Counter("memslots", "slots", r.memslots);
  if (r.aliases > 0) trace_.Counter("alias entries zapped", "entries", r.alias_zaps);
  if (churn_) {
    trace_.Counter("memslot changes", "changes", r.churn_adds + r.churn_moves + r.churn_deletes);
    trace_.Counter("absent-slot accesses", "accesses", r.absent_slot_accesses);
  }
  Teardown();
  absl::Status written = FinishStressRun(options_, trace_, run);
  return HostStressOutcome{std::move(run.result), guest_.digests(), std::move(written)};
}

}  // namespace

absl::StatusOr<HostStressOutcome> RunStress(const StressOptions& options, StressGuest& guest,
                                            std::FILE* progress, bool tty) {
  MMUVISOR_RETURN_IF_ERROR(guest.Create());
  StressRig rig(options, guest);
  MMUVISOR_RETURN_IF_ERROR(rig.Build());
  MMUVISOR_RETURN_IF_ERROR(rig.Start(progress, tty));
  rig.RunToTheEnd();
  return rig.Finish();
}

}  // namespace mmuvisor::vmm::stress
