// Unmap (unmap.h): every page held, then one kUnmap window deletes the memslot and
// publishes the new table; the memslot observers run after the pages are released.
#include "vmm/host/unmap.h"

#include <algorithm>
#include <memory>
#include <vector>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"

namespace mmuvisor::vmm {
namespace {

// The memslots without `slot_id`.
absl::StatusOr<std::shared_ptr<const MemslotTable>> TableWithout(const MemslotTable& table,
                                                                 uint32_t slot_id) {
  std::vector<GuestMemorySlot> rest;
  for (const GuestMemorySlot& s : table.slots()) {
    if (s.slot != slot_id) rest.push_back(s);
  }
  MMUVISOR_ASSIGN_OR_RETURN(MemslotTable next, MemslotTable::Create(std::move(rest)));
  return std::make_shared<const MemslotTable>(std::move(next));
}

}  // namespace

absl::Status Unmap(HostAddressSpace& space, uint32_t slot_id) {
  // KVM's rule: a memslot change waits until no invalidation window is open, and no new
  // one opens until the new memslots are published.
  AllPagesHeld held(space);
  if (space.torn_down()) {
    return absl::FailedPreconditionError(
        "HostAddressSpace::Unmap: the address space was torn down");
  }
  std::shared_ptr<const MemslotTable> table = space.memslots();
  const auto& slots = table->slots();
  auto it = std::find_if(slots.begin(), slots.end(),
                         [&](const GuestMemorySlot& s) { return s.slot == slot_id; });
  if (it == slots.end()) {
    return absl::NotFoundError(absl::StrFormat("HostAddressSpace::Unmap: no memslot %d", slot_id));
  }
  const GuestMemorySlot victim = *it;
  const PageRange range{(victim.hva.value - space.AddressOf(0)) / kPageSize,
                        victim.size.value / kPageSize};
  MMUVISOR_ASSIGN_OR_RETURN(HostWindow window,
                            HostWindow::OpenHeld(held, range, notifier::Event::kUnmap));
  absl::Status status = window.DeleteSlot(victim);
  std::shared_ptr<const MemslotTable> published;
  std::vector<HostAddressSpace::MemslotObserver> observers;
  if (status.ok()) {
    absl::StatusOr<std::shared_ptr<const MemslotTable>> next = TableWithout(*table, slot_id);
    if (next.ok()) {
      published = *std::move(next);
      observers = window.PublishMemslots(published);
    } else {
      status = next.status();
    }
  }
  (void)window.Close();
  MMUVISOR_RETURN_IF_ERROR(status);
  HostCounters::Add(HostWindow::CountersOf(space).unmaps, 1);
  held.Release();
  for (const HostAddressSpace::MemslotObserver& o : observers) o(*published);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
