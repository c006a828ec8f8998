#include "vmm/stress/stress_kvm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "mmu/mirror.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/page.h"
#include "notifier/base/status_macros.h"
#include "vmm/boot/guest_images.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/reclaim_driver.h"
#include "vmm/machine/machine.h"
#include "vmm/memory/memory_backing.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/stress/fault_injection.h"
#include "vmm/stress/guest_reports.h"
#include "vmm/stress/hostile_run.h"
#include "vmm/stress/kvm_device_hooks.h"
#include "vmm/stress/host_ops.h"
#include "vmm/stress/host_workload.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/progress.h"
#include "vmm/stress/stress_run.h"
#include "vmm/stress/trace_log.h"
#include "vmm/stress/traced_mmu.h"

namespace mmuvisor::vmm::stress {
namespace {

// The host operations of a KVM run, on the machine's HostAddressSpace. Reclaim is the
// reclaim driver's job (vmm/host), discards come from the guest's balloon calls.
class SpaceHostOps : public HostOpTarget {
 public:
  explicit SpaceHostOps(HostAddressSpace& space) : space_(space) {}
  bool Supports(HostOp op) const override {
    return op == HostOp::kMigrate || op == HostOp::kProtect || op == HostOp::kOomReap;
  }
  absl::Status Run(HostOp op, uint64_t gpa, uint64_t len) override {
    MMUVISOR_ASSIGN_OR_RETURN(const PageRange pages, space_.PagesOf(Gpa{gpa}, ByteSize{len}));
    switch (op) {
      case HostOp::kMigrate:
        return space_.Migrate(pages).status();
      case HostOp::kProtect:
        // A protection_vma window that leaves the pages read-write: every secondary MMU
        // zaps and refaults the range, the guest's stores keep working (a read-only
        // protect would make them protected-write events, not a stress condition).
        return space_.Protect(pages, PageProtection::kReadWrite);
      case HostOp::kOomReap: {
        MMUVISOR_ASSIGN_OR_RETURN(const OomReapResult r, space_.OomReap(pages));
        if (!r.reaped) return absl::UnavailableError("OOM reap skipped after EAGAIN retries");
        return absl::OkStatus();
      }
      default:
        return absl::InternalError(absl::StrCat("host op ", HostOpName(op), " not offered"));
    }
  }

 private:
  HostAddressSpace& space_;
};

// With --rounds the guest stops by itself; it gets this long beyond --duration (a --rounds
// run is bounded by its rounds, not by --duration: README "Bounded run time").
constexpr absl::Duration kRoundsGrace = absl::Seconds(60);

uint64_t WindowsOpened(const HostStats& s) {
  return s.reclaims + s.discards + s.migrates + s.protects + s.unmaps + s.oom_reaps +
         s.oom_eagain_retries;
}

// Why the vCPUs did not end as a finished workload, or "" when they did. A vCPU that
// RequestStop stopped (the guest overran the grace period) is a problem too.
std::string RunProblem(const RunResult& run) {
  if (run.verdict == Verdict::kClean) return "";
  return absl::StrCat("guest run ended ", VerdictName(run.verdict), ": ", run.summary);
}

absl::Status WriteBootArgs(Machine& machine, const std::array<uint64_t, 8>& args) {
  return machine.WriteGuest(
      Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args)},
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(args.data()),
                                sizeof(uint64_t) * args.size()));
}

absl::Status WriteStopWord(Machine& machine) {
  const uint64_t one = 1;
  return machine.WriteGuest(
      Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args) +
          sizeof(uint64_t) * MMV_MEMSTRESS_ARG_STOP},
      absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(&one), sizeof(one)));
}

absl::StatusOr<mmv_boot_info> ReadBootInfo(Machine& machine) {
  mmv_boot_info info{};
  if (absl::Status s = machine.ReadGuest(
          Gpa{MMV_BOOT_INFO_GPA},
          absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&info), sizeof(info)));
      !s.ok()) {
    return s;
  }
  return info;
}

}  // namespace

absl::Status ProbeKvm(const std::string& kvm_path) {
  const int fd = ::open(kvm_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("needs ", kvm_path, ": ", std::strerror(e)));
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<HostStressOutcome> RunKvmStress(const StressOptions& options,
                                               std::FILE* progress, bool tty) {
  const uint64_t mem_bytes = options.mem_given ? options.mem_bytes : kKvmDefaultMemBytes;
  // Before anything is mapped: `run` refuses more than the host's RAM, stress refuses
  // more than it can keep resident at --resident.
  if (absl::Status s = CheckGuestFitsHost(mem_bytes, options.resident_target,
                                          HostPhysicalMemoryBytes());
      !s.ok()) {
    return s;
  }
  MMUVISOR_RETURN_IF_ERROR(ProbeKvm(options.kvm_path));
  const bool hostile = options.guest == "dmahostile";
  const bool hostile_vcpu = options.guest == "hostile";  // vCPU 0 hostile, the rest verify
  if (options.guest != "memstress" && !hostile && !hostile_vcpu) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--guest ", options.guest, ": KVM stress runs take memstress, hostile or dmahostile"));
  }
  if (hostile_vcpu && options.vcpus < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--guest hostile needs at least 2 vCPUs (vCPU 0 is hostile, the others verify), got ",
        options.vcpus));
  }
  absl::StatusOr<absl::Span<const uint8_t>> elf = BuiltinGuestImage(options.guest);
  if (!elf.ok()) return elf.status();
  // The time bound: DMA faults give up in time, delays end at the deadline.
  bool timeout_cut = false;
  const absl::Duration wanted_fault_timeout =
      options.fault_timeout_given ? options.fault_timeout : kKvmDefaultFaultTimeout;
  const absl::Duration fault_timeout =
      options.rounds > 0 ? wanted_fault_timeout
                         : BoundedFaultTimeout(wanted_fault_timeout, options.duration,
                                               options.policy ==
                                                   notifier::Policy::kLegacyUnpaired,
                                               &timeout_cut);

  TraceLog trace(!options.trace_path.empty());
  trace.NameThisThread("stress main");
  LatencyHistogram fault_latency;
  DmaTrace dma_trace(trace, "dma fault", "dma retry");
  // Everything the machine reaches (observer, port device, hub subscriptions and what they
  // use) is declared before it, so it outlives the machine's teardown; it is built once
  // the machine (and so its HostAddressSpace) exists.
  GuestReports reports(options.vcpus);
  if (hostile_vcpu) reports.set_hostile_vcpu(HOSTILE_VCPU);
  std::optional<StartFaultSubscription> injector;
  std::unique_ptr<HostDeviceHooks> device_hooks;
  std::unique_ptr<TracedSecondaryMmu> dma_mmu;
  std::unique_ptr<mmu::Mirror> mirror;
  std::unique_ptr<dma::DmaMemory> dma_memory;
  std::unique_ptr<dma::DmaEngine> engine;
  bool mirror_attached = false;

  MachineConfig config;
  config.kvm_path = options.kvm_path;
  config.ram_size = ByteSize{mem_bytes};
  config.vcpus = options.vcpus;
  config.privilege = GuestPrivilege::kUser;
  config.timeout = absl::InfiniteDuration();  // the runner stops the guest itself
  config.seed = options.seed;
  if (hostile_vcpu && options.hostile_hits_verifier_for_testing) {
    config.boot_flags = HOSTILE_F_HIT_VERIFIER;
  }
  config.observer = &reports;
  config.host.hub.policy = options.policy;
  config.host.page_server_threads = static_cast<int>(options.vcpus);
  if (options.ops.reclaim > 0) {
    ReclaimDriverOptions reclaim;
    reclaim.target_resident_fraction = options.resident_target;
    reclaim.max_pages_per_second =
        static_cast<uint64_t>(options.ops.reclaim * static_cast<double>(options.op_pages)) + 1;
    config.reclaim = reclaim;
  }
  absl::StatusOr<std::unique_ptr<Machine>> created = Machine::Create(config, *elf);
  if (!created.ok()) {
    if (IsInputError(created.status())) {
      return absl::InvalidArgumentError(created.status().message());
    }
    return created.status();
  }
  std::unique_ptr<Machine> machine = std::move(*created);
  HostAddressSpace& space = machine->host();
  notifier::NotifierSubscriptions& hub = space.hub();

  absl::StatusOr<mmv_boot_info> boot_info = ReadBootInfo(*machine);
  if (!boot_info.ok()) return boot_info.status();
  std::array<uint64_t, 8> args{};
  args[MMV_MEMSTRESS_ARG_ROUNDS] = options.rounds;
  args[MMV_MEMSTRESS_ARG_FLAGS] = (options.dma ? MMV_MEMSTRESS_F_DMA : 0u) |
                                  (options.balloon ? MMV_MEMSTRESS_F_BALLOON : 0u);
  MMUVISOR_RETURN_IF_ERROR(WriteBootArgs(*machine, args));
  const uint64_t free_start = boot_info->free_start;
  const uint64_t free_end = std::min<uint64_t>(boot_info->free_end, mem_bytes);
  if (free_end <= free_start + options.op_pages * kPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mem ", mem_bytes, ": leaves [0x", absl::Hex(free_start), ", 0x", absl::Hex(free_end),
        ") for the workload, too small for ", options.vcpus, " vCPUs"));
  }
  hostile_arena arena{};
  if (hostile_vcpu && hostile_arena_of(mem_bytes, free_start, free_end, options.vcpus, 0,
                                       &arena) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mem ", mem_bytes, ": leaves [0x", absl::Hex(free_start), ", 0x", absl::Hex(free_end),
        ") for the workload, too small for a hostile arena beside ", options.vcpus - 1,
        " verifying vCPU(s)"));
  }

  // Subscriptions on the space's hub: the EAGAIN injector first, then the DMA path.
  if (options.eagain_probability > 0) {
    injector.emplace(
        StartFaults{.eagain_probability = options.eagain_probability, .seed = options.seed},
        "eagain-injector");
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*injector));
  }
  bool delay_cut = false;
  const absl::Duration delay = BoundedDelay(options.delay, fault_timeout, &delay_cut);
  DelayOptions dma_delays{options.delay_probability, delay, Mix64(options.seed),
                          !options.skip_dma_retry_check_for_testing};
  if (options.rounds == 0) dma_delays.delays_end = absl::Now() + options.duration;
  if (options.force_dma_fault_races_for_testing) {
    // The must-fail control's race, every time: reclaim the faulting page inside the DMA
    // fault's window, data pages only (MemstressDescriptorFrames says why). The DMA
    // MMU's frames are gpa >> 12; the mirror's are host address >> 12.
    const std::vector<uint64_t> descriptors =
        MemstressDescriptorFrames(free_start, free_end, options.vcpus);
    const uint64_t frame_base =
        options.dma_path == DmaPath::kMirror ? space.AddressOf(0) / kPageSize : 0;
    dma_delays.invalidate_in_window = [&space, descriptors, frame_base](mmu::Gfn frame) {
      const uint64_t gfn = frame - frame_base;
      if (std::find(descriptors.begin(), descriptors.end(), gfn) != descriptors.end()) return;
      absl::StatusOr<PageRange> page = space.PagesOf(Gpa{gfn * kPageSize}, ByteSize{kPageSize});
      // Reclaim, not Migrate: RAM is a memfd, and a migrate faults the page back in at the
      // same offset, so a translation kept across it still reaches the right bytes. After
      // a reclaim the offset is a hole until the guest's next touch swaps it in: what the
      // device then reads or writes through the stale translation is lost.
      if (page.ok()) (void)space.Reclaim(*page);  // errors: an impossible range only
    };
  }
  device_hooks = std::make_unique<HostDeviceHooks>(space);
  if (options.skip_dma_retry_check_for_testing) {
    MMUVISOR_RETURN_IF_ERROR(device_hooks->MapDeviceView());
  }
  // Every return from here on detaches the mirror and tears the space down (hub.Release
  // reaches every subscription exactly once) before anything above is destroyed.
  struct TeardownGuard {
    HostAddressSpace& space;
    std::unique_ptr<mmu::Mirror>& mirror;
    bool& attached;
    ~TeardownGuard() {
      if (attached) (void)mirror->Detach();
      space.Teardown();
    }
  } guard{space, mirror, mirror_attached};

  if (options.dma_path == DmaPath::kSecondary) {
    mmu::SecondaryMmuOptions dma_options;
    dma_options.name = "dma-mmu";
    dma_options.retry_timeout = fault_timeout;
    dma_mmu = std::make_unique<TracedSecondaryMmu>(space, dma_options, &trace, 1);
    MMUVISOR_RETURN_IF_ERROR(dma_mmu->SetLayout(space.SecondaryLayout()));
    dma_mmu->SetFaultHooksForTesting(MakeDelayHooks(dma_delays));
    MMUVISOR_RETURN_IF_ERROR(hub.Register(*dma_mmu));
    auto memory = std::make_unique<dma::SecondaryMmuMemory>(
        *dma_mmu, &fault_latency, options.skip_dma_retry_check_for_testing);
    memory->set_hooks(device_hooks.get());
    if (trace.enabled()) memory->set_trace(&dma_trace);
    dma_memory = std::move(memory);
  } else {
    mmu::MirrorOptions mirror_options;
    mirror_options.name = "dma-mirror";
    mirror_options.retry_timeout = fault_timeout;
    mirror = std::make_unique<mmu::Mirror>(space, mirror_options);
    mirror->SetFaultHooksForTesting(MakeDelayHooks(dma_delays));
    MMUVISOR_RETURN_IF_ERROR(mirror->Attach(hub, space.AddressOf(0), mem_bytes));
    mirror_attached = true;
    auto memory = std::make_unique<dma::MirrorMemory>(*mirror, space.AddressOf(0));
    memory->set_hooks(device_hooks.get());
    dma_memory = std::move(memory);
  }

  dma::DmaEngineOptions engine_options;
  engine_options.ram_size = mem_bytes;
  if (trace.enabled()) {
    engine_options.on_thread_start = [&trace] { trace.NameThisThread("DMA engine"); };
  }
  engine = std::make_unique<dma::DmaEngine>(*dma_memory, engine_options);
  if (absl::Status s = machine->AttachPortDevice(MMV_PORT_DMA, 4, engine.get()); !s.ok()) {
    return s;
  }

  // Balloon: the guest gives pages back; the host discards them (next access: zeros).
  reports.set_balloon([&space](uint64_t gpa, uint64_t len) -> absl::Status {
    absl::StatusOr<PageRange> pages = space.PagesOf(Gpa{gpa}, ByteSize{len});
    if (!pages.ok()) return pages.status();
    return space.Discard(*pages);
  });

  SpaceHostOps host_ops(space);
  const uint64_t ops_start = (free_start + kPageSize - 1) / kPageSize * kPageSize;
  const uint64_t ops_end = free_end / kPageSize * kPageSize;
  HostOpDriver driver(options, ops_start, ops_end, host_ops, &trace);

  const absl::Time start = absl::Now();
  auto sample = [&] {
    const HostStats s = space.stats();
    ProgressSample p;
    p.elapsed_s = absl::ToDoubleSeconds(absl::Now() - start);
    p.pages_verified = reports.pages_verified();
    p.invalidations = WindowsOpened(s);
    const MachineFaultStats vcpu_faults = machine->fault_stats();
    p.faults = dma_memory->stats().faults + vcpu_faults.faults;
    p.retries = dma_memory->stats().access_retries + vcpu_faults.retries;
    p.swap_ins = s.swapped_in;
    p.mismatches = reports.mismatches();
    p.resident_fraction = ResidentFraction(space);
    return p;
  };
  std::optional<ProgressPrinter> printer;
  if (progress != nullptr && options.progress) printer.emplace(progress, tty, sample);

  engine->Start();
  std::atomic<bool> run_done{false};  // release by the run thread, acquire below
  RunResult run_result;
  std::thread run_thread([&] {
    if (trace.enabled()) trace.NameThisThread("machine run");
    run_result = machine->Run();
    run_done.store(true, std::memory_order_release);
  });
  driver.Start();
  if (printer) printer->Start();

  // Run for the duration (or, with --rounds, until the guest is done), then ask the guest
  // to stop at its next round end; stop the vCPUs where they are if it has not by half the
  // slack (stress_options.h RunSlack), so the run ends by --duration + the slack.
  const absl::Duration limit = options.rounds > 0 ? options.duration + kRoundsGrace
                                                  : options.duration;
  auto wait_done = [&](absl::Time until) {
    while (!run_done.load(std::memory_order_acquire) && absl::Now() < until) {
      absl::SleepFor(absl::Milliseconds(20));
    }
    return run_done.load(std::memory_order_acquire);
  };
  bool stop_requested = false;
  const bool by_deadline = !wait_done(start + limit);
  if (by_deadline) {
    driver.Stop();  // no new host-op windows: DMA faults racing them end now
    (void)WriteStopWord(*machine);  // errors: only a torn-down space, and then Run is over
    if (!wait_done(start + limit + RunSlack(options.duration) / 2)) {
      machine->RequestStop("stress: the guest did not reach a round end by the deadline");
      stop_requested = true;
    }
  }
  // The device stops at its next page piece: the vCPUs are stopping or stopped.
  engine->Abort();
  run_thread.join();
  driver.Stop();
  // The reclaim driver runs until the space's teardown: stop it (joins its thread, so its
  // last window has closed) before the in-progress counts are read below. Read with it
  // running, one run FAILed naming dma-mmu.in_progress=1 and hub.open_windows=1 (`--guest
  // hostile --mem 32M --seed 10 --duration 2s`, 1 of 9 runs, 2026-12-03).
  if (ReclaimDriver* reclaimd = space.reclaim_driver(); reclaimd != nullptr) reclaimd->Stop();
  if (printer) printer->Stop();

  // Collect, while every subscription is still registered.
  StressRun run;
  run.SetHeader(options, "kvm", start);
  run.result.guest_rounds = reports.rounds_done();
  run.result.guest_pages_verified = reports.pages_verified();
  run.result.guest_mismatches = reports.mismatches();
  run.result.first_mismatches = reports.first_mismatches();
  std::string problem = hostile_vcpu ? "" : RunProblem(run_result);
  run.result.bound_s = absl::ToDoubleSeconds(limit + RunSlack(options.duration));
  run.result.stopped_by_deadline = by_deadline;
  if (stop_requested) {
    // Not a failure by itself (the verdict is what the guest did until then, and a run
    // that verified nothing fails as vacuous); what held it up fails through the
    // in-progress counts and the run's own problem.
    run.result.deadline_notes.push_back(absl::StrCat(
        "the guest did not reach a round end by ",
        absl::FormatDuration(limit + RunSlack(options.duration) / 2),
        ": vCPUs stopped where they were (", reports.rounds_done(), " rounds done)"));
  }
  run.AddCuts(options,
              {.timeout_name = "DMA fault timeout",
               .timeout_cut = timeout_cut,
               .wanted_timeout = wanted_fault_timeout,
               .used_timeout = fault_timeout,
               .delay_cut = delay_cut,
               .delay = delay,
               .forced = "a reclaim of each DMA data fault's page"},
              *engine);
  if (hostile_vcpu && options.hostile_hits_verifier_for_testing) {
    run.result.checks_skipped.push_back(
        "the hostile vCPU's arena bound (its stores go into vCPU 1's work pages)");
  }
  if (hostile) {
    if (!reports.hostile_reported()) {
      problem = absl::StrCat("dmahostile sent no report", problem.empty() ? "" : "; ", problem);
    } else if (!reports.hostile_problem().empty()) {
      problem = reports.hostile_problem();
      // The guest printed which cases went wrong: keep those lines.
      for (absl::string_view line : absl::StrSplit(machine->console_transcript(), '\n')) {
        if (absl::StrContains(line, "case")) absl::StrAppend(&problem, "; ", line);
      }
    }
  } else if (reports.balloon_errors() != 0) {
    problem = absl::StrCat(reports.balloon_errors(), " balloon discard(s) failed");
  }
  const GuestReports::HostileCounts hostile_counts = reports.hostile_counts();
  if (hostile_vcpu) {
    const uint64_t terminal = hostile_terminal_of(options.seed);
    const std::string judged =
        HostileRunProblem(run_result, HOSTILE_VCPU, hostile_counts, terminal);
    if (!judged.empty()) problem = problem.empty() ? judged : absl::StrCat(problem, "; ", judged);
    HostileSummary& h = run.result.hostile;
    h.present = true;
    h.vcpu = HOSTILE_VCPU;
    h.records = hostile_counts.records;
    h.ucalls = hostile_counts.ucalls;
    h.port_outs = hostile_counts.port_outs;
    h.port_ins = hostile_counts.port_ins;
    h.dma_chains = hostile_counts.dma_chains;
    h.stores = hostile_counts.stores;
    h.balloons = hostile_counts.balloons;
    h.descriptors_checked = hostile_counts.descriptors_checked;
    h.sweeps = hostile_counts.sweeps;
    h.self_check_failures = hostile_counts.self_check_failures;
    h.announced_device_errors = hostile_counts.announced_device_errors;
    h.stray_reports = hostile_counts.stray_reports;
    h.terminal = HostileTerminalName(terminal);
    for (const VcpuReport& v : run_result.vcpus) {
      if (v.index == HOSTILE_VCPU) h.end = DescribeVcpuEnd(v);
    }
    h.replay = absl::StrCat("mmuvisor stress --guest hostile --seed ", options.seed, " --vcpus ",
                            options.vcpus, " --mem ", mem_bytes,
                            " --hostile-log FILE  (records 0..", hostile_counts.records,
                            " of this arena: [0x", absl::Hex(arena.start), ", 0x",
                            absl::Hex(arena.end), "))");
    if (!options.hostile_log_path.empty()) {
      std::ofstream log(options.hostile_log_path, std::ios::trunc);
      log << absl::StrFormat("# mmuvisor stress --guest hostile --seed %u: vCPU %u's records, "
                             "arena [%#x, %#x)\n",
                             options.seed, HOSTILE_VCPU, arena.start, arena.end)
          << HostileRecordLog(options.seed, arena, 0, hostile_counts.records);
      if (!log) {
        return absl::UnavailableError(
            absl::StrCat("--hostile-log ", options.hostile_log_path, ": cannot write it"));
      }
    }
  }
  run.result.workload_problem = problem;
  run.result.workload_ok = problem.empty();
  const HostStats host = space.stats();
  run.result.invalidations = WindowsOpened(host);
  run.result.eagain = host.oom_eagain_retries;
  if (ReclaimDriver* reclaimd = space.reclaim_driver(); reclaimd != nullptr) {
    run.result.eagain += reclaimd->stats().eagain_retries;
  }
  run.result.host_ops = driver.ops_done() + driver.ops_failed() + host.reclaims + host.discards;
  run.result.swap_ins = host.swapped_in;
  run.result.swap_outs = host.written_back;
  if (dma_mmu) run.AddMmu(*dma_mmu);
  if (mirror) run.AddMirror(*mirror);
  run.AddDmaPathStats(dma_memory->stats());
  run.AddEngine(*engine);
  if (hostile_vcpu) {
    // Doorbells the device cannot take carry no EXPECT_ERROR flag: the hostile vCPU
    // announced each one before ringing it (an aborted one is announced, not counted).
    const uint64_t explained =
        std::min(hostile_counts.announced_device_errors, run.result.dma_errors_unrequested);
    run.result.dma_errors_unrequested -= explained;
  }
  run.AddHub(hub);
  run.result.fault_latency = Percentiles(fault_latency);
  // vCPU faults: KVM_RUN = EFAULT exits the VMM resolved (reclaim/migrate windows).
  run.result.faults += run_result.guest_fault_retries;
  run.result.fault_retries += run_result.guest_fault_retries;

  if (mirror_attached) (void)mirror->Detach();
  mirror_attached = false;
  space.Teardown();
  // (dmahostile runs FAIL by this rule — they verify no pages and ring doorbells the
  // device cannot read — callers judge them by workload_ok and the DMA error counts.)
  MMUVISOR_RETURN_IF_ERROR(FinishStressRun(options, trace, run.result));
  HostStressOutcome outcome;
  outcome.result = std::move(run.result);
  outcome.digests = reports.digests();
  return outcome;
}

}  // namespace mmuvisor::vmm::stress
