// MemslotControl: the hypervisor side of a memslot change, implemented by the VMM (KVM:
// KVM_SET_USER_MEMORY_REGION through KvmVm; see kvm_bindings.h) and by fakes in tests.
// HostAddressSpace calls it with every invalidation window closed and new ones held off
// (KVM's rule), inside the kUnmap window of the slot's host range.
//
// Threads: called from the thread that changes memslots or tears the address space down,
// never concurrently with itself.
#ifndef MMUVISOR_VMM_HOST_MEMSLOT_CONTROL_H_
#define MMUVISOR_VMM_HOST_MEMSLOT_CONTROL_H_

#include "absl/status/status.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {

class MemslotControl {
 public:
  virtual ~MemslotControl() = default;
  // Makes `slot` visible to the guest; for a slot id already set (same host range and
  // size), moves it to slot.gpa (KVM_MR_MOVE). REQUIRES: the host range stays mapped until
  // DeleteSlot(slot) returns.
  virtual absl::Status SetSlot(const GuestMemorySlot& slot) = 0;
  // Removes `slot` (KVM: size 0). After it returns the guest cannot reach the host range.
  virtual absl::Status DeleteSlot(const GuestMemorySlot& slot) = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_MEMSLOT_CONTROL_H_
