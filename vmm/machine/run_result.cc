#include "vmm/machine/run_result.h"

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {

absl::string_view VerdictName(Verdict verdict) {
  switch (verdict) {
    case Verdict::kClean:
      return "clean";
    case Verdict::kGuestFailed:
      return "guest failed";
    case Verdict::kCrashed:
      return "crashed";
    case Verdict::kTimedOut:
      return "timed out";
    case Verdict::kHostError:
      return "host error";
  }
  return "?";
}

namespace {

std::string CrashLine(const VcpuReport& r, KvmFlavour flavour) {
  std::string line = absl::StrFormat("guest crashed on vcpu %u: %s", r.index, r.stop.detail);
  if (r.stop.registers) absl::StrAppend(&line, ": ", r.stop.registers->ToString());
  if (const std::string note = KvmFlavourCrashNote(flavour); !note.empty()) {
    absl::StrAppend(&line, " (", note, ")");
  }
  return line;
}

}  // namespace

void DecideVerdict(RunResult& result, bool timed_out) {
  result.guest_exit_code = 0;
  for (const VcpuReport& r : result.vcpus) {
    if (r.done_code && *r.done_code != 0 && result.guest_exit_code == 0) {
      result.guest_exit_code = *r.done_code;
    }
  }
  if (!result.page_server_error.ok()) {
    result.verdict = Verdict::kHostError;
    result.summary = absl::StrCat("page server failed, VM stopped: ",
                                  result.page_server_error.message());
    return;
  }
  for (const VcpuReport& r : result.vcpus) {
    if (r.stop.kind == StopKind::kHostError) {
      result.verdict = Verdict::kHostError;
      result.summary = absl::StrFormat("vcpu %u failed: %s", r.index, r.stop.detail);
      return;
    }
  }
  for (const VcpuReport& r : result.vcpus) {
    if (r.stop.kind == StopKind::kCrashed) {
      result.verdict = Verdict::kCrashed;
      result.summary = CrashLine(r, result.kvm_flavour);
      return;
    }
  }
  // The timeout may pass just after the last vCPU stopped by itself: only a run in which
  // the kick at the timeout actually stopped someone counts as timed out.
  bool kicked = false;
  for (const VcpuReport& r : result.vcpus) kicked = kicked || r.stop.kind == StopKind::kKicked;
  const bool host_stop = result.host_stop.has_value();
  if (timed_out && kicked && !host_stop) {
    result.verdict = Verdict::kTimedOut;
    result.summary = absl::StrCat("guest timed out after ", absl::FormatDuration(result.timeout));
    return;
  }
  result.verdict = Verdict::kGuestFailed;
  for (const VcpuReport& r : result.vcpus) {
    if (r.assertion) {
      result.summary = absl::StrFormat("guest assertion failed on vcpu %u at %s", r.index,
                                       r.assertion->ToString());
      return;
    }
    if (!r.protocol_error.empty()) {
      result.summary = absl::StrFormat("vcpu %u: %s", r.index, r.protocol_error);
      return;
    }
  }
  for (const VcpuReport& r : result.vcpus) {
    if (r.done_code && *r.done_code != 0) {
      result.summary = absl::StrFormat("guest reported failure on vcpu %u: exit code %u",
                                       r.index, *r.done_code);
      return;
    }
  }
  for (const VcpuReport& r : result.vcpus) {
    if (!r.done_code && !(host_stop && r.stop.kind == StopKind::kKicked)) {
      result.summary = absl::StrFormat("vcpu %u stopped without reporting DONE (%s%s%s)",
                                       r.index, StopKindName(r.stop.kind),
                                       r.stop.detail.empty() ? "" : ": ", r.stop.detail);
      return;
    }
  }
  result.verdict = Verdict::kClean;
  result.summary = host_stop ? absl::StrCat("stopped by host: ", *result.host_stop)
                             : "guest finished: exit code 0";
}

}  // namespace mmuvisor::vmm
