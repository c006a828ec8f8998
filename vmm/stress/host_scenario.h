// RunHostStress: a whole stress run without KVM. The memstress algorithm runs on host
// threads (host_workload.h) over a PagePoolSpace; everything else is the real thing: the
// notifier hub with the chosen policy, the vCPU-side and DMA-side secondary MMUs (or the
// interval mirror), the DMA engine and its device thread, host operation threads at the
// chosen rates, EAGAIN and delay injection, the verdict, report, JSON and trace.
// `mmuvisor stress --host-threads` runs it; the KVM-free tests drive it directly.
//
// Threads: the caller's thread orchestrates; it starts and joins every thread it uses.
#ifndef MMUVISOR_VMM_STRESS_HOST_SCENARIO_H_
#define MMUVISOR_VMM_STRESS_HOST_SCENARIO_H_

#include <cstdint>
#include <cstdio>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {

struct HostStressOutcome {
  StressResult result;  // verdict decided
  std::vector<std::vector<uint64_t>> digests;  // per vCPU, per round (replay checks)
};

// `progress` (may be null): where the live progress goes; `tty` picks its style.
// Errors: InvalidArgument for options that cannot run (memory too small for the vCPUs).
// The JSON and trace files are written when their paths are set.
absl::StatusOr<HostStressOutcome> RunHostStress(const StressOptions& options,
                                                std::FILE* progress, bool tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOST_SCENARIO_H_
