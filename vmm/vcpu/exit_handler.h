// ExitHandler: one handler per KVM exit reason. Given the struct kvm_run of a vCPU that just
// returned from KVM_RUN, decides whether the vCPU re-enters the guest or stops, and why.
//
//   KVM_EXIT_IO             -> kGuestExceptionPort: crash (guest exception); else the port bus (each element of a string I/O in turn); a
//                              device may stop the vCPU (ucall DONE/ASSERT/protocol error)
//   KVM_EXIT_HLT            -> stop: halted (only a CPL0 guest without an in-kernel
//                              irqchip exits on HLT; at CPL3 HLT is a #GP)
//   KVM_EXIT_SHUTDOWN       -> crash: triple fault
//   KVM_EXIT_INTERNAL_ERROR -> crash, naming the suberror and its data words
//   KVM_EXIT_FAIL_ENTRY     -> crash, with the hardware entry failure reason
//   KVM_EXIT_MMIO           -> crash: access to guest-physical memory outside RAM
//   KVM_EXIT_SYSTEM_EVENT   -> crash, naming the event type (reset, shutdown, crash)
//   KVM_EXIT_INTR           -> continue (the runner checks for a stop request first)
//   anything else           -> crash: unexpected exit, named from the exit-reason table
// A crash asks the runner to snapshot the registers (it must, on the vCPU thread).
//
// Pure with respect to KVM: it reads and writes only the kvm_run memory it is given, so it
// is unit-tested on a plain buffer. Thread-safety: one call per vCPU at a time; the bus and
// its devices synchronise themselves.
#ifndef MMUVISOR_VMM_VCPU_EXIT_HANDLER_H_
#define MMUVISOR_VMM_VCPU_EXIT_HANDLER_H_

#include <linux/kvm.h>

#include <cstddef>
#include <cstdint>
#include <string>

#include "mmuvisor/guest_abi.h"
#include "vmm/devices/port_io_bus.h"

namespace mmuvisor::vmm {

enum class StopKind {
  kGuestStop,  // a device stopped the vCPU (ucall DONE / ASSERT / protocol error)
  kHalted,     // HLT
  kCrashed,    // shutdown, internal error, failed entry, stray MMIO, unexpected exit
  kKicked,     // stopped on request (timeout, another vCPU's crash, shutdown)
  kHostError,  // an ioctl failed
};

absl::string_view StopKindName(StopKind kind);

// A 1-byte OUT here means "the guest took exception stub" (vmm/machine/exception_stubs.h):
// a crash whose faulting state is on the guest's ring-0 stack.
inline constexpr uint16_t kGuestExceptionPort = MMV_PORT_EXCEPTION;

struct ExitDecision {
  bool stop = false;
  StopKind kind = StopKind::kGuestStop;
  std::string detail;  // for crashes: what happened, e.g. "triple fault (KVM_EXIT_SHUTDOWN)"
  bool guest_exception = false;  // an OUT to kGuestExceptionPort

  static ExitDecision Continue() { return {}; }
  static ExitDecision Stop(StopKind kind, std::string detail) {
    return {true, kind, std::move(detail), false};
  }
};

class ExitHandler {
 public:
  explicit ExitHandler(PortIoBus* bus) : bus_(bus) {}

  // `run_size` is the size of the kvm_run mapping (KVM_GET_VCPU_MMAP_SIZE): I/O data
  // offsets are checked against it.
  ExitDecision Handle(uint32_t vcpu, kvm_run& run, size_t run_size);

 private:
  ExitDecision HandleIo(uint32_t vcpu, kvm_run& run, size_t run_size);
  ExitDecision HandleHlt();
  ExitDecision HandleShutdown();
  ExitDecision HandleInternalError(const kvm_run& run);
  ExitDecision HandleFailEntry(const kvm_run& run);
  ExitDecision HandleMmio(const kvm_run& run);
  ExitDecision HandleSystemEvent(const kvm_run& run);
  ExitDecision HandleUnexpected(const kvm_run& run);

  PortIoBus* const bus_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_EXIT_HANDLER_H_
