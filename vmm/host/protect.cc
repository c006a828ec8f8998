// Protect (protect.h): one kProtectionVma window that mprotects and records.
#include "vmm/host/protect.h"

#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"

namespace mmuvisor::vmm {

absl::Status Protect(HostAddressSpace& space, PageRange range, PageProtection prot) {
  MMUVISOR_ASSIGN_OR_RETURN(HostWindow window,
                            HostWindow::Open(space, range, notifier::Event::kProtectionVma,
                                             WindowMode::kBlockable, "Protect"));
  const absl::Status status = window.SetProtection(prot);
  // On success SetProtection recorded the new protection and Close restores nothing; on
  // failure Close maps back whatever part of the range mprotect changed.
  (void)window.Close();
  if (!status.ok()) return status;
  HostCounters::Add(HostWindow::CountersOf(space).protects, 1);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
