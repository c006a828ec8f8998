// Unmap: remove a memslot (Linux/KVM: KVM_SET_USER_MEMORY_REGION with size 0, which waits
// for mn_active_invalidate_count == 0). Every page of RAM is held first (AllPagesHeld:
// waits until no window is open and keeps new ones out), then one kUnmap window on the
// slot's pages deletes the slot through the MemslotControl and publishes the new memslot
// table; the memslot observers (e.g. DmaPort -> SecondaryMmu::SetLayout) run after the
// pages are released, on this thread.
//
// Threads: as Reclaim (reclaim.h); not from a memslot observer.
#ifndef MMUVISOR_VMM_HOST_UNMAP_H_
#define MMUVISOR_VMM_HOST_UNMAP_H_

#include <cstdint>

#include "absl/status/status.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// Errors: NotFound (no such slot), FailedPrecondition (torn down), MemslotControl's.
absl::Status Unmap(HostAddressSpace& space, uint32_t slot);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_UNMAP_H_
