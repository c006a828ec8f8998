// `mmuvisor run`: checks the input (guest image, sizes against this host), builds the
// Machine, runs it and turns the result into one report line on stderr and an exit code
// (vmm/cli/exit_codes.h). Guest text goes to `out` as it arrives.
// Never exits the process itself; the caller returns the code from main() (or _exits with
// it after Teardown::kLeftToProcessExit: vmm/cli/main.cc).
#ifndef MMUVISOR_VMM_CLI_RUN_COMMAND_H_
#define MMUVISOR_VMM_CLI_RUN_COMMAND_H_

#include <cstdio>
#include <memory>

#include "vmm/cli/flags.h"
#include "vmm/machine/machine.h"

namespace mmuvisor::vmm::cli {

// What happens to the Machine once its run has been reported.
enum class Teardown {
  kOrderly,            // destroyed before RunGuest returns (tests, sanitizer builds)
  kLeftToProcessExit,  // left as it is: the caller ends the process at once (_exit), and
                       // the kernel closes its VM, fds and mappings and stops its threads
};

// `cpuid`: the supported-CPUID query begun for options.kvm_path (Main begins it before
// parsing); null or for another device: RunGuest begins one.
int RunGuest(const RunOptions& options, std::FILE* out, std::FILE* err,
             Teardown teardown = Teardown::kOrderly,
             std::shared_ptr<SupportedCpuidPrefetch> cpuid = nullptr);

// The Machine `options` ask for, guest text echoed to `out`. Rules beyond the flags: the
// dirty log is auto with --resident and none without (nothing reclaims), unless --dirty
// says otherwise; the page server runs with --resident only.
MachineConfig RunMachineConfig(const RunOptions& options, std::FILE* out);

// The whole CLI: parse argv[1..], dispatch, return the exit code.
int Main(int argc, char** argv, std::FILE* out, std::FILE* err,
         Teardown teardown = Teardown::kOrderly);

}  // namespace mmuvisor::vmm::cli

#endif  // MMUVISOR_VMM_CLI_RUN_COMMAND_H_
