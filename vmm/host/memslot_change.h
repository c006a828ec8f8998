// AddMemslot and MoveMemslot: the memslot changes besides Unmap (unmap.h), as KVM makes
// them with KVM_SET_USER_MEMORY_REGION (KVM_MR_CREATE, KVM_MR_MOVE). Each waits until no
// invalidation window is open and keeps new ones out (AllPagesHeld: KVM's memslot updates
// wait for mn_active_invalidate_count == 0), changes the slot through the MemslotControl,
// publishes the new MemslotTable and runs the memslot observers before any window opens
// again (host_window.h, AllPagesHeld::ChangeMemslots). A slot may cover host pages another
// slot covers (an alias); host operations on those pages then reach every slot's guest
// frames. A move keeps the slot's host pages and size and changes its guest address: no
// secondary MMU translates the old frames after it returns (SecondaryMmu::SetLayout zaps
// what changed).
//
// Threads: as Reclaim (reclaim.h); not from a memslot observer, a hub callback or a
// page-server handler.
#ifndef MMUVISOR_VMM_HOST_MEMSLOT_CHANGE_H_
#define MMUVISOR_VMM_HOST_MEMSLOT_CHANGE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "vmm/host/host_options.h"
#include "vmm/memory/address.h"

namespace mmuvisor::vmm {

class HostAddressSpace;

// Adds `slot` (RAM pages [first_page, first_page + num_pages) at slot.gpa; flags as given,
// plus KVM_MEM_LOG_DIRTY_PAGES when the space has a dirty log).
// Errors: InvalidArgument (pages outside RAM, a slot id in use, a guest range that overlaps
// another slot, MemslotTable's rules), FailedPrecondition (torn down), MemslotControl's.
absl::Status AddMemslot(HostAddressSpace& space, const RamSlot& slot);

// Moves slot `slot` to guest-physical `gpa`. Errors: NotFound (no such slot), the rest as
// AddMemslot.
absl::Status MoveMemslot(HostAddressSpace& space, uint32_t slot, Gpa gpa);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_MEMSLOT_CHANGE_H_
