// DirtyRingFullHandler: what a vCPU thread does when KVM_RUN returns with
// KVM_EXIT_DIRTY_RING_FULL (vmm/kvm/dirty_ring.h): its dirty ring reached the soft limit
// and KVM will not enter the guest again until the ring has been harvested and
// KVM_RESET_DIRTY_RINGS issued. VcpuRunner calls the handler on the vCPU thread and
// re-enters on OK; an error stops the vCPU (kHostError).
#ifndef MMUVISOR_VMM_VCPU_DIRTY_RING_FULL_H_
#define MMUVISOR_VMM_VCPU_DIRTY_RING_FULL_H_

#include <cstdint>

#include "absl/status/status.h"

namespace mmuvisor::vmm {

class DirtyRingFullHandler {
 public:
  virtual ~DirtyRingFullHandler() = default;
  // Called on vCPU `vcpu`'s thread; may block briefly (it takes the harvester's lock).
  virtual absl::Status OnDirtyRingFull(uint32_t vcpu) = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_DIRTY_RING_FULL_H_
