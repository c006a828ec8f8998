// The mmuvisor command line, read with CLI11 (vmm/stress/command_line.h sets the rules:
// nothing printed, no exit, every error an absl::Status; no global flag registry, so the
// library keeps no process-wide state).
//
//   mmuvisor                          the short default stress scenario (= mmuvisor stress)
//   mmuvisor run GUEST [flags] [-- ARG...]
//                                     boot GUEST (a built-in name or an ELF path) with up to
//                                     8 numeric run arguments (mmv_boot_info.args)
//   mmuvisor stress [flags]           the stress scenario (flags: vmm/stress/stress_options.h)
//   mmuvisor help [COMMAND] | --help  usage
// The commands are CLI11 subcommands; each reads the words after its name with its own
// app. Flags take "--flag VALUE" or "--flag=VALUE"; "--" ends the flags: after it, the words
// are the guest's run arguments (the first is GUEST if none was given before). A flag given
// twice, an unknown flag, a missing or malformed value, or a stray argument is an
// InvalidArgument error whose message names the flag and the value.
#ifndef MMUVISOR_VMM_CLI_FLAGS_H_
#define MMUVISOR_VMM_CLI_FLAGS_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "vmm/boot/x86_state.h"
#include "vmm/memory/guest_mem_size.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/memory/memory_backing.h"

namespace mmuvisor::vmm::cli {

inline constexpr absl::string_view kDefaultGuest = "hello64";
inline constexpr uint64_t kDefaultMemBytes = 64ull << 20;
inline constexpr absl::Duration kDefaultTimeout = absl::Seconds(10);
// Without --timeout at --cpl 0: guest code at CPL0 is instruction-emulated on
// shadow-paging hosts (kvm_pvm, ~1000x slower), where a 4 MiB verify takes ~10 s.
inline constexpr absl::Duration kDefaultTimeoutCpl0 = absl::Seconds(60);

struct RunOptions {
  std::string guest = std::string(kDefaultGuest);
  uint64_t mem_bytes = kDefaultMemBytes;
  uint32_t vcpus = 1;
  // InfiniteDuration() for "--timeout none"; kDefaultTimeoutCpl0 at --cpl 0 without it.
  absl::Duration timeout = kDefaultTimeout;
  MemoryBacking backing = MemoryBacking::kMemfd;
  // --dirty: where reclaim learns which pages the guest wrote (KVM bitmap, ring, auto or
  // none). Not given: auto with --resident, none without (nothing reclaims).
  std::optional<DirtyLogSource> dirty_log;
  uint32_t ram_slots = 1;  // --slots: guest RAM as this many memslots
  uint32_t ram_aliases = 0;  // --aliases: K more memslots over all of RAM
  GuestPrivilege privilege = GuestPrivilege::kUser;
  std::string kvm_path = "/dev/kvm";
  // --resident: target resident fraction of guest RAM for the reclaim thread; unset = none.
  std::optional<double> resident_fraction;
  // mmv_boot_info: --seed, --boot-flags and the run arguments after "--" (at most
  // MMV_BOOT_INFO_MAX_ARGS; nr_args = guest_args.size()).
  uint64_t seed = 0;
  uint32_t boot_flags = 0;
  std::vector<uint64_t> guest_args;
};

enum class CommandKind { kHelp, kRun, kStress };

struct Command {
  CommandKind kind = CommandKind::kRun;
  std::string help_topic;  // kHelp: "" (general) or a command name
  RunOptions run;
  // kStress: the arguments after "stress", parsed by vmm/stress (ParseStressFlags).
  std::vector<std::string> stress_args;
};

// args: argv[1..argc).
absl::StatusOr<Command> ParseCommandLine(absl::Span<const std::string> args);

// ParseSize ("64M"), ParseGuestMemSize (--mem's rules): vmm/memory/guest_mem_size.h, shared
// with `mmuvisor stress`.
using vmm::ParseSize;
// A run argument or --seed/--boot-flags value: decimal ("4096"), hexadecimal ("0x1000")
// or decimal with a binary unit ("4K", "4M", "1G", "2T"); zero is allowed. Errors:
// anything else, or more than 64 bits.
absl::StatusOr<uint64_t> ParseGuestNumber(absl::string_view text);
// "10s", "500ms", "2m", "1h30m" (absl::ParseDuration) or plain seconds "10"; "none" for no
// timeout. Errors: malformed, zero or negative.
absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text);

std::string GeneralHelp();
std::string RunHelp();

}  // namespace mmuvisor::vmm::cli

#endif  // MMUVISOR_VMM_CLI_FLAGS_H_
