// The KVM guest of a stress run: the memstress guest (or hostile, or dmahostile) on real
// vCPUs through vmm::Machine, whose RAM is vmm/host's HostAddressSpace (Machine::host()).
// The rig (stress_rig.h) does everything around it, exactly as for host threads; what is
// KVM's own:
//   - the kernel's MMU serves the vCPUs (no vcpu-mmu subscription): their KVM_RUN =
//     EFAULT exits inside windows are the Machine's (RunResult::guest_fault_retries);
//   - the DMA engine sits at MMV_PORT_DMA (Machine::AttachPortDevice);
//   - balloon calls from the guest discard pages (HostAddressSpace::Discard);
//   - the guest reports progress, mismatches and DMA errors by ucall (GuestReports).
// Stopping: at --duration the stop word (boot info args[7]); each vCPU ends its round and
// reports DONE. A guest that has not stopped by half the run's slack later is stopped with
// Machine::RequestStop. With --rounds the guest stops by itself.
//
// Threads: Machine::Run runs on a thread of its own, started by Start and joined by Join.
#ifndef MMUVISOR_VMM_STRESS_STRESS_KVM_H_
#define MMUVISOR_VMM_STRESS_STRESS_KVM_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vmm/stress/stress_rig.h"
#include "vmm/stress/stress_options.h"

namespace mmuvisor::vmm::stress {

// Guest memory of a KVM run when --mem is not given: small, so that the guest's working
// set is most of RAM (reclaim to --resident then has work) and a round is short even
// under nested KVM on TCG (there a round of 8 MiB took ~15 s).
inline constexpr uint64_t kKvmDefaultMemBytes = 2ull << 20;
// --fault-timeout of a KVM run when not given. Host windows under KVM take milliseconds
// (mprotect, dirty-log harvest, swap writes) and several run at once; a SecondaryMmu fault
// retries while any overlapping window is open (KVM's rule), so it can wait long.
inline constexpr absl::Duration kKvmDefaultFaultTimeout = absl::Seconds(30);
// A --duration run writes the stop word at --duration and stops the vCPUs where they are
// at --duration + RunSlack/2 (stress_options.h), even before the first verifying round
// (round 2): such a run verified nothing and FAILs as vacuous, saying so. (It used to wait
// up to 60 s for two rounds, which broke the bound.) A run that must verify on a slow host
// uses --rounds, which is bounded by its rounds instead.
// The fault timeout above is cut to RunSlack/2 in --duration runs.

// OK when `kvm_path` opens read-write; FailedPrecondition "needs <path>: <errno text>"
// otherwise (absent on this kind of machine when the host kernel does not expose KVM).
absl::Status ProbeKvm(const std::string& kvm_path);

// Errors: FailedPrecondition from ProbeKvm; InvalidArgument for options the guest cannot
// run with (unknown guest, memory too small) or a bad image; the Machine's errors
// otherwise. The JSON and trace files are written when their paths are set.
absl::StatusOr<HostStressOutcome> RunKvmStress(const StressOptions& options,
                                               std::FILE* progress, bool tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_KVM_H_
