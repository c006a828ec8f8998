// Unmap: remove a memslot (Linux/KVM: KVM_SET_USER_MEMORY_REGION with size 0, which waits
// for mn_active_invalidate_count == 0). Every page of RAM is held first (AllPagesHeld:
// waits until no window is open and keeps new ones out); the slot's dirty log is harvested
// (KVM frees it with the slot); one kUnmap window on the slot's pages deletes the slot
// through the MemslotControl; the new memslot table is published and the memslot observers
// (e.g. SecondaryMmu::SetLayout) run before the pages are released, so no secondary MMU
// translates the slot's guest frames once a window or fault can go on. The kUnmap window
// zaps every guest frame of those host pages, aliases included; the observers then keep
// the deleted frames out for good.
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
