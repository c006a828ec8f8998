// Guest-fault verdicts: what a KVM_RUN that failed with EFAULT (or an emulated access that
// exited as MMIO inside RAM) means, decided from the facts the HostAddressSpace answers
// (a window covers the page, the page's protection, the page server's failure, the
// window counts). The space changes and reports; the VMM (Machine, machine_faults.cc)
// judges. The protocol, told once:
//   - a Reclaim/Migrate/OomReap window maps its range read-only; a vCPU store into it
//     fails. kRetry: wait until no window covers the page (WaitForPage) and re-enter.
//   - the owner protected the page (Protect): kProtected, a guest write to protected memory.
//   - the page server failed (a poisoned page) or the space is torn down: kPoisoned, stop
//     the VM with the page server's failure.
//   - no memslot holds the address: kNotMapped.
// Without an address (a bare EFAULT, Linux 6.1): ClassifyAddresslessGuestFault.
//
// Threads: any (vCPU threads); reads the space's facts without a lock of its own.
#ifndef MMUVISOR_VMM_MACHINE_GUEST_FAULT_VERDICT_H_
#define MMUVISOR_VMM_MACHINE_GUEST_FAULT_VERDICT_H_

#include <atomic>
#include <cstdint>
#include <string>

#include "absl/time/time.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/page_range_lock.h"
#include "vmm/memory/address.h"

namespace mmuvisor::vmm {

enum class GuestFaultKind : uint8_t {
  kRetry,      // a window covers the page (or did): WaitForPage, then re-enter KVM_RUN
  kProtected,  // the owner protected it: report a guest write to protected memory
  kPoisoned,   // the page server failed: stop the VM with its failure()
  kNotMapped,  // no memslot: report
};
struct GuestFaultVerdict {
  GuestFaultKind kind = GuestFaultKind::kRetry;
  std::string detail;
};
const char* GuestFaultKindName(GuestFaultKind kind);

// A fault at `gpa` (KVM_EXIT_MEMORY_FAULT, or MMIO inside RAM); `write` its direction.
GuestFaultVerdict ClassifyGuestFault(const HostAddressSpace& space, Gpa gpa, bool write);
// KVM_EXIT_MEMORY_FAULT at `gpa` (always a write: reads do not fault on a readable page):
// ClassifyGuestFault, except that a gpa inside a churned slot's window
// (`in_slot_window`: MachineConfig::slot_windows) that no memslot holds now is kRetry, not
// kNotMapped. A slot held it at KVM's exit and has been deleted or moved since; entered
// again, the access becomes an MMIO exit, which the Machine answers as an access to
// nothing (as it does when the slot goes between an MMIO exit and its read).
GuestFaultVerdict ClassifyMemoryFault(const HostAddressSpace& space, Gpa gpa,
                                      bool in_slot_window);

// A fault whose address the kernel did not report. `at_entry` = windows().counts() taken
// before the KVM_RUN that failed. If no window was open at entry or now and none opened
// in between, no window caused it: kProtected when any page is user-protected (the detail
// names how many and the first), else kNotMapped ("not a host operation's doing").
// Otherwise kRetry: wait with windows().WaitForClosed(windows().counts().opened) and re-enter.
GuestFaultVerdict ClassifyAddresslessGuestFault(const HostAddressSpace& space,
                                                PageRangeLock::Counts at_entry);

// Waits until no window covers the page holding `gpa` (none: returns at once).
void WaitForPage(const HostAddressSpace& space, Gpa gpa);
// The same, giving up when `stop_requested` turns true (checked every `slice`): a vCPU's
// wait must end on a kick even while a long window stays open. Returns whether the page
// was unlocked.
bool WaitForPage(const HostAddressSpace& space, Gpa gpa, const std::atomic<bool>& stop_requested,
                 absl::Duration slice);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_GUEST_FAULT_VERDICT_H_
