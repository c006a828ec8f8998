// Discard (discard.h): one kClear window; the store's copies go before the pages.
#include "vmm/host/discard.h"

#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"

namespace mmuvisor::vmm {

absl::Status Discard(HostAddressSpace& space, PageRange range) {
  MMUVISOR_ASSIGN_OR_RETURN(HostWindow window,
                            HostWindow::Open(space, range, notifier::Event::kClear,
                                             WindowMode::kBlockable, "Discard"));
  // Store first: once the copies are gone no fault can bring old data back, so after the
  // discard every access reads zeros.
  absl::Status status = window.store().Drop(range.first, range.count);
  if (status.ok()) status = window.ram().Discard(range.first, range.count);
  (void)window.Close();  // no protection to restore
  if (!status.ok()) return status;
  HostCounters& c = HostWindow::CountersOf(space);
  HostCounters::Add(c.discards, 1);
  HostCounters::Add(c.discarded_pages, range.count);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
