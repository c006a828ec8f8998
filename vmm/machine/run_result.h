// RunResult: how a guest run ended, per vCPU and as one verdict, and the rule that turns
// the per-vCPU facts into the verdict (pure, unit-tested without KVM).
//
// Verdict, first match wins:
//   kHostError    the page server failed, or a vCPU stopped on a failed ioctl (the VMM,
//                 not the guest, failed)
//   kCrashed      a vCPU crashed (triple fault, internal error, failed entry, stray MMIO)
//   kTimedOut     the timeout passed and its kick stopped at least one vCPU
//   kGuestFailed  an assertion, a malformed ucall, a DONE with a non-zero code, or a vCPU
//                 that halted or was stopped without reporting DONE
//   kClean        every vCPU reported DONE with code 0 — or the host stopped the run
//                 (Machine::RequestStop): vCPUs it kicked count as neither failed nor
//                 timed out, and the summary says "stopped by host: <reason>"
#ifndef MMUVISOR_VMM_MACHINE_RUN_RESULT_H_
#define MMUVISOR_VMM_MACHINE_RUN_RESULT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vmm/devices/ucall.h"
#include "vmm/kvm/flavour.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace mmuvisor::vmm {

enum class Verdict { kClean, kGuestFailed, kCrashed, kTimedOut, kHostError };
absl::string_view VerdictName(Verdict verdict);

struct VcpuReport {
  uint32_t index = 0;
  VcpuStop stop;
  std::optional<uint64_t> done_code;           // ucall DONE
  std::optional<GuestAssertion> assertion;     // ucall ASSERT
  std::string protocol_error;                  // malformed ucall, if any
};

struct RunResult {
  Verdict verdict = Verdict::kHostError;
  uint64_t guest_exit_code = 0;  // first non-zero DONE code, else 0
  std::vector<VcpuReport> vcpus;
  absl::Duration timeout;
  // One line saying why, e.g. "guest crashed on vcpu 0: triple fault ...: rip=0x..."
  std::string summary;
  // Process-internal timings from the start of Machine::Create.
  std::optional<absl::Duration> first_ucall;
  absl::Duration exit;
  // Machine::RequestStop's reason, if the host stopped the run.
  std::optional<std::string> host_stop;
  // The page server's failure, if it failed (the VM was stopped because of it).
  absl::Status page_server_error;
  // Guest memory faults resolved by waiting for a host window and re-entering KVM_RUN.
  uint64_t guest_fault_retries = 0;
  // Guest writes to memory the host protected (reported; stopped or continued).
  uint64_t protected_write_events = 0;
  // The host's KVM implementation: a crash on one known to differ from VMX/SVM (kvm_pvm)
  // says so in the summary.
  KvmFlavour kvm_flavour = KvmFlavour::kUnknown;
};

// Fills verdict, guest_exit_code and summary from vcpus, timed_out and timeout.
void DecideVerdict(RunResult& result, bool timed_out);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_RUN_RESULT_H_
