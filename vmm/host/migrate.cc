// Migrate (migrate.h): one kMigrate window running the reclaim steps, then FaultBack.
#include "vmm/host/migrate.h"

#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/reclaim_steps.h"

namespace mmuvisor::vmm {

absl::StatusOr<ReclaimResult> Migrate(HostAddressSpace& space, PageRange range) {
  MMUVISOR_ASSIGN_OR_RETURN(
      HostWindow window,
      HostWindow::Open(space, range, notifier::Event::kMigrate, WindowMode::kBlockable,
                       notifier::EventName(notifier::Event::kMigrate)));
  PageMask moved;
  absl::StatusOr<ReclaimResult> r = SaveAndDiscard(window, &moved);
  if (r.ok()) {
    if (absl::Status s = FaultBack(window, moved); !s.ok()) r = s;
  }
  const absl::Status closed = window.Close();
  if (!r.ok()) return r.status();
  MMUVISOR_RETURN_IF_ERROR(closed);
  HostCounters& c = HostWindow::CountersOf(space);
  HostCounters::Add(c.migrates, 1);
  HostCounters::Add(c.migrated_pages, r->reclaimed);
  HostCounters::Add(c.migrate_failures, r->save_failures);
  HostCounters::Add(c.written_back, r->written_back);
  return r;
}

}  // namespace mmuvisor::vmm
