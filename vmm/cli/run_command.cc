#include "vmm/cli/run_command.h"

#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/guest_source.h"
#include "vmm/kvm/flavour.h"
#include "vmm/kvm/system.h"
#include "vmm/machine/machine.h"
#include "vmm/stress/stress_command.h"
#include "vmm/stress/stress_options.h"

namespace mmuvisor::vmm::cli {
namespace {

int Fail(std::FILE* err, int code, absl::string_view message) {
  std::fprintf(err, "mmuvisor: %.*s\n", static_cast<int>(message.size()), message.data());
  return code;
}

int ExitCodeFor(Verdict verdict) {
  switch (verdict) {
    case Verdict::kClean:
      return kExitClean;
    case Verdict::kGuestFailed:
      return kExitGuestFailed;
    case Verdict::kCrashed:
      return kExitCrashed;
    case Verdict::kTimedOut:
      return kExitTimedOut;
    case Verdict::kHostError:
      return kExitHostError;
  }
  return kExitHostError;
}

// "This host: KVM flavour: PVM (kvm_pvm), ...; /dev/kvm: ..." for `run --help` and
// `stress --help`: which KVM a run would meet here, and whether it can open it.
std::string ThisHostLine() {
  std::string line = absl::StrCat("This host: ", DescribeKvmHost(DetectKvmHost()));
  absl::StatusOr<KvmSystem> kvm = KvmSystem::Open(kDefaultKvmPath);
  absl::StrAppend(&line, "; ", kDefaultKvmPath, ": ",
                  kvm.ok() ? std::string("opens (KVM runs are possible)")
                           : std::string(kvm.status().message()));
  return line;
}

}  // namespace

MachineConfig RunMachineConfig(const RunOptions& options, std::FILE* out) {
  MachineConfig config;
  config.kvm_path = options.kvm_path;
  config.ram_size = ByteSize{options.mem_bytes};
  config.vcpus = options.vcpus;
  config.backing = options.backing;
  // Without --resident nothing reclaims: a dirty log would only cost the boot (its
  // self-check) and the guest (write-protected first writes), so none unless asked for.
  // With it, auto: no log where KVM prefetches on faults (a log turns that off), else the
  // ring or the bitmap (MachineConfig::dirty_log).
  config.dirty_log = options.dirty_log.value_or(options.resident_fraction.has_value()
                                                    ? DirtyLogSource::kAuto
                                                    : DirtyLogSource::kNone);
  // Nothing reclaims without --resident either: no page server (no userfaultfd, no
  // handler thread; the kernel zero-fills first touches).
  config.page_server = options.resident_fraction.has_value();
  // One handler per vCPU, as `stress` runs it: swap-ins of different vCPUs do not queue
  // behind one thread (vmm/paging/README.md, "Threads and locks").
  config.host.page_server_threads = static_cast<int>(options.vcpus);
  config.ram_slots = options.ram_slots;
  config.ram_aliases = options.ram_aliases;
  config.privilege = options.privilege;
  config.timeout = options.timeout;
  config.console_echo = out;
  config.seed = options.seed;
  config.boot_flags = options.boot_flags;
  for (size_t i = 0; i < options.guest_args.size() && i < config.boot_args.size(); ++i) {
    config.boot_args[i] = options.guest_args[i];
  }
  config.nr_boot_args = static_cast<uint32_t>(options.guest_args.size());
  if (options.resident_fraction.has_value()) {
    ReclaimDriverOptions reclaim;
    reclaim.target_resident_fraction = *options.resident_fraction;
    config.reclaim = reclaim;
  }
  return config;
}

int RunGuest(const RunOptions& options, std::FILE* out, std::FILE* err, Teardown teardown,
             std::shared_ptr<SupportedCpuidPrefetch> cpuid) {
  // KVM's slowest answer first, on a thread of its own: it overlaps everything up to the
  // vCPUs' creation (vmm/README.md, "Process start"). Main begins it before parsing.
  if (cpuid == nullptr || cpuid->path() != options.kvm_path) {
    cpuid = SupportedCpuidPrefetch::Begin(options.kvm_path);
  }
  absl::StatusOr<GuestSource> guest = ResolveGuest(options.guest);
  if (!guest.ok()) return Fail(err, kExitBadInput, guest.status().message());
  if (absl::Status fits = CheckGuestMemFitsHost(options.mem_bytes, HostPhysicalMemoryBytes());
      !fits.ok()) {
    return Fail(err, kExitBadInput, fits.message());
  }
  MachineConfig config = RunMachineConfig(options, out);
  config.cpuid_prefetch = std::move(cpuid);
  // The library logs its choices at info level (spdlog); the CLI's stdout and stderr
  // carry only the guest's output and the one report line.
  spdlog::set_level(spdlog::level::warn);
  absl::StatusOr<std::unique_ptr<Machine>> machine = Machine::Create(config, guest->bytes);
  if (!machine.ok()) {
    const absl::Status& st = machine.status();
    return Fail(err, IsInputError(st) ? kExitBadInput : kExitHostError,
                absl::StrCat(guest->name, ": ", st.message()));
  }
  RunResult result = (*machine)->Run();
  const int code = ExitCodeFor(result.verdict);
  // With --resident the one report line also says what reclaim did under the guest.
  std::string reclaim;
  if (ReclaimDriver* driver = (*machine)->reclaim_driver(); driver != nullptr) {
    // Stopped first: a pass still running would be counted halfway (its write-backs
    // before its pages out), and the guest is done with its memory anyway.
    driver->Stop();
    const ReclaimDriverStats s = driver->stats();
    reclaim = absl::StrCat("; reclaim: ", s.passes, " passes, ", s.reclaimed, " pages out (",
                           s.written_back, " written back), ", s.swapped_in, " back in");
  }
  std::fprintf(err, "mmuvisor: %s: %s%s\n", guest->name.c_str(), result.summary.c_str(),
               reclaim.c_str());
  if (teardown == Teardown::kLeftToProcessExit) (void)machine->release();  // main.cc
  return code;
}

int Main(int argc, char** argv, std::FILE* out, std::FILE* err, Teardown teardown) {
  std::vector<std::string> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  // A run asks KVM for its supported CPUID (~0.4 ms on kvm_pvm) while the rest of the
  // command line is parsed; with another --kvm, RunGuest begins again for that device.
  std::shared_ptr<SupportedCpuidPrefetch> cpuid;
  if (!args.empty() && args[0] == "run") cpuid = SupportedCpuidPrefetch::Begin(kDefaultKvmPath);
  absl::StatusOr<Command> command = ParseCommandLine(args);
  if (!command.ok()) return Fail(err, kExitBadInput, command.status().message());
  switch (command->kind) {
    case CommandKind::kHelp: {
      const std::string text = command->help_topic == "run"      ? RunHelp()
                               : command->help_topic == "stress" ? stress::StressHelp()
                                                                 : GeneralHelp();
      std::fputs(text.c_str(), out);
      if (command->help_topic != "") std::fprintf(out, "\n%s\n", ThisHostLine().c_str());
      return kExitClean;
    }
    case CommandKind::kRun:
      return RunGuest(command->run, out, err, teardown, std::move(cpuid));
    case CommandKind::kStress:
      return stress::RunStressCommand(command->stress_args, out, err,
                                      ::isatty(::fileno(out)) == 1);
  }
  return kExitBadInput;
}

}  // namespace mmuvisor::vmm::cli
