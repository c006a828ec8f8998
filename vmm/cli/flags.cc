#include "vmm/cli/flags.h"

#include <algorithm>
#include <limits>
#include <optional>

#include "absl/strings/ascii.h"
#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/cli/guest_source.h"
#include "vmm/memory/address.h"
#include "vmm/memory/guest_mem_size.h"

namespace mmuvisor::vmm::cli {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " '", value, "': ", why));
}

absl::StatusOr<uint32_t> ParseVcpus(absl::string_view value) {
  uint32_t n = 0;
  if (!absl::SimpleAtoi(value, &n) || absl::StartsWith(value, "+") ||
      absl::StartsWith(value, "-")) {
    return Bad("--vcpus", value, "not a whole number");
  }
  if (n == 0 || n > MMV_UCALL_MAX_VCPUS) {
    return Bad("--vcpus", value, absl::StrFormat("must be 1 to %u", MMV_UCALL_MAX_VCPUS));
  }
  return n;
}

absl::StatusOr<MemoryBacking> ParseBacking(absl::string_view value) {
  if (value == "memfd") return MemoryBacking::kMemfd;
  if (value == "anon") return MemoryBacking::kAnonymous;
  return Bad("--memory", value, "must be 'memfd' or 'anon'");
}

absl::StatusOr<GuestPrivilege> ParseCpl(absl::string_view value) {
  if (value == "3") return GuestPrivilege::kUser;
  if (value == "0") return GuestPrivilege::kKernel;
  return Bad("--cpl", value, "must be 0 or 3");
}

bool IsHelpFlag(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

// Splits "--flag=value" into ("--flag", "value"); otherwise value is nullopt.
std::pair<absl::string_view, std::optional<absl::string_view>> SplitFlag(absl::string_view arg) {
  const size_t eq = arg.find('=');
  if (eq == absl::string_view::npos) return {arg, std::nullopt};
  return {arg.substr(0, eq), arg.substr(eq + 1)};
}

// "25%" or "0.25": a fraction in (0, 1].
absl::StatusOr<double> ParseResident(absl::string_view value) {
  double v = 0;
  if (absl::EndsWith(value, "%")) {
    if (!absl::SimpleAtod(value.substr(0, value.size() - 1), &v)) {
      return absl::InvalidArgumentError("not a percentage (expected e.g. 25%)");
    }
    v /= 100.0;
  } else if (!absl::SimpleAtod(value, &v)) {
    return absl::InvalidArgumentError("not a fraction (expected e.g. 25% or 0.25)");
  }
  if (!(v > 0.0 && v <= 1.0)) {
    return absl::InvalidArgumentError("must be more than 0% and at most 100%");
  }
  return v;
}

absl::StatusOr<Command> ParseRun(absl::Span<const std::string> args) {
  Command command;
  command.kind = CommandKind::kRun;
  RunOptions& run = command.run;
  std::optional<std::string> guest;
  std::vector<std::string> seen;
  bool flags_done = false;
  for (size_t i = 0; i < args.size(); ++i) {
    const absl::string_view arg = args[i];
    if (!flags_done && IsHelpFlag(arg)) {
      return Command{CommandKind::kHelp, "run", {}};
    }
    if (!flags_done && arg == "--") {
      flags_done = true;
      continue;
    }
    if (flags_done && guest) {
      // A run argument: mmv_boot_info.args[n].
      const size_t n = run.guest_args.size();
      if (n == MMV_BOOT_INFO_MAX_ARGS) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "run: too many guest arguments (%u given after '--'): at most %u fit in "
            "mmv_boot_info.args",
            args.size() - i + n, MMV_BOOT_INFO_MAX_ARGS));
      }
      absl::StatusOr<uint64_t> v = ParseGuestNumber(arg);
      if (!v.ok()) {
        return absl::InvalidArgumentError(absl::StrFormat(
            "run: guest argument %u '%s': %s", n, arg, v.status().message()));
      }
      run.guest_args.push_back(*v);
      continue;
    }
    if (flags_done || !absl::StartsWith(arg, "-") || arg == "-") {
      if (guest) {
        return absl::InvalidArgumentError(absl::StrCat(
            "run: unexpected argument '", arg, "' (GUEST is already '", *guest,
            "'); guest arguments go after '--'"));
      }
      guest = std::string(arg);
      continue;
    }
    auto [flag, inline_value] = SplitFlag(arg);
    static constexpr absl::string_view kFlags[] = {"--mem",    "--vcpus",     "--timeout",
                                                   "--memory", "--cpl",       "--kvm",
                                                   "--resident", "--seed", "--boot-flags"};
    bool known = false;
    for (absl::string_view f : kFlags) known = known || f == flag;
    if (!known) {
      return absl::InvalidArgumentError(
          absl::StrCat("run: unknown flag '", flag, "' (see 'mmuvisor run --help')"));
    }
    for (const std::string& s : seen) {
      if (s == flag) return absl::InvalidArgumentError(absl::StrCat(flag, " given twice"));
    }
    seen.emplace_back(flag);
    absl::string_view value;
    if (inline_value) {
      value = *inline_value;
    } else if (i + 1 < args.size()) {
      value = args[++i];
    } else {
      return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    }
    if (value.empty()) return absl::InvalidArgumentError(absl::StrCat(flag, " needs a value"));
    if (flag == "--mem") {
      absl::StatusOr<uint64_t> v = ParseGuestMemSize(value);
      if (!v.ok()) return v.status();
      run.mem_bytes = *v;
    } else if (flag == "--vcpus") {
      absl::StatusOr<uint32_t> v = ParseVcpus(value);
      if (!v.ok()) return v.status();
      run.vcpus = *v;
    } else if (flag == "--timeout") {
      absl::StatusOr<absl::Duration> v = ParseTimeout(value);
      if (!v.ok()) return Bad("--timeout", value, v.status().message());
      run.timeout = *v;
    } else if (flag == "--memory") {
      absl::StatusOr<MemoryBacking> v = ParseBacking(value);
      if (!v.ok()) return v.status();
      run.backing = *v;
    } else if (flag == "--cpl") {
      absl::StatusOr<GuestPrivilege> v = ParseCpl(value);
      if (!v.ok()) return v.status();
      run.privilege = *v;
    } else if (flag == "--seed") {
      absl::StatusOr<uint64_t> v = ParseGuestNumber(value);
      if (!v.ok()) return Bad("--seed", value, v.status().message());
      run.seed = *v;
    } else if (flag == "--boot-flags") {
      absl::StatusOr<uint64_t> v = ParseGuestNumber(value);
      if (!v.ok()) return Bad("--boot-flags", value, v.status().message());
      if (*v > std::numeric_limits<uint32_t>::max()) {
        return Bad("--boot-flags", value, "more than 32 bits (mmv_boot_info.flags)");
      }
      run.boot_flags = static_cast<uint32_t>(*v);
    } else if (flag == "--resident") {
      absl::StatusOr<double> v = ParseResident(value);
      if (!v.ok()) return Bad("--resident", value, v.status().message());
      run.resident_fraction = *v;
    } else {  // --kvm
      run.kvm_path = std::string(value);
    }
  }
  if (!guest) {
    return absl::InvalidArgumentError(
        "run: missing GUEST (a built-in guest name or an ELF path; see 'mmuvisor run --help')");
  }
  run.guest = *guest;
  const bool timeout_given =
      std::find(seen.begin(), seen.end(), "--timeout") != seen.end();
  if (!timeout_given && run.privilege == GuestPrivilege::kKernel) {
    run.timeout = kDefaultTimeoutCpl0;
  }
  return command;
}

}  // namespace

absl::StatusOr<uint64_t> ParseGuestNumber(absl::string_view text) {
  uint64_t v = 0;
  if (absl::StartsWithIgnoreCase(text, "0x")) {
    const absl::string_view hex = text.substr(2);
    if (hex.empty() || hex.size() > 16 ||
        !std::all_of(hex.begin(), hex.end(),
                     [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }) ||
        !absl::SimpleHexAtoi(hex, &v)) {
      return absl::InvalidArgumentError(
          "not a number (expected decimal, 0x hex, or a size such as 4K or 4M)");
    }
    return v;
  }
  if (text == "0") return uint64_t{0};
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    return absl::InvalidArgumentError(
        "not a number (expected decimal, 0x hex, or a size such as 4K or 4M)");
  }
  absl::StatusOr<uint64_t> size = ParseSize(text);  // decimal with an optional unit
  if (!size.ok()) {
    if (absl::StrContains(size.status().message(), "zero")) return uint64_t{0};  // "00", "0K"
    if (absl::StrContains(size.status().message(), "unknown unit")) {
      return absl::InvalidArgumentError(
          "not a number (expected decimal, 0x hex, or a size such as 4K or 4M)");
    }
    return size.status();
  }
  return *size;
}

absl::StatusOr<absl::Duration> ParseTimeout(absl::string_view text) {
  if (text == "none") return absl::InfiniteDuration();
  absl::Duration d;
  int64_t seconds = 0;
  if (absl::SimpleAtoi(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(text, &d)) {
    return absl::InvalidArgumentError("not a duration (expected e.g. 10s, 500ms, 2m or none)");
  }
  if (d == absl::InfiniteDuration() || d <= absl::ZeroDuration()) {
    return absl::InvalidArgumentError("must be a positive, finite duration (or 'none')");
  }
  return d;
}

absl::StatusOr<Command> ParseCommandLine(absl::Span<const std::string> args) {
  // The default: the short stress scenario with its default flags.
  if (args.empty()) return Command{CommandKind::kStress, "", {}, {}};
  const absl::string_view first = args[0];
  if (IsHelpFlag(first)) return Command{CommandKind::kHelp, "", {}};
  if (first == "help") {
    if (args.size() > 2) {
      return absl::InvalidArgumentError(
          absl::StrCat("help: unexpected argument '", args[2], "'"));
    }
    std::string topic = args.size() == 2 ? args[1] : "";
    if (!topic.empty() && topic != "run" && topic != "stress") {
      return absl::InvalidArgumentError(absl::StrCat("help: unknown command '", topic, "'"));
    }
    return Command{CommandKind::kHelp, topic, {}};
  }
  if (first == "run") return ParseRun(args.subspan(1));
  if (first == "stress") {
    for (const std::string& a : args.subspan(1)) {
      if (IsHelpFlag(a)) return Command{CommandKind::kHelp, "stress", {}, {}};
    }
    return Command{CommandKind::kStress, "", {}, std::vector<std::string>(args.begin() + 1,
                                                                         args.end())};
  }
  if (absl::StartsWith(first, "-")) {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown flag '", first, "' before a command (try 'mmuvisor --help')"));
  }
  return absl::InvalidArgumentError(
      absl::StrCat("unknown command '", first, "' (try 'mmuvisor --help')"));
}

std::string GeneralHelp() {
  return absl::StrCat(
      "mmuvisor: a KVM-based hypervisor memory subsystem you can run, break and measure.\n"
      "\n"
      "Usage:\n"
      "  mmuvisor                    run the short default stress scenario (mmuvisor stress)\n"
      "  mmuvisor run GUEST [flags]  boot GUEST (e.g. ",
      kDefaultGuest,
      "); 'mmuvisor run --help' lists the flags\n"
      "  mmuvisor stress [flags]     a memory-stress guest under a reclaim storm, with a\n"
      "                              verdict; 'mmuvisor stress --help' lists the flags\n"
      "  mmuvisor help [COMMAND]     this text, or a command's\n"
      "\n"
      "Exit status: 0 the guest finished cleanly (ucall DONE with code 0); 1 the guest\n"
      "reported a failure (assertion, non-zero DONE, malformed ucall, stopped without\n"
      "DONE); 2 bad input (flags, guest image, sizes); 3 the guest crashed; 4 it ran past\n"
      "--timeout; 5 the host could not run it (/dev/kvm missing or not permitted, a KVM\n"
      "call failed). 'mmuvisor stress' exits 0 on PASS, 1 on FAIL, 2 for bad flags, 5 when\n"
      "--mode kvm cannot run.\n");
}

std::string RunHelp() {
  return absl::StrCat(
      "Usage: mmuvisor run GUEST [--mem SIZE] [--vcpus N] [--timeout D] [--memory memfd|anon]\n"
      "                          [--cpl 0|3] [--kvm PATH] [--resident P] [--seed N]\n"
      "                          [--boot-flags N] [-- ARG...]\n"
      "\n"
      "Boots GUEST in a fresh KVM virtual machine, prints what it writes to the serial port\n"
      "and through ucall PRINT on stdout, and exits with the guest's verdict (see\n"
      "'mmuvisor --help'). Errors and the final report go to stderr, one line each.\n"
      "\n"
      "  GUEST            a built-in guest (",
      absl::StrJoin(kRunGuests, ", "),
      ") or the path of an\n"
      "                   x86-64 ELF executable built with the guest SDK (guests/README.md)\n"
      "  -- ARG...        up to 8 run arguments for the guest, each decimal, 0x hex or a\n"
      "                   size (4K, 4M, 1G): mmv_boot_info.args[0..n), nr_args = n (also\n"
      "                   in RSI at entry). Default: none (nr_args 0, args all 0)\n"
      "  --seed N         mmv_boot_info.seed, for the guest's own use. Default 0\n"
      "  --boot-flags N   mmv_boot_info.flags (32 bits), for the guest's own use. Default 0\n"
      "  --mem SIZE       guest RAM, a multiple of 4 KiB from 2M up to this host's physical\n"
      "                   memory; units K, M, G, T (binary). Default 64M\n"
      "  --vcpus N        virtual CPUs, 1 to 32 and at most what KVM allows; each gets its\n"
      "                   own stack and ucall block (RDI = its index). Default 1\n"
      "  --timeout D      stop the guest and fail (exit 4) after D: 10s, 500ms, 2m, plain\n"
      "                   seconds, or 'none'. Default 10s, 60s with --cpl 0\n"
      "  --memory KIND    backing of guest RAM: 'memfd' (shareable, hole-punchable; the\n"
      "                   default) or 'anon' (private anonymous memory)\n"
      "  --cpl 0|3        privilege a long-mode guest starts at: 3 (user mode, ports through\n"
      "                   the TSS I/O bitmap; runs natively on shadow-paging hosts; the\n"
      "                   default) or 0 (kernel mode, instruction-emulated on such hosts:\n"
      "                   setup code only)\n"
      "  --kvm PATH       the KVM device. Default /dev/kvm\n"
      "  --resident P     keep at most P of guest RAM resident (25% or 0.25): a reclaim\n"
      "                   thread swaps the rest out to a temporary swap file while the\n"
      "                   guest runs; it comes back on access. Default: no reclaim\n"
      "  -h, --help       this text\n"
      "Flags take '--flag VALUE' or '--flag=VALUE'. memstress, dmahostile and hostile are\n"
      "the guests of 'mmuvisor stress' and do not run here.\n");
}

}  // namespace mmuvisor::vmm::cli
