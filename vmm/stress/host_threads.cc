#include "vmm/stress/host_threads.h"

#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "notifier/base/page.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/discard.h"
#include "vmm/memory/memory_backing.h"
#include "vmm/stress/host_workload.h"
#include "vmm/stress/traced_mmu.h"

namespace mmuvisor::vmm::stress {
namespace {

// The workload owns memory from here on (the KVM layout puts the image below it).
constexpr uint64_t kFreeStart = 1ull << 20;

// Host threads standing in for the vCPUs of a HostAddressSpace with no hypervisor.
class HostThreadGuest final : public StressGuest {
 public:
  explicit HostThreadGuest(const StressOptions& options) : options_(options) {}
  ~HostThreadGuest() override {
    if (workload_) workload_->Stop();
    workload_.reset();  // joins the vCPU threads
    if (space_) space_->Teardown();  // done by the rig unless a step failed before it
  }

  const char* mode() const override { return "host-threads"; }
  absl::Status Create() override;
  HostAddressSpace& space() override { return *space_; }
  uint64_t free_start() const override { return kFreeStart; }
  uint64_t free_end() const override { return options_.mem_bytes; }
  absl::Duration default_fault_timeout() const override { return options_.fault_timeout; }
  absl::Duration rounds_grace() const override { return absl::ZeroDuration(); }
  absl::Status Wire(const GuestWiring& wiring) override;
  absl::Status Connect(dma::DmaEngine& engine) override;
  absl::Status Start() override { return workload_->Start(); }
  bool Done() override { return workload_->finished() >= options_.vcpus; }
  void Stop(absl::Time /*give_up: the threads stop at their next page*/) override {
    workload_->Stop();
  }
  void Join() override { workload_->Join(); }
  GuestProgress Progress() override {
    const mmu::SecondaryMmuStats s = vcpu_mmu_->stats();
    return {workload_->pages_verified(), workload_->mismatches(), s.faults, s.retries};
  }
  absl::Status Collect(StressRun& run) override;
  std::vector<std::vector<uint64_t>> digests() override { return workload_->digests(); }

 private:
  const StressOptions options_;
  std::unique_ptr<HostAddressSpace> space_;
  TraceLog* trace_ = nullptr;
  std::unique_ptr<TracedSecondaryMmu> vcpu_mmu_;
  std::unique_ptr<DmaTrace> vcpu_trace_;
  std::unique_ptr<dma::SecondaryMmuMemory> vcpu_memory_;
  std::unique_ptr<HostWorkload> workload_;
  std::atomic<uint64_t> balloon_errors_{0};  // balloon discards that failed
};

absl::Status HostThreadGuest::Create() {
  const uint64_t mem = options_.mem_bytes;
  MMUVISOR_RETURN_IF_ERROR(CheckKvmOnlyFlags(options_));
  if (mem % kPageSize != 0 || mem <= kFreeStart) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--mem ", mem, ": host-thread runs need a page-aligned size above 1 MiB"));
  }
  // ParseStressFlags checks this too, unless --mode auto fell back to host threads.
  if (options_.op_pages > mem / kPageSize) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--op-pages ", options_.op_pages, ": more than the guest's ", mem / kPageSize,
        " pages (--mem", options_.mem_given ? "" : ", by default 32M on host threads", ")"));
  }
  // Every page is real host memory once touched; reclaim keeps about --resident of it.
  MMUVISOR_RETURN_IF_ERROR(
      CheckGuestFitsHost(mem, ResidentBound(options_), HostPhysicalMemoryBytes()));
  if (MemstressDescriptorFrames(kFreeStart, mem, options_.vcpus).empty()) {
    return absl::InvalidArgumentError(
        absl::StrCat("memstress layout: [0x", absl::Hex(kFreeStart), ", 0x", absl::Hex(mem),
                     ") is too small for ", options_.vcpus, " vCPUs"));
  }
  HostAddressSpaceOptions space_options;
  space_options.ram_bytes = mem;
  space_options.hub.policy = options_.policy;
  space_options.page_server_threads = static_cast<int>(options_.vcpus);
  MMUVISOR_ASSIGN_OR_RETURN(space_, HostAddressSpace::Create(std::move(space_options)));
  return absl::OkStatus();
}

absl::Status HostThreadGuest::Wire(const GuestWiring& wiring) {
  trace_ = &wiring.trace;
  mmu::SecondaryMmuOptions mmu_options;
  mmu_options.name = "vcpu-mmu";
  mmu_options.retry_timeout = wiring.fault_timeout;
  // No fault-path delays here: a KVM run cannot delay the kernel's own MMU either, so
  // both modes inject at the same place (the DMA path).
  vcpu_mmu_ = std::make_unique<TracedSecondaryMmu>(*space_, mmu_options, trace_, 0);
  MMUVISOR_RETURN_IF_ERROR(vcpu_mmu_->SetLayout(space_->SecondaryLayout()));
  MMUVISOR_RETURN_IF_ERROR(space_->hub().Register(*vcpu_mmu_));
  vcpu_memory_ = std::make_unique<dma::SecondaryMmuMemory>(*vcpu_mmu_, &wiring.fault_latency);
  vcpu_memory_->set_hooks(&wiring.cpu_hooks);
  if (trace_->enabled()) {
    vcpu_trace_ = std::make_unique<DmaTrace>(*trace_, "vcpu fault", "vcpu retry");
    vcpu_memory_->set_trace(vcpu_trace_.get());
  }
  return absl::OkStatus();
}

absl::Status HostThreadGuest::Connect(dma::DmaEngine& engine) {
  HostWorkloadConfig config;
  config.seed = options_.seed;
  config.vcpus = options_.vcpus;
  config.free_start = kFreeStart;
  config.free_end = options_.mem_bytes;
  config.rounds = options_.rounds;
  config.dma = options_.dma;
  config.balloon = options_.balloon;
  if (trace_->enabled()) {
    config.on_thread_start = [trace = trace_](uint32_t v) {
      trace->NameThisThread(absl::StrCat("vCPU ", v));
    };
  }
  // Balloon: the guest gives pages back; the host discards them (next access: zeros). A
  // failed discard is counted and fails the run, as in KVM runs (GuestReports).
  workload_ = std::make_unique<HostWorkload>(
      config, *vcpu_memory_, &engine, [this](uint64_t gpa, uint64_t len) {
        absl::StatusOr<PageRange> pages = space_->PagesOf(Gpa{gpa}, ByteSize{len});
        const absl::Status s = pages.ok() ? vmm::Discard(*space_, *pages) : pages.status();
        // relaxed: a count, read after the vCPU threads are joined.
        if (!s.ok()) balloon_errors_.fetch_add(1, std::memory_order_relaxed);
      });
  return absl::OkStatus();
}

absl::Status HostThreadGuest::Collect(StressRun& run) {
  StressResult& r = run.result;
  const std::vector<std::string> cut = workload_->cut_rounds();
  r.deadline_notes.insert(r.deadline_notes.begin(), cut.begin(), cut.end());
  r.guest_rounds = workload_->rounds_done();
  r.guest_pages_verified = workload_->pages_verified();
  r.guest_mismatches = workload_->mismatches();
  r.first_mismatches = workload_->first_mismatches();
  r.workload_problem = workload_->problem();
  if (const uint64_t failed = balloon_errors_.load(std::memory_order_relaxed); failed > 0) {
    absl::StrAppend(&r.workload_problem, r.workload_problem.empty() ? "" : "; ", failed,
                    " balloon discard(s) failed");
  }
  r.workload_ok = r.workload_problem.empty();
  run.AddMmu(*vcpu_mmu_);
  return absl::OkStatus();
}

}  // namespace

absl::Status CheckKvmOnlyFlags(const StressOptions& options) {
  if (options.ram_slots != 1) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--slots ", options.ram_slots, ": host-thread runs have no memslots (KVM runs only)"));
  }
  if (options.aliases != 0 || options.memslot_churn != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        options.aliases != 0 ? "--aliases " : "--memslot-churn ",
        options.aliases != 0 ? absl::StrCat(options.aliases)
                             : absl::StrCat(options.memslot_churn),
        ": host-thread runs have no memslots (KVM runs only)"));
  }
  if (options.dirty_log != DirtyLogSource::kBitmap &&
      options.dirty_log != DirtyLogSource::kNone) {
    return absl::InvalidArgumentError(absl::StrCat(
        "--dirty ", DirtyLogSourceName(options.dirty_log),
        ": host-thread runs have no dirty log (KVM runs only; every resident page is written "
        "back)"));
  }
  return absl::OkStatus();
}

absl::StatusOr<HostStressOutcome> RunHostStress(const StressOptions& options,
                                                std::FILE* progress, bool tty) {
  HostThreadGuest guest(options);
  return RunStress(options, guest, progress, tty);
}

}  // namespace mmuvisor::vmm::stress
