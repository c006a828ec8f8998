// StressResult: everything a stress run measured, the verdict rule over it, and its three
// renderings: the short human report, the JSON report (--json) and one-line summaries.
// Pure data and pure functions: unit-tested without KVM.
//
// Verdict rule (README.md, "Verdict and report"): PASS only when all of these hold, else FAIL with
// every failed condition named in `failures`:
//   - the guest (or the host-thread workload) reported no mismatch,
//   - the notifier's pairing checker saw no violation,
//   - every in-progress count is back at zero (each secondary MMU's in_progress and
//     active invalidations, the hub's open windows and active interval ranges),
//   - the device reported no error the guest did not ask for,
//   - every memslot change of the churn succeeded,
//   - no host operation and no reclaim-driver pass failed (an OOM reap skipped after its
//     retries is not a failure),
//   - the workload itself ran (a run that verified nothing, or whose vCPUs failed, is not
//     a pass).
// No locks; any thread.
#ifndef MMUVISOR_VMM_STRESS_STRESS_RESULT_H_
#define MMUVISOR_VMM_STRESS_STRESS_RESULT_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"

namespace mmuvisor::vmm::stress {

struct Mismatch {
  uint64_t gpa = 0;
  uint64_t expected = 0;
  uint64_t found = 0;
  uint64_t round = 0;
  uint32_t vcpu = 0;
  uint32_t source = 0;  // MMV_MISMATCH_*
};

// An in-progress count observed at the end of the run.
struct InProgressCount {
  std::string name;  // e.g. "dma-mmu.in_progress", "hub.open_windows"
  int64_t value = 0;
};

struct LatencyPercentiles {
  uint64_t count = 0;
  uint64_t p50_ns = 0, p90_ns = 0, p99_ns = 0, max_ns = 0;
};

// The hostile guest's run (`--guest hostile`): what its vCPU did and how it ended.
struct HostileSummary {
  bool present = false;
  uint32_t vcpu = 0;
  uint64_t records = 0, ucalls = 0, port_outs = 0, port_ins = 0, dma_chains = 0;
  uint64_t stores = 0, balloons = 0, descriptors_checked = 0, sweeps = 0;
  uint64_t self_check_failures = 0;
  uint64_t announced_device_errors = 0;  // device errors it caused on purpose, announced
  uint64_t stray_reports = 0;            // reports of the ABI's kinds it sent at random
  std::string terminal;                  // its terminal record
  std::string end;                       // how the VMM says it ended
  std::string replay;                    // the command line that replays it
};

struct StressResult {
  // Configuration echoed into the report.
  uint64_t seed = 0;
  std::string mode;    // "kvm" or "host-threads"
  std::string policy;  // notifier dispatch policy
  std::string dma_path;
  double duration_s = 0;

  // Workload (guest or host threads).
  uint64_t guest_pages_verified = 0;
  uint64_t guest_rounds = 0;
  uint64_t guest_mismatches = 0;
  std::vector<Mismatch> first_mismatches;  // capped
  bool workload_ok = true;                 // vCPUs/threads ended as expected
  std::string workload_problem;            // why not, one line

  // Notifier.
  uint64_t pairing_violations = 0;
  std::string first_violation;
  uint64_t invalidations = 0;  // hub starts attempted by the host operations
  uint64_t eagain = 0;         // starts that failed with EAGAIN
  uint64_t host_ops = 0;       // reclaim/discard/migrate/protect/reap operations done
  // Host operations (migrate, protect, OOM reap) that returned an error; they fail the run.
  uint64_t host_op_failures = 0;
  std::string first_host_op_failure;
  // OOM reaps skipped after their retries (busy pages, refused starts): the non-blockable
  // path's expected outcome, counted, not a failure.
  uint64_t host_op_skips = 0;
  // Reclaim-driver passes that ended with an error; they fail the run.
  uint64_t reclaim_errors = 0;
  std::string last_reclaim_error;

  // Secondary MMUs (summed over every MMU of the run).
  uint64_t faults = 0;
  uint64_t fault_retries = 0;
  uint64_t fault_timeouts = 0;
  LatencyPercentiles fault_latency;

  // Paging.
  uint64_t swap_ins = 0;
  uint64_t swap_outs = 0;
  // Dirty tracking: "bitmap", "ring" or "write-back" (no trusted log: every resident page
  // written back), why (the startup self-check's line), and the ring's harvest counts.
  uint64_t memslots = 1;  // guest RAM's memslots (--slots)
  std::string dirty_log = "write-back";
  std::string dirty_reason;
  uint64_t dirty_ring_entries = 0;     // dirty gfns harvested from the vCPUs' rings
  uint64_t dirty_ring_full_exits = 0;  // KVM_EXIT_DIRTY_RING_FULL the vCPU threads handled

  // Aliases and memslot churn (--aliases, --memslot-churn).
  uint64_t aliases = 0;
  uint64_t alias_zaps = 0;  // secondary-MMU entries invalidations removed in alias slots
  uint64_t churn_adds = 0, churn_moves = 0, churn_deletes = 0;
  uint64_t churn_failures = 0;  // memslot changes that returned an error (fail the run)
  std::string first_churn_failure;
  // Guest accesses to a spare-slot window while the slot was elsewhere, answered by the
  // VMM (reads all ones) instead of stopping the VM.
  uint64_t absent_slot_accesses = 0;

  // DMA.
  uint64_t dma_ops = 0;
  uint64_t dma_errors = 0;              // all error statuses and bad doorbells
  uint64_t dma_errors_unrequested = 0;  // of which the guest did not ask for
  uint64_t dma_retries = 0;
  std::vector<std::string> dma_warnings;  // first few

  std::vector<InProgressCount> in_progress_final;

  HostileSummary hostile;

  // Time bound (stress_options.h RunSlack): the run was asked to end by bound_s.
  double bound_s = 0;
  bool stopped_by_deadline = false;  // the deadline (not --rounds or a failure) ended it
  // What the deadline cut short or found still stuck, one line each ("vCPU 1 stopped
  // mid-round 5", "fault timeout cut from 30s to 500ms", "guest did not reach a round
  // end: vCPUs stopped"). Informational; the stuck things also fail the verdict through
  // the conditions above (in-progress counts, workload problem).
  std::vector<std::string> deadline_notes;
  // Checks this run turned off on purpose (a must-fail control); named in the verdict.
  std::vector<std::string> checks_skipped;

  // Filled by DecideVerdict.
  bool pass = false;
  std::vector<std::string> failures;
};

// Sets pass and failures from the fields above.
void DecideVerdict(StressResult& result);

int64_t InProgressTotal(const StressResult& result);

// The human report: verdict line first, then the counters, then failures and the first
// mismatches/violations/warnings. Ends with a newline.
std::string FormatReport(const StressResult& result);

// The --json document (see README "Report fields").
std::string ReportToJson(const StressResult& result);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_RESULT_H_
