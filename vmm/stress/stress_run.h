// StressRun: gathers the end-of-run facts from the parts of a stress run (secondary MMUs,
// the mirror, the DMA engine and its memory path, the hub) into a StressResult, naming
// every in-progress count it checks ("dma-mmu.in_progress", "hub.open_windows", ...).
// Shared by the KVM runner and the host-thread runner. Call once everything is quiescent
// (threads joined, device idle) and before teardown.
#ifndef MMUVISOR_VMM_STRESS_STRESS_RUN_H_
#define MMUVISOR_VMM_STRESS_STRESS_RUN_H_

#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mmu/mirror.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/host/reclaim_driver.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/stress/host_ops.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

struct StressRun {
  StressResult result;
  // Files the run writes besides the JSON report and the trace (the hostile guest's
  // --hostile-log), written by FinishStressRun with them.
  struct ReportFile {
    std::string path;
    std::string text;
  };
  std::vector<ReportFile> files;

  // The run's identity: seed, mode ("kvm" / "host-threads"), policy, DMA path, and the
  // duration since `start`.
  void SetHeader(const StressOptions& options, const char* mode, absl::Time start);

  void AddMmu(const mmu::SecondaryMmu& mmu);
  void AddMirror(const mmu::Mirror& mirror);
  void AddDmaPathStats(const dma::DmaMemoryStats& stats);
  void AddEngine(const dma::DmaEngine& engine);
  void AddHub(const notifier::NotifierSubscriptions& hub);
  // The host-op threads' operations done (into host_ops), failed and skipped.
  void AddHostOps(const HostOpDriver& ops);
  // The reclaim driver's failed passes and its last error.
  void AddReclaimDriver(const ReclaimDriver& reclaimd);

  // Notes on what the run cut to keep its time bound (`timeout_name` cut from `wanted` to
  // `used` when `timeout_cut`; the delay cut to `delay` when `delay_cut`; descriptors the
  // device's abort left) and on the checks --test-skip-dma-retry turned off, naming the
  // invalidation the control forces into each DMA fault's window (`forced`).
  struct Cuts {
    absl::string_view timeout_name;
    bool timeout_cut = false;
    absl::Duration wanted_timeout, used_timeout;
    bool delay_cut = false;
    absl::Duration delay;
    absl::string_view forced;
  };
  void AddCuts(const StressOptions& options, const Cuts& cuts, const dma::DmaEngine& engine);
};

LatencyPercentiles Percentiles(const LatencyHistogram& histogram);

// The end of every run: decides `run.result`'s verdict, then writes the JSON report
// (options.json_path), the trace (when `trace` is enabled) and `run.files`, each one
// tried even when an earlier one failed. The verdict stands whatever the writes do.
// REQUIRES: recording into `trace` has stopped. Errors: the failed writes' (each names
// its file), joined.
absl::Status FinishStressRun(const StressOptions& options, const TraceLog& trace,
                             StressRun& run);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_RUN_H_
