#include "vmm/stress/stress_kvm.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/page.h"
#include "notifier/base/status_macros.h"
#include "vmm/boot/guest_images.h"
#include "vmm/host/discard.h"
#include "vmm/host/kvm_dirty_ring.h"
#include "vmm/machine/machine.h"
#include "vmm/memory/memory_backing.h"
#include "vmm/stress/guest_reports.h"
#include "vmm/stress/hostile_run.h"

namespace mmuvisor::vmm::stress {
namespace {

// With --rounds the guest stops by itself; it gets this long beyond --duration (a --rounds
// run is bounded by its rounds, not by --duration: README "Bounded run time").
constexpr absl::Duration kRoundsGrace = absl::Seconds(60);
// The churned spare slot: an alias of RAM's first 2 MiB (one 2 MiB page in the guest's
// page tables per window).
constexpr uint64_t kSpareBytes = 2ull << 20;

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

// The guest on KVM vCPUs (stress_kvm.h). Everything the machine reaches (the observer
// here, the rig's port device and subscriptions) outlives the machine's teardown.
class KvmGuest final : public StressGuest {
 public:
  explicit KvmGuest(const StressOptions& options)
      : options_(options),
        mem_bytes_(options.mem_given ? options.mem_bytes : kKvmDefaultMemBytes),
        dmahostile_(options.guest == "dmahostile"),
        hostile_vcpu_(options.guest == "hostile"),
        reports_(options.vcpus) {}
  ~KvmGuest() override {
    if (run_thread_.joinable()) {  // a step failed after Start: stop the vCPUs first
      machine_->RequestStop("stress: the run failed");
      run_thread_.join();
    }
  }

  const char* mode() const override { return "kvm"; }
  absl::Status Create() override;
  HostAddressSpace& space() override { return machine_->host(); }
  uint64_t free_start() const override { return free_start_; }
  uint64_t free_end() const override { return free_end_; }
  absl::Duration default_fault_timeout() const override { return kKvmDefaultFaultTimeout; }
  absl::Duration rounds_grace() const override { return kRoundsGrace; }
  uint64_t alias_stride() const override { return AliasStride(ByteSize{mem_bytes_}); }
  std::optional<SpareSlot> spare_slot() const override;
  absl::Status Wire(const GuestWiring&) override { return absl::OkStatus(); }  // KVM's MMU
  absl::Status Connect(dma::DmaEngine& engine) override;
  absl::Status Start() override;
  bool Done() override { return run_done_.load(std::memory_order_acquire); }
  void Stop(absl::Time give_up) override;
  void Join() override {
    if (run_thread_.joinable()) run_thread_.join();
  }
  GuestProgress Progress() override {
    const MachineFaultStats f = machine_->fault_stats();
    return {reports_.pages_verified(), reports_.mismatches(), f.faults, f.retries};
  }
  absl::Status Collect(StressRun& run) override;
  std::vector<std::vector<uint64_t>> digests() override { return reports_.digests(); }

 private:
  absl::Status CheckOptions() const;
  // The spare slot's windows (--memslot-churn): past RAM and its aliases, 2 MiB each.
  Gpa SpareWindow(int which) const {
    return Gpa{(options_.aliases + 1 + static_cast<uint64_t>(which)) * alias_stride()};
  }
  MachineConfig Config();
  // Boot arguments in, the workload's memory out; InvalidArgument if too small.
  absl::Status LayOutGuest();
  // What went wrong with the guest itself ("" if nothing): the vCPUs' ends, dmahostile's
  // own cases, failed balloon discards.
  std::string GuestProblem();
  // From the run's start: when Stop gives up on the guest's own stop.
  absl::Duration StopBound() const {
    return (options_.rounds > 0 ? options_.duration + kRoundsGrace : options_.duration) +
           RunSlack(options_.duration) / 2;
  }

  const StressOptions options_;
  const uint64_t mem_bytes_;
  const bool dmahostile_;    // the KVM tests' guest of malformed DMA descriptors
  const bool hostile_vcpu_;  // --guest hostile: vCPU 0 hostile, the others verify
  GuestReports reports_;
  std::unique_ptr<Machine> machine_;
  uint64_t free_start_ = 0, free_end_ = 0;
  hostile_arena arena_{};
  std::thread run_thread_;
  std::atomic<bool> run_done_{false};  // release by the run thread, acquire by Done()
  RunResult run_result_;               // written by the run thread before run_done_
  bool stop_requested_ = false;
};

absl::Status KvmGuest::CheckOptions() const {
  // Before anything is mapped: `run` refuses more than the host's RAM, stress refuses
  // more than it can keep resident at --resident.
  MMUVISOR_RETURN_IF_ERROR(
      CheckGuestFitsHost(mem_bytes_, ResidentBound(options_), HostPhysicalMemoryBytes()));
  MMUVISOR_RETURN_IF_ERROR(ProbeKvm(options_.kvm_path));
  if (options_.guest != "memstress" && !dmahostile_ && !hostile_vcpu_) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--guest ", options_.guest, ": KVM stress runs take memstress, hostile or dmahostile"));
  }
  if (hostile_vcpu_ && options_.vcpus < 2) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--guest hostile needs at least 2 vCPUs (vCPU 0 is hostile, the others verify), got ",
        options_.vcpus));
  }
  return absl::OkStatus();
}

MachineConfig KvmGuest::Config() {
  MachineConfig config;
  config.kvm_path = options_.kvm_path;
  config.ram_size = ByteSize{mem_bytes_};
  config.vcpus = options_.vcpus;
  config.privilege = GuestPrivilege::kUser;
  config.timeout = absl::InfiniteDuration();  // the runner stops the guest itself
  config.seed = options_.seed;
  if (hostile_vcpu_ && options_.hostile_hits_verifier_for_testing) {
    config.boot_flags = HOSTILE_F_HIT_VERIFIER;
  }
  config.observer = &reports_;
  config.host.hub.policy = options_.policy;
  config.dirty_log = options_.dirty_log;
  config.ram_slots = options_.ram_slots;
  config.ram_aliases = options_.aliases;
  if (options_.memslot_churn > 0) {
    config.slot_windows = {{SpareWindow(0).value, kSpareBytes},
                           {SpareWindow(1).value, kSpareBytes}};
  }
  config.host.page_server_threads = static_cast<int>(options_.vcpus);
  // No config.reclaim: the rig runs the reclaim driver, as in host-thread runs.
  return config;
}

absl::Status KvmGuest::Create() {
  MMUVISOR_RETURN_IF_ERROR(CheckOptions());
  absl::StatusOr<absl::Span<const uint8_t>> elf = BuiltinGuestImage(options_.guest);
  if (!elf.ok()) return elf.status();
  if (hostile_vcpu_) reports_.set_hostile_vcpu(HOSTILE_VCPU);
  absl::StatusOr<std::unique_ptr<Machine>> created = Machine::Create(Config(), *elf);
  if (!created.ok()) {
    if (IsInputError(created.status())) {
      return absl::InvalidArgumentError(created.status().message());
    }
    return created.status();
  }
  machine_ = *std::move(created);
  return LayOutGuest();
}

absl::Status KvmGuest::LayOutGuest() {
  absl::StatusOr<mmv_boot_info> boot_info = ReadBootInfo(*machine_);
  if (!boot_info.ok()) return boot_info.status();
  std::array<uint64_t, 8> args{};
  args[MMV_MEMSTRESS_ARG_ROUNDS] = options_.rounds;
  args[MMV_MEMSTRESS_ARG_FLAGS] = (options_.dma ? MMV_MEMSTRESS_F_DMA : 0u) |
                                  (options_.balloon ? MMV_MEMSTRESS_F_BALLOON : 0u);
  args[MMV_MEMSTRESS_ARG_ALIASES] = options_.aliases;
  args[MMV_MEMSTRESS_ARG_ALIAS_STRIDE] = options_.aliases > 0 ? alias_stride() : 0;
  if (options_.memslot_churn > 0) {
    args[MMV_MEMSTRESS_ARG_SPARE_A] = SpareWindow(0).value;
    args[MMV_MEMSTRESS_ARG_SPARE_B] = SpareWindow(1).value;
  }
  MMUVISOR_RETURN_IF_ERROR(WriteBootArgs(*machine_, args));
  free_start_ = boot_info->free_start;
  free_end_ = std::min<uint64_t>(boot_info->free_end, mem_bytes_);
  const std::string free = absl::StrCat("--mem ", mem_bytes_, ": leaves [0x",
                                        absl::Hex(free_start_), ", 0x", absl::Hex(free_end_),
                                        ") for the workload, too small for ");
  if (free_end_ <= free_start_) {
    return absl::InvalidArgumentError(absl::StrCat(free, options_.vcpus, " vCPUs"));
  }
  // Host operations cover --op-pages pages of the workload's memory each.
  if (const uint64_t pages = (free_end_ - free_start_) / kPageSize; options_.op_pages >= pages) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--op-pages ", options_.op_pages, ": not below the ", pages, " pages --mem ", mem_bytes_,
        " leaves the workload ([0x", absl::Hex(free_start_), ", 0x", absl::Hex(free_end_),
        ") with ", options_.vcpus, " vCPUs)"));
  }
  if (hostile_vcpu_ && hostile_arena_of(mem_bytes_, free_start_, free_end_, options_.vcpus, 0,
                                        &arena_) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        free, "a hostile arena beside ", options_.vcpus - 1, " verifying vCPU(s)"));
  }
  return absl::OkStatus();
}

std::optional<SpareSlot> KvmGuest::spare_slot() const {
  if (options_.memslot_churn <= 0) return std::nullopt;
  // After RAM's slots and the aliases; RAM's first 2 MiB (boot info included, which the
  // guest reads through it).
  return SpareSlot{options_.ram_slots + options_.aliases, 0,
                   std::min<uint64_t>(kSpareBytes, mem_bytes_) / kPageSize, SpareWindow(0),
                   SpareWindow(1)};
}

absl::Status KvmGuest::Connect(dma::DmaEngine& engine) {
  MMUVISOR_RETURN_IF_ERROR(machine_->AttachPortDevice(MMV_PORT_DMA, 4, &engine));
  // Balloon: the guest gives pages back; the host discards them (next access: zeros).
  reports_.set_balloon([space = &machine_->host()](uint64_t gpa, uint64_t len) -> absl::Status {
    MMUVISOR_ASSIGN_OR_RETURN(const PageRange pages, space->PagesOf(Gpa{gpa}, ByteSize{len}));
    return vmm::Discard(*space, pages);
  });
  return absl::OkStatus();
}

absl::Status KvmGuest::Start() {
  run_thread_ = std::thread([this] {
    run_result_ = machine_->Run();
    run_done_.store(true, std::memory_order_release);
  });
  return absl::OkStatus();
}

void KvmGuest::Stop(absl::Time give_up) {
  (void)WriteStopWord(*machine_);  // errors: only a torn-down space, and then Run is over
  while (!Done() && absl::Now() < give_up) absl::SleepFor(absl::Milliseconds(20));
  if (Done()) return;
  machine_->RequestStop("stress: the guest did not reach a round end by the deadline");
  stop_requested_ = true;
}

std::string KvmGuest::GuestProblem() {
  std::string problem = hostile_vcpu_ ? "" : RunProblem(run_result_);
  if (dmahostile_) {
    if (!reports_.hostile_reported()) {
      return absl::StrCat("dmahostile sent no report", problem.empty() ? "" : "; ", problem);
    }
    if (!reports_.hostile_problem().empty()) {
      problem = reports_.hostile_problem();
      // The guest printed which cases went wrong: keep those lines.
      for (absl::string_view line : absl::StrSplit(machine_->console_transcript(), '\n')) {
        if (absl::StrContains(line, "case")) absl::StrAppend(&problem, "; ", line);
      }
    }
  } else if (std::string reported = reports_.ReportedProblems(); !reported.empty()) {
    absl::StrAppend(&problem, problem.empty() ? "" : "; ", reported);
  }
  return problem;
}

absl::Status KvmGuest::Collect(StressRun& run) {
  StressResult& r = run.result;
  r.guest_rounds = reports_.rounds_done();
  r.guest_pages_verified = reports_.pages_verified();
  r.guest_mismatches = reports_.mismatches();
  r.first_mismatches = reports_.first_mismatches();
  r.memslots = machine_->host().memslots()->slots().size();
  r.absent_slot_accesses = machine_->fault_stats().absent_accesses;
  if (const KvmDirtyRingLog* ring = machine_->dirty_ring();
      ring != nullptr && r.dirty_log != "write-back") {
    const DirtyRingStats s = ring->stats();
    r.dirty_log = "ring";
    r.dirty_ring_entries = s.entries;
    r.dirty_ring_full_exits = s.full_exits;
  }
  if (stop_requested_) {
    // Not a failure by itself (the verdict is what the guest did until then, and a run
    // that verified nothing fails as vacuous); what held it up fails through the
    // in-progress counts and the run's own problem.
    r.deadline_notes.insert(
        r.deadline_notes.begin(),
        absl::StrCat("the guest did not reach a round end by ",
                     absl::FormatDuration(StopBound()),
                     ": vCPUs stopped where they were (", reports_.rounds_done(),
                     " rounds done)"));
  }
  std::string problem = GuestProblem();
  if (hostile_vcpu_) {
    if (options_.hostile_hits_verifier_for_testing) {
      r.checks_skipped.push_back(
          "the hostile vCPU's arena bound (its stores go into vCPU 1's work pages)");
    }
    const GuestReports::HostileCounts counts = reports_.hostile_counts();
    AddHostileSummary(options_, mem_bytes_, arena_, run_result_, counts, r, problem);
    // Written with the JSON report and the trace, after the verdict (FinishStressRun).
    if (!options_.hostile_log_path.empty()) {
      run.files.push_back({options_.hostile_log_path,
                           HostileLogText(options_.seed, arena_, counts.records)});
    }
    // Doorbells the device cannot take carry no EXPECT_ERROR flag: the hostile vCPU
    // announced each one before ringing it (an aborted one is announced, not counted).
    r.dma_errors_unrequested -=
        std::min(counts.announced_device_errors, r.dma_errors_unrequested);
  }
  r.workload_problem = problem;
  r.workload_ok = problem.empty();
  // vCPU faults: KVM_RUN = EFAULT exits the VMM resolved (reclaim/migrate windows).
  r.faults += run_result_.guest_fault_retries;
  r.fault_retries += run_result_.guest_fault_retries;
  return absl::OkStatus();
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
  KvmGuest guest(options);
  return RunStress(options, guest, progress, tty);
}

}  // namespace mmuvisor::vmm::stress
