#include "vmm/stress/stress_run.h"

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "vmm/stress/json_output.h"

namespace mmuvisor::vmm::stress {

void StressRun::SetHeader(const StressOptions& options, const char* mode, absl::Time start) {
  result.seed = options.seed;
  result.mode = mode;
  result.policy = PolicyFlagName(options.policy);
  result.dma_path = DmaPathName(options.dma_path);
  result.duration_s = absl::ToDoubleSeconds(absl::Now() - start);
}

void StressRun::AddCuts(const StressOptions& options, const Cuts& cuts,
                        const dma::DmaEngine& engine) {
  if (cuts.timeout_cut) {
    result.deadline_notes.push_back(absl::StrCat(
        cuts.timeout_name, " cut from ", absl::FormatDuration(cuts.wanted_timeout), " to ",
        absl::FormatDuration(cuts.used_timeout), " to keep the time bound"));
  }
  if (cuts.delay_cut && options.delay_probability > 0) {
    result.deadline_notes.push_back(absl::StrCat(
        "delay cut from ", absl::FormatDuration(options.delay), " to ",
        absl::FormatDuration(cuts.delay),
        " (an eighth of the fault timeout, which delays count against)"));
  }
  if (const uint64_t aborted = engine.stats().aborted_descriptors; aborted > 0) {
    result.deadline_notes.push_back(
        absl::StrCat(aborted, " DMA descriptor(s) left unfinished by the device's abort"));
  }
  if (options.skip_dma_retry_check_for_testing) {
    result.checks_skipped.push_back(absl::StrCat(
        "--test-skip-dma-retry: dma-mmu fault-path seq re-checks and the DMA path's "
        "AccessRetry, with ",
        cuts.forced, " forced into its window"));
  }
}

void StressRun::AddMmu(const mmu::SecondaryMmu& mmu) {
  // The MMU's name is not exposed; the traced subclass and the runners use these names.
  const mmu::SecondaryMmuStats s = mmu.stats();
  result.faults += s.faults;
  result.fault_retries += s.retries;
  result.fault_timeouts += s.timeouts;
  result.alias_zaps += s.alias_zapped;
  const std::string name = mmu.name();
  result.in_progress_final.push_back({name + ".in_progress", mmu.in_progress()});
  result.in_progress_final.push_back({name + ".active_invalidations", mmu.active_invalidations()});
  if (s.bugs != 0) {
    result.in_progress_final.push_back({name + ".unpaired_end_bugs", static_cast<int64_t>(s.bugs)});
  }
}

void StressRun::AddMirror(const mmu::Mirror& mirror) {
  const mmu::MirrorStats s = mirror.stats();
  result.faults += s.faults;
  result.fault_retries += s.retries;
  result.fault_timeouts += s.timeouts;
}

void StressRun::AddDmaPathStats(const dma::DmaMemoryStats& stats) {
  result.dma_retries += stats.access_retries;
}

void StressRun::AddEngine(const dma::DmaEngine& engine) {
  const dma::DmaStats s = engine.stats();
  result.dma_ops += s.ops_ok;
  result.dma_errors += s.errors();  // bad doorbells are counted as unrequested errors
  result.dma_errors_unrequested += s.errors_unrequested;
  for (std::string& w : engine.warnings()) result.dma_warnings.push_back(std::move(w));
}

void StressRun::AddHub(const notifier::NotifierSubscriptions& hub) {
  const notifier::PairingSummary p = hub.pairing_summary();
  result.pairing_violations += p.violations;
  if (!p.first_violations.empty() && result.first_violation.empty()) {
    result.first_violation = p.first_violations.front().ToString();
  }
  result.in_progress_final.push_back({"hub.open_windows", p.open});
  result.in_progress_final.push_back(
      {"hub.active_interval_ranges", static_cast<int64_t>(hub.active_invalidate_ranges())});
}

void StressRun::AddHostOps(const HostOpDriver& ops) {
  result.host_ops += ops.ops_done();
  result.host_op_skips += ops.ops_skipped();
  result.host_op_failures += ops.ops_failed();
  if (result.first_host_op_failure.empty()) result.first_host_op_failure = ops.first_failure();
}

void StressRun::AddReclaimDriver(const ReclaimDriver& reclaimd) {
  const ReclaimDriverStats s = reclaimd.stats();
  result.eagain += s.eagain_retries;
  result.reclaim_errors += s.errors;
  if (s.errors > 0) result.last_reclaim_error = std::string(reclaimd.last_error().message());
}

LatencyPercentiles Percentiles(const LatencyHistogram& histogram) {
  const LatencyHistogram::Snapshot s = histogram.TakeSnapshot();
  return LatencyPercentiles{s.count, s.PercentileNs(0.5), s.PercentileNs(0.9),
                            s.PercentileNs(0.99), s.max_ns};
}

absl::Status FinishStressRun(const StressOptions& options, const TraceLog& trace,
                             StressRun& run) {
  DecideVerdict(run.result);
  std::vector<std::string> failed;
  const auto note = [&failed](const absl::Status& s) {
    if (!s.ok()) failed.emplace_back(s.message());
  };
  if (!options.json_path.empty()) note(WriteTextFile(options.json_path, ReportToJson(run.result)));
  if (trace.enabled()) note(trace.WriteJson(options.trace_path));
  for (const StressRun::ReportFile& file : run.files) note(WriteTextFile(file.path, file.text));
  if (failed.empty()) return absl::OkStatus();
  return absl::DataLossError(absl::StrJoin(failed, "; "));
}

}  // namespace mmuvisor::vmm::stress
