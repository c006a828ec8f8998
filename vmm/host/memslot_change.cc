// AddMemslot and MoveMemslot (memslot_change.h): every page held, the new table checked,
// the change made through the MemslotControl, published, the observers run.
#include "vmm/host/memslot_change.h"

#include <vector>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"

namespace mmuvisor::vmm {
namespace {

absl::Status TornDown(const char* op) {
  return absl::FailedPreconditionError(
      absl::StrFormat("HostAddressSpace::%s: the address space was torn down", op));
}

}  // namespace

absl::Status AddMemslot(HostAddressSpace& space, const RamSlot& slot) {
  AllPagesHeld held(space);
  if (space.torn_down()) return TornDown("AddMemslot");
  MMUVISOR_ASSIGN_OR_RETURN(const GuestMemorySlot added, held.SlotOf(slot));
  std::vector<GuestMemorySlot> slots = space.memslots()->slots();
  slots.push_back(added);
  MMUVISOR_ASSIGN_OR_RETURN(MemslotTable next, MemslotTable::Create(std::move(slots)));
  MMUVISOR_RETURN_IF_ERROR(held.ChangeMemslots(
      /*dropped=*/nullptr,
      [&](MemslotControl* control) {
        return control != nullptr ? control->SetSlot(added) : absl::OkStatus();
      },
      std::move(next)));
  HostCounters::Add(HostWindow::CountersOf(space).memslot_adds, 1);
  return absl::OkStatus();
}

absl::Status MoveMemslot(HostAddressSpace& space, uint32_t slot_id, Gpa gpa) {
  AllPagesHeld held(space);
  if (space.torn_down()) return TornDown("MoveMemslot");
  std::vector<GuestMemorySlot> slots = space.memslots()->slots();
  GuestMemorySlot* slot = nullptr;
  for (GuestMemorySlot& s : slots) {
    if (s.slot == slot_id) slot = &s;
  }
  if (slot == nullptr) {
    return absl::NotFoundError(
        absl::StrFormat("HostAddressSpace::MoveMemslot: no memslot %d", slot_id));
  }
  const GuestMemorySlot before = *slot;
  slot->gpa = gpa;
  const GuestMemorySlot after = *slot;
  MMUVISOR_ASSIGN_OR_RETURN(MemslotTable next, MemslotTable::Create(std::move(slots)));
  MMUVISOR_RETURN_IF_ERROR(held.ChangeMemslots(
      &before,
      [&](MemslotControl* control) {
        return control != nullptr ? control->SetSlot(after) : absl::OkStatus();
      },
      std::move(next)));
  HostCounters::Add(HostWindow::CountersOf(space).memslot_moves, 1);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
