// Reclaim (reclaim.h): one kClear window running the reclaim steps (reclaim_steps.h).
#include "vmm/host/reclaim.h"

#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/reclaim_steps.h"

namespace mmuvisor::vmm {

absl::StatusOr<ReclaimResult> Reclaim(HostAddressSpace& space, PageRange range) {
  MMUVISOR_ASSIGN_OR_RETURN(
      HostWindow window,
      HostWindow::Open(space, range, notifier::Event::kClear, WindowMode::kBlockable,
                       notifier::EventName(notifier::Event::kClear)));
  absl::StatusOr<ReclaimResult> r = SaveAndDiscard(window, /*discarded=*/nullptr);
  const absl::Status closed = window.Close();
  if (!r.ok()) return r.status();
  MMUVISOR_RETURN_IF_ERROR(closed);
  HostCounters& c = HostWindow::CountersOf(space);
  HostCounters::Add(c.reclaims, 1);
  HostCounters::Add(c.reclaimed_pages, r->reclaimed);
  HostCounters::Add(c.written_back, r->written_back);
  HostCounters::Add(c.skipped_clean, r->skipped_clean);
  HostCounters::Add(c.skipped_not_resident, r->not_resident);
  HostCounters::Add(c.save_failures, r->save_failures);
  return r;
}

}  // namespace mmuvisor::vmm
