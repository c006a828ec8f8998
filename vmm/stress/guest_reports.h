// GuestReports: what the memstress / dmahostile guests tell the VMM through ucall REPORT
// and BALLOON during a KVM stress run, gathered for the verdict and the live progress:
// per-vCPU progress (rounds, pages verified, the digest after every round: the replay
// check compares them), mismatches (the first few kept verbatim), DMA errors the guest
// saw, and dmahostile's summary. Balloon calls are handed to a callback (the runner
// discards the pages through the HostAddressSpace).
// With a hostile vCPU (set_hostile_vcpu, the `hostile` guest) that vCPU's reports of the
// ABI's kinds are its random records, not the workload's: counted as stray, never read as
// progress, mismatches or DMA errors; its HOSTILE_REPORT_* kinds (guests/hostile/
// hostile_shared.h) are its counts, self-check failures and announced device errors.
//
// Threads: the MachineObserver calls come on vCPU threads; the accessors on any thread.
// mu_ guards everything but the relaxed counters (read live by the progress line).
#ifndef MMUVISOR_VMM_STRESS_GUEST_REPORTS_H_
#define MMUVISOR_VMM_STRESS_GUEST_REPORTS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/types/span.h"
#include "notifier/base/mutex.h"
#include "vmm/machine/machine.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {

class GuestReports : public MachineObserver {
 public:
  explicit GuestReports(uint32_t vcpus);
  // `balloon(gpa, len)` runs on the reporting vCPU's thread; its errors are counted.
  // REQUIRES: before the guest runs.
  void set_balloon(std::function<absl::Status(uint64_t, uint64_t)> balloon) {
    balloon_ = std::move(balloon);
  }

  // REQUIRES: before the guest runs.
  void set_hostile_vcpu(uint32_t vcpu) ABSL_LOCKS_EXCLUDED(mu_);

  void OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) override;

  // Live values (relaxed).
  uint64_t pages_verified() const { return verified_.load(std::memory_order_relaxed); }
  uint64_t mismatches() const { return mismatches_.load(std::memory_order_relaxed); }

  // End-of-run values (call after the guest stopped).
  uint64_t rounds_done() const ABSL_LOCKS_EXCLUDED(mu_);  // summed over vCPUs
  // Every vCPU reported progress for round `round` (or later). Any time.
  bool AllReachedRound(uint64_t round) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t guest_dma_errors() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t balloon_errors() const ABSL_LOCKS_EXCLUDED(mu_);
  // What the workload's own reports say went wrong, for the verdict: DMA chains the guest
  // saw end without OK (a device error, or no status by its poll limit: the device
  // never finished the chain or its status write was lost; counted whether or not the
  // deadline stopped the guest before it exited) and balloon discards that failed. Empty
  // when nothing did; else one line naming the first DMA error.
  std::string ReportedProblems() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<Mismatch> first_mismatches() const ABSL_LOCKS_EXCLUDED(mu_);
  std::vector<std::vector<uint64_t>> digests() const ABSL_LOCKS_EXCLUDED(mu_);
  // dmahostile: empty when it reported that every malformed descriptor got the expected
  // error and a valid copy still worked; else why not. memstress runs: always empty.
  std::string hostile_problem() const ABSL_LOCKS_EXCLUDED(mu_);
  bool hostile_reported() const ABSL_LOCKS_EXCLUDED(mu_);

  // The hostile guest (all zero/empty without a hostile vCPU).
  struct HostileCounts {
    uint64_t records = 0, ucalls = 0, port_outs = 0, port_ins = 0, dma_chains = 0;
    uint64_t stores = 0, balloons = 0, descriptors_checked = 0, sweeps = 0;
    uint64_t self_check_failures = 0;
    uint64_t announced_device_errors = 0;  // HOSTILE_REPORT_ANNOUNCE, summed
    uint64_t stray_reports = 0;            // the hostile vCPU's reports of the ABI's kinds
    bool terminal_reached = false;         // HOSTILE_REPORT_TERMINAL arrived
    uint64_t terminal = 0, terminal_record = 0;
    // One line per self-check failure reported (HOSTILE_CHECKS_REPORTED at most).
    std::vector<std::string> check_failures;
    // Per vCPU: memstress's exit code if it reported VERIFIER_DONE (the hostile vCPU's
    // terminal record may stop it before its DONE is seen).
    std::vector<std::optional<uint64_t>> verifier_done;
  };
  HostileCounts hostile_counts() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void OnHostileReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  struct PerVcpu {
    uint64_t rounds = 0;
    uint64_t verified = 0;
    std::vector<uint64_t> digests;  // after each round, the first 2^16 rounds
  };

  std::function<absl::Status(uint64_t, uint64_t)> balloon_;  // set before the run
  mutable Mutex mu_;
  std::vector<PerVcpu> vcpus_ ABSL_GUARDED_BY(mu_);
  std::vector<Mismatch> first_mismatches_ ABSL_GUARDED_BY(mu_);
  uint64_t dma_errors_ ABSL_GUARDED_BY(mu_) = 0;
  std::string first_dma_error_ ABSL_GUARDED_BY(mu_);
  uint64_t balloon_errors_ ABSL_GUARDED_BY(mu_) = 0;
  bool hostile_reported_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<uint32_t> hostile_vcpu_ ABSL_GUARDED_BY(mu_);
  HostileCounts hostile_ ABSL_GUARDED_BY(mu_);
  std::string hostile_problem_ ABSL_GUARDED_BY(mu_);
  std::atomic<uint64_t> verified_{0};    // relaxed: live statistic
  std::atomic<uint64_t> mismatches_{0};  // relaxed: live statistic
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_GUEST_REPORTS_H_
