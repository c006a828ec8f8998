// GuestFaultHandler: what a VcpuRunner asks when guest memory could not be accessed the
// way the guest wanted, because the host changed what backs it (vmm/host: reclaim and
// migrate windows map ranges read-only, Protect, a failed page server). Three shapes:
//   kEfault        KVM_RUN failed with EFAULT and no address (Linux 6.1: a guest store hit
//                  a read-only host mapping; the gpa is not reported);
//   kMemoryFault   KVM_RUN failed with kvm_run::exit_reason = KVM_EXIT_MEMORY_FAULT
//                  (Linux >= 6.8, KVM_CAP_MEMORY_FAULT_INFO): gpa and size are known;
//   kMmio          KVM_EXIT_MMIO at an address the handler may know as RAM (an emulated
//                  access that could not use the host mapping, e.g. a store to a read-only
//                  page on shadow-paging hosts). The handler must complete the access
//                  itself (kvm_run::mmio) before asking to re-enter, or KVM drops it.
// The runner takes a WindowToken before every KVM_RUN (BeforeEntry) and passes the one of
// the failed entry back, so the handler can tell whether any host window was open during
// that entry at all (the only way to classify an address-less EFAULT).
//
// Threads: called on the vCPU's thread, between entries; must synchronise itself
// (several vCPUs call at once). May block (waiting for a window to close) but must return
// promptly once `stop_requested` turns true (the runner is being kicked).
#ifndef MMUVISOR_VMM_VCPU_GUEST_FAULT_H_
#define MMUVISOR_VMM_VCPU_GUEST_FAULT_H_

#include <linux/kvm.h>

#include <atomic>
#include <cstdint>
#include <optional>
#include <string>

#include "vmm/vcpu/exit_handler.h"

namespace mmuvisor::vmm {

struct WindowToken {
  uint64_t opened = 0;  // windows opened so far
  uint64_t closed = 0;  // windows closed so far
};

enum class GuestFaultSource : uint8_t { kEfault, kMemoryFault, kMmio };

struct GuestFault {
  GuestFaultSource source = GuestFaultSource::kEfault;
  std::optional<uint64_t> gpa;  // known for kMemoryFault and kMmio
  uint64_t size = 0;
  WindowToken entry;            // taken before the failed KVM_RUN
  // kEfault only: how many EFAULTs in a row this vCPU took with identical RIP and
  // general-purpose registers (1 = the first). A guest making no progress at all.
  uint32_t identical_repeats = 1;
};

struct GuestFaultAction {
  enum Kind : uint8_t {
    kReenter,  // resolved (waited for the window, completed the MMIO): KVM_RUN again
    kStop,     // stop the vCPU with stop_kind/detail
    kNotMine,  // kMmio only: not RAM; the ExitHandler decides (stray MMIO)
  };
  Kind kind = kReenter;
  StopKind stop_kind = StopKind::kCrashed;
  std::string detail;
  std::optional<uint64_t> gpa;  // for the report
  bool protected_write = false; // the guest wrote memory the host protected
};

class GuestFaultHandler {
 public:
  virtual ~GuestFaultHandler() = default;
  virtual WindowToken BeforeEntry() = 0;
  virtual GuestFaultAction OnGuestFault(uint32_t vcpu, const GuestFault& fault, kvm_run& run,
                                        const std::atomic<bool>& stop_requested) = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_GUEST_FAULT_H_
