// The KVM side of a stress run: the memstress guest on real vCPUs, its RAM owned by
// vmm/host's HostAddressSpace (reclaim, page server, hub), the DMA engine on the port bus.
//
// Status (see vmm/stress/README.md): the pieces this run needs from the VMM core are not
// there yet, so RunKvmStress checks /dev/kvm and then returns Unimplemented naming them:
//   1. Machine with RAM supplied by a HostAddressSpace (today it maps its own GuestMemory,
//      so no host operation or notifier window ever covers guest memory), and a UcallDevice
//      that reads through it;
//   2. Machine accepting extra port devices (the DMA engine at MMV_PORT_DMA);
//   3. VcpuRunner handling KVM_RUN = EFAULT the way HostAddressSpace requires
//      (ClassifyGuestFault -> WaitForPage -> re-enter) — reclaim and migrate windows map
//      the range read-only, so without it the first vCPU store into a window stops the VM.
// The host-thread runner (host_scenario.h) exercises everything else of the stack.
// Threads: the caller's.
#ifndef MMUVISOR_VMM_STRESS_STRESS_KVM_H_
#define MMUVISOR_VMM_STRESS_STRESS_KVM_H_

#include <cstdio>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/stress/host_scenario.h"
#include "vmm/stress/stress_options.h"

namespace mmuvisor::vmm::stress {

// OK when `kvm_path` opens read-write; FailedPrecondition naming the path and errno
// otherwise (absent on this kind of machine when the host kernel does not expose KVM).
absl::Status ProbeKvm(const std::string& kvm_path);

// FailedPrecondition from ProbeKvm, else Unimplemented (see the header comment).
absl::StatusOr<HostStressOutcome> RunKvmStress(const StressOptions& options,
                                               std::FILE* progress, bool tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_KVM_H_
