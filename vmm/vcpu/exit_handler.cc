#include "vmm/vcpu/exit_handler.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/types/span.h"
#include "vmm/vcpu/exit_reason.h"

namespace mmuvisor::vmm {

absl::string_view StopKindName(StopKind kind) {
  switch (kind) {
    case StopKind::kGuestStop:
      return "guest stop";
    case StopKind::kHalted:
      return "halted";
    case StopKind::kCrashed:
      return "crashed";
    case StopKind::kKicked:
      return "kicked";
    case StopKind::kHostError:
      return "host error";
  }
  return "?";
}

ExitDecision ExitHandler::Handle(uint32_t vcpu, kvm_run& run, size_t run_size) {
  switch (run.exit_reason) {
    case KVM_EXIT_IO:
      return HandleIo(vcpu, run, run_size);
    case KVM_EXIT_HLT:
      return HandleHlt();
    case KVM_EXIT_SHUTDOWN:
      return HandleShutdown();
    case KVM_EXIT_INTERNAL_ERROR:
      return HandleInternalError(run);
    case KVM_EXIT_FAIL_ENTRY:
      return HandleFailEntry(run);
    case KVM_EXIT_MMIO:
      return HandleMmio(run);
    case KVM_EXIT_SYSTEM_EVENT:
      return HandleSystemEvent(run);
    case KVM_EXIT_INTR:
      return ExitDecision::Continue();
    default:
      return HandleUnexpected(run);
  }
}

ExitDecision ExitHandler::HandleIo(uint32_t vcpu, kvm_run& run, size_t run_size) {
  const auto& io = run.io;
  const uint64_t width = io.size;
  const uint64_t bytes = width * io.count;
  if ((width != 1 && width != 2 && width != 4) || io.data_offset > run_size ||
      bytes > run_size - io.data_offset) {
    return ExitDecision::Stop(
        StopKind::kHostError,
        absl::StrFormat("KVM_EXIT_IO with impossible data: port=%#x size=%u count=%u "
                        "data_offset=%#x (kvm_run is %#x bytes)",
                        io.port, io.size, io.count, io.data_offset, run_size));
  }
  if (io.port == kGuestExceptionPort && io.direction == KVM_EXIT_IO_OUT) {
    ExitDecision d = ExitDecision::Stop(StopKind::kCrashed, "guest exception");
    d.guest_exception = true;
    return d;
  }
  uint8_t* data = reinterpret_cast<uint8_t*>(&run) + io.data_offset;
  // String I/O (rep outs/ins) arrives as `count` elements of `size` bytes each.
  for (uint32_t i = 0; i < io.count; ++i) {
    absl::Span<uint8_t> element(data + i * width, width);
    if (io.direction == KVM_EXIT_IO_OUT) {
      if (bus_->Write(vcpu, io.port, element) == IoAction::kStopVcpu) {
        return ExitDecision::Stop(StopKind::kGuestStop, "");
      }
    } else {
      // Filled now; KVM completes the IN from this buffer on the next KVM_RUN.
      bus_->Read(vcpu, io.port, element);
    }
  }
  return ExitDecision::Continue();
}

ExitDecision ExitHandler::HandleHlt() {
  return ExitDecision::Stop(StopKind::kHalted, "halted (KVM_EXIT_HLT)");
}

ExitDecision ExitHandler::HandleShutdown() {
  return ExitDecision::Stop(StopKind::kCrashed,
                            "triple fault (KVM_EXIT_SHUTDOWN): an exception the guest could "
                            "not handle");
}

ExitDecision ExitHandler::HandleInternalError(const kvm_run& run) {
  std::string detail =
      absl::StrFormat("KVM internal error (KVM_EXIT_INTERNAL_ERROR): %s, suberror %u",
                      InternalErrorName(run.internal.suberror), run.internal.suberror);
  const uint32_t n = std::min<uint32_t>(run.internal.ndata, 16);
  for (uint32_t i = 0; i < n; ++i) {
    absl::StrAppendFormat(&detail, "%s%#x", i == 0 ? ", data " : " ", run.internal.data[i]);
  }
  return ExitDecision::Stop(StopKind::kCrashed, std::move(detail));
}

ExitDecision ExitHandler::HandleFailEntry(const kvm_run& run) {
  return ExitDecision::Stop(
      StopKind::kCrashed,
      absl::StrFormat("VM entry failed (KVM_EXIT_FAIL_ENTRY): hardware reason %#x on cpu %u",
                      run.fail_entry.hardware_entry_failure_reason, run.fail_entry.cpu));
}

ExitDecision ExitHandler::HandleMmio(const kvm_run& run) {
  return ExitDecision::Stop(
      StopKind::kCrashed,
      absl::StrFormat("%s of %u bytes at guest-physical %#x, outside guest RAM (KVM_EXIT_MMIO)",
                      run.mmio.is_write ? "write" : "read", run.mmio.len, run.mmio.phys_addr));
}

ExitDecision ExitHandler::HandleSystemEvent(const kvm_run& run) {
  absl::string_view type = "unknown";
  switch (run.system_event.type) {
    case KVM_SYSTEM_EVENT_SHUTDOWN:
      type = "shutdown";
      break;
    case KVM_SYSTEM_EVENT_RESET:
      type = "reset";
      break;
    case KVM_SYSTEM_EVENT_CRASH:
      type = "crash";
      break;
  }
  return ExitDecision::Stop(StopKind::kCrashed,
                            absl::StrFormat("system event %s (KVM_EXIT_SYSTEM_EVENT type %u)",
                                            type, run.system_event.type));
}

ExitDecision ExitHandler::HandleUnexpected(const kvm_run& run) {
  return ExitDecision::Stop(StopKind::kCrashed,
                            absl::StrCat("unexpected exit ", ExitReasonName(run.exit_reason),
                                         " (", run.exit_reason, ")"));
}

}  // namespace mmuvisor::vmm
