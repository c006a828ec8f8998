// RunResult: how a guest run ended, per vCPU and as one verdict, and the rule that turns
// the per-vCPU facts into the verdict (pure, unit-tested without KVM).
//
// Verdict, first match wins:
//   kHostError    a vCPU stopped on a failed ioctl (the VMM, not the guest, failed)
//   kCrashed      a vCPU crashed (triple fault, internal error, failed entry, stray MMIO)
//   kTimedOut     the watchdog fired and stopped at least one vCPU
//   kGuestFailed  an assertion, a malformed ucall, a DONE with a non-zero code, or a vCPU
//                 that halted or was stopped without reporting DONE
//   kClean        every vCPU reported DONE with code 0
#ifndef MMUVISOR_VMM_MACHINE_RUN_RESULT_H_
#define MMUVISOR_VMM_MACHINE_RUN_RESULT_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "vmm/devices/ucall.h"
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
};

// Fills verdict, guest_exit_code and summary from vcpus, timed_out and timeout.
void DecideVerdict(RunResult& result, bool timed_out);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_RUN_RESULT_H_
