// Unmap (unmap.h): every page held, then the slot's log harvested, one kUnmap window
// deletes the memslot, the new table is published and the observers run.
#include "vmm/host/unmap.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"

namespace mmuvisor::vmm {

absl::Status Unmap(HostAddressSpace& space, uint32_t slot_id) {
  // KVM's rule: a memslot change waits until no invalidation window is open, and no new
  // one opens until the new memslots are published.
  AllPagesHeld held(space);
  if (space.torn_down()) {
    return absl::FailedPreconditionError(
        "HostAddressSpace::Unmap: the address space was torn down");
  }
  const std::shared_ptr<const MemslotTable> table = space.memslots();
  const GuestMemorySlot* found = table->FindId(slot_id);
  if (found == nullptr) {
    return absl::NotFoundError(absl::StrFormat("HostAddressSpace::Unmap: no memslot %d", slot_id));
  }
  const GuestMemorySlot victim = *found;
  std::vector<GuestMemorySlot> rest;
  for (const GuestMemorySlot& s : table->slots()) {
    if (s.slot != slot_id) rest.push_back(s);
  }
  MMUVISOR_ASSIGN_OR_RETURN(MemslotTable next, MemslotTable::Create(std::move(rest)));
  const PageRange range{(victim.hva.value - space.AddressOf(0)) / kPageSize,
                        victim.size.value / kPageSize};
  MMUVISOR_RETURN_IF_ERROR(held.ChangeMemslots(
      &victim,
      [&](MemslotControl* control) -> absl::Status {
        MMUVISOR_ASSIGN_OR_RETURN(HostWindow window,
                                  HostWindow::OpenHeld(held, range, notifier::Event::kUnmap));
        const absl::Status deleted =
            control != nullptr ? control->DeleteSlot(victim) : absl::OkStatus();
        (void)window.Close();  // a kUnmap window restores no protection
        return deleted;
      },
      std::move(next)));
  HostCounters::Add(HostWindow::CountersOf(space).unmaps, 1);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
