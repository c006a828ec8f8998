// RunHostStress: a whole stress run without KVM (`mmuvisor stress --mode host-threads`,
// and `--mode auto` where /dev/kvm cannot be opened). The guest's RAM is vmm/host's
// HostAddressSpace with no hypervisor attached (no MemslotControl, no dirty log: every
// resident page is written back); host threads stand in for the vCPUs and run the
// memstress algorithm (host_workload.h), reaching memory the way a vCPU's accesses reach
// it under KVM: through a secondary MMU "vcpu-mmu" subscribed to the space's hub (it
// stands in for KVM's own MMU notifier), with the full fault/retry protocol; it is a
// dma::DeviceMmu, so each access is a section of its in-flight drain, which its
// invalidate_range_start waits for. Everything else is the rig's (stress_rig.h), exactly
// as in a KVM run.
//
// Threads: the caller's thread orchestrates; it starts and joins every thread it uses.
#ifndef MMUVISOR_VMM_STRESS_HOST_THREADS_H_
#define MMUVISOR_VMM_STRESS_HOST_THREADS_H_

#include <cstdio>

#include "absl/status/statusor.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_rig.h"

namespace mmuvisor::vmm::stress {

// InvalidArgument naming the first flag only a KVM run has a use for (--slots other than 1,
// --aliases, --memslot-churn, --dirty ring|auto): host-thread runs refuse them, and
// `--mode auto` does not fall back to host threads when one is given.
absl::Status CheckKvmOnlyFlags(const StressOptions& options);

// Errors: InvalidArgument for options that cannot run (memory not page aligned, too small
// for the vCPUs, more than the host can keep resident); vmm/host's errors creating guest
// RAM (e.g. userfaultfd refused). The JSON and trace files are written when their paths
// are set.
absl::StatusOr<HostStressOutcome> RunHostStress(const StressOptions& options,
                                                std::FILE* progress, bool tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOST_THREADS_H_
