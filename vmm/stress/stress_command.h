// RunStressCommand: `mmuvisor stress [flags]` (and `mmuvisor` with no arguments) as a
// library call: picks where the workload runs, shows live progress, prints the report,
// writes --json/--trace, and returns the exit code. Never exits the process.
//
// Where the workload runs (--mode):
//   kvm           the memstress guest under KVM (stress_kvm.h);
//   host-threads  the same algorithm on host threads over real pages (host_threads.h);
//   auto          (default) kvm when it can run here, else host-threads, saying why on
//                 the first line of the output.
// Exit codes (vmm/cli/exit_codes.h): 0 PASS, 1 FAIL, 2 bad flags (a --json, --trace or
// --hostile-log file that cannot be written among them, found before the run), 5 KVM
// unusable when --mode kvm was asked for (or another host error: a report file that could
// not be written after a passing run; after a failing one the exit stays 1). The report,
// verdict first, is printed whenever the run ran, before any error about its files.
#ifndef MMUVISOR_VMM_STRESS_STRESS_COMMAND_H_
#define MMUVISOR_VMM_STRESS_STRESS_COMMAND_H_

#include <cstdio>
#include <string>

#include "absl/types/span.h"

namespace mmuvisor::vmm::stress {

inline constexpr int kStressExitPass = 0;
inline constexpr int kStressExitFail = 1;
inline constexpr int kStressExitBadInput = 2;
inline constexpr int kStressExitHostError = 5;

// args: the flags after "stress". `out`: progress and report; `err`: errors.
// `out_is_tty`: rewrite one progress line instead of printing plain lines.
int RunStressCommand(absl::Span<const std::string> args, std::FILE* out, std::FILE* err,
                     bool out_is_tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_COMMAND_H_
