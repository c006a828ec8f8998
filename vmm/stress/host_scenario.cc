#include "vmm/stress/host_scenario.h"

#include <algorithm>
#include <memory>
#include <optional>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "mmu/mirror.h"
#include "notifier/base/page.h"
#include "notifier/base/status_macros.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/host/fault_injection.h"
#include "vmm/memory/memory_backing.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/stress/fault_injection.h"
#include "vmm/stress/host_ops.h"
#include "vmm/stress/host_workload.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/page_pool_space.h"
#include "vmm/stress/progress.h"
#include "vmm/stress/stress_run.h"
#include "vmm/stress/trace_log.h"
#include "vmm/stress/traced_mmu.h"

namespace mmuvisor::vmm::stress {
namespace {

// The workload owns memory from here on (the KVM layout puts the image below it).
constexpr uint64_t kFreeStart = 1ull << 20;

// The host operations of a host-thread run, on the page pool. Discards come from the
// workload's balloon calls; reclaim paces on the pool's resident pages.
class PoolHostOps : public HostOpTarget {
 public:
  explicit PoolHostOps(PagePoolSpace& space) : space_(space) {}
  bool Supports(HostOp op) const override { return op != HostOp::kDiscard; }
  absl::Status Run(HostOp op, uint64_t gpa, uint64_t len) override {
    switch (op) {
      case HostOp::kReclaim:
        return space_.Reclaim(gpa, len);
      case HostOp::kMigrate:
        return space_.Migrate(gpa, len);
      case HostOp::kProtect:
        return space_.Protect(gpa, len);
      case HostOp::kOomReap:
        return space_.OomReap(gpa, len);
      default:
        return absl::InternalError(absl::StrCat("host op ", HostOpName(op), " not offered"));
    }
  }
  std::optional<double> ResidentFraction() const override {
    return static_cast<double>(space_.stats().resident) /
           static_cast<double>(space_.ram_size() / kPageSize);
  }

 private:
  PagePoolSpace& space_;
};

}  // namespace

absl::StatusOr<HostStressOutcome> RunHostStress(const StressOptions& options,
                                                std::FILE* progress, bool tty) {
  const uint64_t pages = options.mem_bytes / kPageSize;
  if (options.mem_bytes % kPageSize != 0 || options.mem_bytes <= kFreeStart) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mem ", options.mem_bytes, ": host-thread runs need a page-aligned size above 1 MiB"));
  }
  // Every page of the pool is real host memory once touched; reclaim keeps about
  // --resident of it.
  if (absl::Status s = CheckGuestFitsHost(options.mem_bytes, options.resident_target,
                                          HostPhysicalMemoryBytes());
      !s.ok()) {
    return s;
  }
  // The time bound (stress_options.h): faults give up in time, delays end at the deadline.
  bool timeout_cut = false;
  const absl::Duration fault_timeout =
      BoundedFaultTimeout(options.fault_timeout, options.duration,
                          options.policy == notifier::Policy::kLegacyUnpaired, &timeout_cut);
  TraceLog trace(!options.trace_path.empty());
  trace.NameThisThread("stress main");
  PagePoolSpaceOptions space_options;
  space_options.pages = pages;
  space_options.hub.policy = options.policy;
  PagePoolSpace space(space_options);
  notifier::NotifierSubscriptions& hub = space.hub();
  LatencyHistogram fault_latency;

  // Subscriptions: the EAGAIN injector (if any) first, then the vCPU MMU and the DMA MMU
  // (or mirror). All are declared before the teardown guard, so on every return the
  // guard detaches and releases them (hub.Release) before they are destroyed.
  std::optional<StartFaultSubscription> injector;
  mmu::SecondaryMmuOptions vcpu_mmu_options;
  vcpu_mmu_options.name = "vcpu-mmu";
  vcpu_mmu_options.retry_timeout = fault_timeout;
  TracedSecondaryMmu vcpu_mmu(space, vcpu_mmu_options, &trace, 0);
  std::unique_ptr<TracedSecondaryMmu> dma_mmu;
  std::unique_ptr<mmu::Mirror> mirror;
  bool mirror_attached = false;
  struct TeardownGuard {
    PagePoolSpace& space;
    std::unique_ptr<mmu::Mirror>& mirror;
    bool& attached;
    ~TeardownGuard() {
      if (attached) (void)mirror->Detach();
      space.Teardown();
    }
  } guard{space, mirror, mirror_attached};

  if (options.eagain_probability > 0) {
    injector.emplace(
        StartFaults{.eagain_probability = options.eagain_probability, .seed = options.seed},
        "eagain-injector");
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*injector));
  }
  const std::vector<mmu::MemorySlot> layout = {{0, pages, space.base()}};
  MMUVISOR_RETURN_IF_ERROR(vcpu_mmu.SetLayout(layout));
  // Delays go into the DMA path's fault windows only: a KVM run cannot delay the kernel's
  // own MMU either, so both kinds of run inject at the same place.
  bool delay_cut = false;
  const absl::Duration delay = BoundedDelay(options.delay, fault_timeout, &delay_cut);
  DelayOptions delays{options.delay_probability, delay, options.seed, true};
  MMUVISOR_RETURN_IF_ERROR(hub.Register(vcpu_mmu));

  std::unique_ptr<dma::DmaMemory> dma_memory;
  DmaTrace dma_trace(trace, "dma fault", "dma retry");
  DmaTrace vcpu_trace(trace, "vcpu fault", "vcpu retry");
  DelayOptions dma_delays = delays;
  dma_delays.seed = Mix64(options.seed);
  dma_delays.retry_checks = !options.skip_dma_retry_check_for_testing;
  // Fixed before anything runs; `start` below is a little later, so delays end no later
  // than the deadline.
  const absl::Time planned_end = absl::Now() + options.duration;
  dma_delays.delays_end = planned_end;
  if (options.force_dma_fault_races_for_testing) {
    // The must-fail control's race, every time: migrate the faulting page inside the
    // DMA fault's window (gfn = gpa >> 12: the MMU has one slot at gpa 0).
    // Data pages only (MemstressDescriptorFrames says why).
    const std::vector<uint64_t> descriptors =
        MemstressDescriptorFrames(kFreeStart, space.ram_size(), options.vcpus);
    dma_delays.invalidate_in_window = [&space, descriptors](mmu::Gfn gfn) {
      if (std::find(descriptors.begin(), descriptors.end(), gfn) != descriptors.end()) return;
      (void)space.Migrate(gfn * kPageSize, kPageSize);  // errors: impossible ranges only
    };
  }
  if (options.dma_path == DmaPath::kSecondary) {
    mmu::SecondaryMmuOptions dma_options;
    dma_options.name = "dma-mmu";
    dma_options.retry_timeout = fault_timeout;
    dma_mmu = std::make_unique<TracedSecondaryMmu>(space, dma_options, &trace, 1);
    MMUVISOR_RETURN_IF_ERROR(dma_mmu->SetLayout(layout));
    dma_mmu->SetFaultHooksForTesting(MakeDelayHooks(dma_delays));
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*dma_mmu));
    auto memory = std::make_unique<dma::SecondaryMmuMemory>(
        *dma_mmu, &fault_latency, options.skip_dma_retry_check_for_testing);
    if (trace.enabled()) memory->set_trace(&dma_trace);
    dma_memory = std::move(memory);
  } else {
    mmu::MirrorOptions mirror_options;
    mirror_options.name = "dma-mirror";
    mirror_options.retry_timeout = fault_timeout;
    mirror = std::make_unique<mmu::Mirror>(space, mirror_options);
    if (dma_delays.invalidate_in_window) {
      // The mirror's hooks get the primary address's frame (base() + gpa) >> 12.
      const std::vector<uint64_t> descriptors =
          MemstressDescriptorFrames(kFreeStart, space.ram_size(), options.vcpus);
      dma_delays.invalidate_in_window = [&space, descriptors](mmu::Gfn frame) {
        const uint64_t gfn = frame - space.base() / kPageSize;
        if (std::find(descriptors.begin(), descriptors.end(), gfn) != descriptors.end()) return;
        (void)space.Migrate(gfn * kPageSize, kPageSize);
      };
    }
    mirror->SetFaultHooksForTesting(MakeDelayHooks(dma_delays));
    MMUVISOR_RETURN_IF_ERROR(mirror->Attach(hub, space.base(), space.ram_size()));
    mirror_attached = true;
    dma_memory = std::make_unique<dma::MirrorMemory>(*mirror, space.base());
  }
  dma::SecondaryMmuMemory vcpu_memory(vcpu_mmu, &fault_latency);
  if (trace.enabled()) vcpu_memory.set_trace(&vcpu_trace);

  dma::DmaEngineOptions engine_options;
  engine_options.ram_size = space.ram_size();
  if (trace.enabled()) engine_options.on_thread_start = [&trace] { trace.NameThisThread("DMA engine"); };
  dma::DmaEngine engine(*dma_memory, engine_options);
  engine.Start();

  HostWorkloadConfig workload_config;
  workload_config.seed = options.seed;
  workload_config.vcpus = options.vcpus;
  workload_config.free_start = kFreeStart;
  workload_config.free_end = space.ram_size();
  workload_config.rounds = options.rounds;
  workload_config.dma = options.dma;
  workload_config.balloon = options.balloon;
  if (trace.enabled()) {
    workload_config.on_thread_start = [&trace](uint32_t v) {
      trace.NameThisThread(absl::StrCat("vCPU ", v));
    };
  }
  HostWorkload workload(workload_config, vcpu_memory, &engine,
                        [&space](uint64_t gpa, uint64_t len) {
                          (void)space.Discard(gpa, len);  // errors: impossible ranges only
                        });

  PoolHostOps host_ops(space);
  HostOpDriver driver(options, 0, space.ram_size(), host_ops, &trace);

  const absl::Time start = absl::Now();
  auto sample = [&] {
    const PagePoolStats s = space.stats();
    ProgressSample p;
    p.elapsed_s = absl::ToDoubleSeconds(absl::Now() - start);
    p.pages_verified = workload.pages_verified();
    p.invalidations = s.invalidations;
    p.faults = vcpu_mmu.stats().faults + dma_memory->stats().faults;
    p.retries = vcpu_mmu.stats().retries + dma_memory->stats().access_retries;
    p.swap_ins = s.swap_ins;
    p.mismatches = workload.mismatches();
    p.resident_fraction = static_cast<double>(s.resident) / static_cast<double>(pages);
    return p;
  };
  std::optional<ProgressPrinter> printer;
  if (progress != nullptr && options.progress) printer.emplace(progress, tty, sample);

  MMUVISOR_RETURN_IF_ERROR(workload.Start());
  driver.Start();
  if (printer) printer->Start();
  // Run for the duration (or until every vCPU ran its rounds or failed).
  while (absl::Now() - start < options.duration && workload.finished() < options.vcpus) {
    absl::SleepFor(absl::Milliseconds(20));
  }
  const bool by_deadline = workload.finished() < options.vcpus;
  // Stop at once, not at round ends: the vCPUs at their next page, the device at its next
  // page piece (its unfinished descriptors are nobody's business once the vCPUs stopped),
  // the host operations after the one in flight (first: with no new windows, a fault
  // racing the storm ends at once). What can still take time is bounded: a fault behind
  // a leaked window (legacy policy: fault_timeout, cut to half the slack) and a delay
  // (none past the deadline).
  driver.Stop();  // first: no new windows, so faults racing the storm end now
  workload.Stop();
  engine.Abort();
  workload.Join();
  if (printer) printer->Stop();

  // Collect, while every subscription is still registered.
  StressRun run;
  run.SetHeader(options, "host-threads", start);
  run.result.bound_s = absl::ToDoubleSeconds(options.duration + RunSlack(options.duration));
  run.result.stopped_by_deadline = by_deadline;
  run.result.deadline_notes = workload.cut_rounds();
  run.AddCuts(options,
              {.timeout_name = "fault timeout",
               .timeout_cut = timeout_cut,
               .wanted_timeout = options.fault_timeout,
               .used_timeout = fault_timeout,
               .delay_cut = delay_cut,
               .delay = delay,
               .forced = "a migrate of each DMA fault's page"},
              engine);
  run.result.guest_rounds = workload.rounds_done();
  run.result.guest_pages_verified = workload.pages_verified();
  run.result.guest_mismatches = workload.mismatches();
  run.result.first_mismatches = workload.first_mismatches();
  run.result.workload_problem = workload.problem();
  run.result.workload_ok = run.result.workload_problem.empty();
  const PagePoolStats pool = space.stats();
  run.result.invalidations = pool.invalidations;
  run.result.eagain = pool.eagain;
  run.result.host_ops = driver.ops_done() + driver.ops_failed();
  run.result.swap_ins = pool.swap_ins;
  run.result.swap_outs = pool.swap_outs;
  run.AddMmu(vcpu_mmu);
  if (dma_mmu) run.AddMmu(*dma_mmu);
  if (mirror) run.AddMirror(*mirror);
  run.AddDmaPathStats(dma_memory->stats());
  run.AddEngine(engine);
  run.AddHub(hub);
  run.result.fault_latency = Percentiles(fault_latency);

  if (mirror_attached) (void)mirror->Detach();
  mirror_attached = false;
  space.Teardown();
  MMUVISOR_RETURN_IF_ERROR(FinishStressRun(options, trace, run.result));
  HostStressOutcome outcome;
  outcome.result = std::move(run.result);
  outcome.digests = workload.digests();
  return outcome;
}

}  // namespace mmuvisor::vmm::stress
