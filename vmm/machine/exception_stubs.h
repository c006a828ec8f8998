// Exception stubs: the VMM fills the (otherwise empty) IDT page so that a guest exception
// exits to the VMM with its vector and the faulting state instead of ending in a triple
// fault. Needed because on AMD SVM a KVM_EXIT_SHUTDOWN comes back with the vCPU already
// reset (RIP=0xfff0, CS=0xf000: the VMCB is reinitialised), so the registers of a triple
// fault say nothing (seen under nested KVM in QEMU). On hosts that keep the state, or that
// never deliver the exception to the guest IDT, the triple-fault report still applies.
//
// Layout (guest_abi.h reserves the IDT page for this): vectors 0..31 get 64-bit interrupt
// gates (kernel code selector, DPL 0) to 8-byte stubs at kExceptionStubGpa + 8 * vector;
// each pushes its vector and jumps to a common tail that writes to kExceptionPort. The CPU
// has pushed [error code], RIP, CS, RFLAGS, RSP, SS on the ring-0 stack (TSS.RSP0 at CPL3,
// the current stack at CPL0), so at the exit RSP points at {vector, [error], rip, cs,
// rflags, rsp, ss}. Long-mode images only; real mode has no IDT of ours.
#ifndef MMUVISOR_VMM_MACHINE_EXCEPTION_STUBS_H_
#define MMUVISOR_VMM_MACHINE_EXCEPTION_STUBS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/memory/guest_memory_access.h"
#include "vmm/vcpu/exit_handler.h"

namespace mmuvisor::vmm {

inline constexpr uint16_t kExceptionPort = kGuestExceptionPort;
inline constexpr uint64_t kExceptionStubGpa = MMV_EXCEPTION_STUB_GPA;
inline constexpr uint32_t kExceptionVectors = 32;

absl::string_view ExceptionName(uint32_t vector);  // "#PF", "#GP", ...
bool ExceptionHasErrorCode(uint32_t vector);

// Writes the stubs and the 32 gates. REQUIRES: the boot plan is long mode and has been
// written (the GDT's kernel code selector and IDTR exist). Errors: OutOfRange if RAM does
// not cover the pages.
absl::Status InstallExceptionStubs(GuestMemoryAccess& memory);

struct ExceptionFrame {
  uint32_t vector = 0;
  bool has_error_code = false;
  uint64_t error_code = 0;
  uint64_t rip = 0, cs = 0, rflags = 0, rsp = 0, ss = 0;
  // "page fault (#PF, vector 14, error code 0x6)"
  std::string Describe() const;
};

// Reads the frame at guest address `rsp` (identity mapped, so guest-physical). Errors:
// OutOfRange if the frame is outside RAM; InvalidArgument for a vector >= 32.
absl::StatusOr<ExceptionFrame> ReadExceptionFrame(GuestMemoryAccess& memory, uint64_t rsp);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_EXCEPTION_STUBS_H_
