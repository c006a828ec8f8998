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
#include "notifier/base/status_macros.h"
#include "vmm/cli/guest_source.h"
#include "vmm/memory/guest_mem_size.h"
#include "vmm/stress/command_line.h"

namespace mmuvisor::vmm::cli {
namespace {

using cmdline::AddFlag;
using cmdline::Repeat;

constexpr size_t kHelpColumn = 19;

// "25%" or "0.25": a fraction in (0, 1].
absl::StatusOr<double> ParseResident(absl::string_view text) {
  double v = 0;
  if (absl::EndsWith(text, "%")) {
    if (!absl::SimpleAtod(text.substr(0, text.size() - 1), &v)) {
      return absl::InvalidArgumentError("not a percentage (expected e.g. 25%)");
    }
    v /= 100.0;
  } else if (!absl::SimpleAtod(text, &v)) {
    return absl::InvalidArgumentError("not a fraction (expected e.g. 25% or 0.25)");
  }
  if (!(v > 0.0 && v <= 1.0)) {
    return absl::InvalidArgumentError("must be more than 0% and at most 100%");
  }
  return v;
}

absl::StatusOr<uint32_t> ParseBootFlags(absl::string_view text) {
  MMUVISOR_ASSIGN_OR_RETURN(const uint64_t v, ParseGuestNumber(text));
  if (v > std::numeric_limits<uint32_t>::max()) {
    return absl::InvalidArgumentError("more than 32 bits (mmv_boot_info.flags)");
  }
  return static_cast<uint32_t>(v);
}

// What `mmuvisor run`'s command line fills in.
struct RunLine {
  RunOptions run;
  std::string guest;
  bool guest_given = false;  // before "--" (CLI11) or as the first word after it
  bool timeout_given = false;
};

void AddRunFlags(CLI::App& app, RunLine& line) {
  RunOptions& run = line.run;
  const Repeat once = Repeat::kRefuse;
  AddFlag(app, "--seed", "N", "mmv_boot_info.seed, for the guest's own use. Default 0", once,
          &run.seed, ParseGuestNumber);
  AddFlag(app, "--boot-flags", "N",
          "mmv_boot_info.flags (32 bits), for the guest's own use. Default 0", once,
          &run.boot_flags, ParseBootFlags);
  // The parser and rules `stress --mem` uses (vmm/memory/guest_mem_size.h).
  AddFlag(app, "--mem", "SIZE",
          "guest RAM, a multiple of 4 KiB from 2M up to this host's physical\n"
          "memory; units K, M, G, T (binary). Default 64M",
          once, &run.mem_bytes, ParseGuestMemSize);
  AddFlag(app, "--vcpus", "N",
          "virtual CPUs, 1 to 32 and at most what KVM allows; each gets its\n"
          "own stack and ucall block (RDI = its index). Default 1",
          once, &run.vcpus, cmdline::ParseVcpus);
  AddFlag(app, "--timeout", "D",
          "stop the guest and fail (exit 4) after D: 10s, 500ms, 2m, plain\n"
          "seconds, or 'none'. Default 10s, 60s with --cpl 0",
          once, [&line](const std::string& text) -> absl::Status {
            MMUVISOR_ASSIGN_OR_RETURN(line.run.timeout, ParseTimeout(text));
            line.timeout_given = true;
            return absl::OkStatus();
          });
  AddFlag(app, "--memory", "KIND",
          "backing of guest RAM: 'memfd' (shareable, hole-punchable; the\n"
          "default) or 'anon' (private anonymous memory)",
          once, &run.backing,
          cmdline::OneOf<MemoryBacking>(
              {{"memfd", MemoryBacking::kMemfd}, {"anon", MemoryBacking::kAnonymous}},
              "must be 'memfd' or 'anon'"));
  AddFlag(app, "--slots", "N",
          "guest RAM as N memslots (contiguous; default 1), at most 4096 and\n"
          "what KVM allows (KVM_CAP_NR_MEMSLOTS)",
          once, &run.ram_slots, cmdline::ParseSlots);
  AddFlag(app, "--aliases", "K",
          "guest RAM also at K more guest-physical ranges, k * (RAM rounded\n"
          "up to 1 GiB), one memslot each over the same pages (default 0,\n"
          "at most 8)",
          once, &run.ram_aliases, cmdline::ParseAliases);
  AddFlag(app, "--dirty", "LOG",
          "how reclaim learns what the guest wrote: 'bitmap' (KVM_GET_DIRTY_LOG),\n"
          "'ring' (KVM's per-vCPU dirty ring; an error where KVM lacks it),\n"
          "'none' (no log: every resident page is written back; the default\n"
          "without --resident, where nothing reclaims and no log is read) or\n"
          "'auto' (the default with --resident: none\n"
          "where KVM prefetches pages on faults, as on PVM and shadow paging,\n"
          "since a log stops that; else the ring where it passes a self-check,\n"
          "else the bitmap)",
          once, &run.dirty_log,
          cmdline::OneOf<DirtyLogSource>({{"bitmap", DirtyLogSource::kBitmap},
                                          {"ring", DirtyLogSource::kRing},
                                          {"auto", DirtyLogSource::kAuto},
                                          {"none", DirtyLogSource::kNone}},
                                         "must be bitmap, ring, auto or none"));
  AddFlag(app, "--cpl", "0|3",
          "privilege a long-mode guest starts at: 3 (user mode, ports through\n"
          "the TSS I/O bitmap; runs natively on shadow-paging hosts; the\n"
          "default) or 0 (kernel mode, instruction-emulated on such hosts:\n"
          "setup code only)",
          once, &run.privilege,
          cmdline::OneOf<GuestPrivilege>(
              {{"3", GuestPrivilege::kUser}, {"0", GuestPrivilege::kKernel}}, "must be 0 or 3"));
  AddFlag(app, "--kvm", "PATH", "the KVM device. Default /dev/kvm", once, &run.kvm_path,
          [](const std::string& text) -> absl::StatusOr<std::string> { return text; });
  AddFlag(app, "--resident", "P",
          "keep at most P of guest RAM resident (25% or 0.25): a reclaim\n"
          "thread swaps the rest out to a temporary swap file while the\n"
          "guest runs; it comes back on access. Default: no reclaim",
          once, &run.resident_fraction,
          [](const std::string& text) -> absl::StatusOr<std::optional<double>> {
            MMUVISOR_ASSIGN_OR_RETURN(const double v, ParseResident(text));
            return v;
          });
}

// `run`'s app: GUEST, the flags, -h/--help, and the help text they make.
void BuildRunApp(CLI::App& app, RunLine& line) {
  app.name("run");
  app.allow_extras();  // words it cannot place: ParseRun says what they are
  app.description(
      "Boots GUEST in a fresh KVM virtual machine, prints what it writes to the serial port\n"
      "and through ucall PRINT on stdout, and exits with the guest's verdict (see\n"
      "'mmuvisor --help'). Errors and the final report go to stderr, one line each.");
  app.option_defaults()->group("Flags");
  app.add_option("GUEST", line.guest,
                 absl::StrCat("a built-in guest (", absl::StrJoin(kRunGuests, ", "),
                              ") or the path of an\n"
                              "x86-64 ELF executable built with the guest SDK "
                              "(guests/README.md)"))
      ->type_name("");
  AddRunFlags(app, line);
  cmdline::AddHelpFlag(app);
  app.footer(
      "\nGuest arguments:\n"
      "  -- ARG...        up to 8 run arguments for the guest, each decimal, 0x hex or a\n"
      "                   size (4K, 4M, 1G): mmv_boot_info.args[0..n), nr_args = n (also\n"
      "                   in RSI at entry). Default: none (nr_args 0, args all 0)\n"
      "\n"
      "Flags take '--flag VALUE' or '--flag=VALUE'. memstress, dmahostile and hostile are\n"
      "the guests of 'mmuvisor stress' and do not run here.");
  cmdline::SetHelpFormat(app, "Usage: mmuvisor run GUEST [flags] [-- ARG...]", kHelpColumn);
}

// The words CLI11 left over before "--": an unknown flag or a second GUEST.
absl::Status CheckLeftovers(const CLI::App& app, const RunLine& line) {
  for (const std::string& word : app.remaining()) {
    if (std::optional<std::string> flag = cmdline::FlagName(word)) {
      return absl::InvalidArgumentError(
          absl::StrCat("run: unknown flag '", *flag, "' (see 'mmuvisor run --help')"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("run: unexpected argument '", word, "' (GUEST is already '", line.guest,
                     "'); guest arguments go after '--'"));
  }
  return absl::OkStatus();
}

// The words after "--": GUEST first if it was not given before, then the run arguments
// (mmv_boot_info.args[n]).
absl::Status TakeGuestArgs(absl::Span<const std::string> words, RunLine& line) {
  auto word = words.begin();
  if (!line.guest_given && word != words.end()) {
    line.guest = *word++;
    line.guest_given = true;
  }
  const size_t given = words.end() - word;
  if (given > MMV_BOOT_INFO_MAX_ARGS) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "run: too many guest arguments (%u given after '--'): at most %u fit in "
        "mmv_boot_info.args",
        given, MMV_BOOT_INFO_MAX_ARGS));
  }
  for (size_t n = 0; word != words.end(); ++word, ++n) {
    absl::StatusOr<uint64_t> v = ParseGuestNumber(*word);
    if (!v.ok()) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "run: guest argument %u '%s': %s", n, *word, v.status().message()));
    }
    line.run.guest_args.push_back(*v);
  }
  return absl::OkStatus();
}

absl::StatusOr<Command> ParseRun(absl::Span<const std::string> args) {
  RunLine line;
  CLI::App app;
  BuildRunApp(app, line);
  MMUVISOR_ASSIGN_OR_RETURN(cmdline::ParsedWords words, cmdline::Parse(app, args));
  if (words.help) return Command{CommandKind::kHelp, "run", {}};
  MMUVISOR_RETURN_IF_ERROR(CheckLeftovers(app, line));
  line.guest_given = app.count("GUEST") > 0;
  MMUVISOR_RETURN_IF_ERROR(TakeGuestArgs(words.after_dash_dash, line));
  if (!line.guest_given) {
    return absl::InvalidArgumentError(
        "run: missing GUEST (a built-in guest name or an ELF path; see 'mmuvisor run --help')");
  }
  line.run.guest = line.guest;
  if (!line.timeout_given && line.run.privilege == GuestPrivilege::kKernel) {
    line.run.timeout = kDefaultTimeoutCpl0;
  }
  Command command;
  command.kind = CommandKind::kRun;
  command.run = std::move(line.run);
  return command;
}

// The top level: `mmuvisor [COMMAND] ...`. Each command takes the words after its name
// unread (prefix_command) and parses them with its own app: run's above, stress's in
// vmm/stress (ParseStressFlags, when the command runs).
struct TopLevel {
  CLI::App app;
  CLI::App* run = nullptr;
  CLI::App* help = nullptr;
};

void BuildTopLevel(TopLevel& top) {
  CLI::App& app = top.app;
  app.name("mmuvisor");
  app.description("mmuvisor: a KVM-based hypervisor memory subsystem you can run, break and "
                  "measure.");
  app.allow_extras();
  app.require_subcommand(0, 1);  // set first: commands inherit it, so "run" is a GUEST after one
  app.option_defaults()->group("Flags");
  cmdline::AddHelpFlag(app);
  auto add = [&app](const std::string& name, const std::string& what) {
    CLI::App* command = app.add_subcommand(name, what);
    command->set_help_flag();
    command->prefix_command();
    command->allow_extras();
    command->group("Commands");
    return command;
  };
  top.run = add("run", absl::StrCat("boot GUEST (e.g. ", kDefaultGuest,
                                    "); 'mmuvisor run --help' lists the flags"));
  add("stress",
      "a memory-stress guest under a reclaim storm, with a verdict;\n"
      "'mmuvisor stress --help' lists the flags");
  top.help = add("help", "this text, or COMMAND's (run, stress)");
  app.footer(
      "\nWithout a COMMAND: the short default stress scenario (mmuvisor stress).\n"
      "\n"
      "Exit status: 0 the guest finished cleanly (ucall DONE with code 0); 1 the guest\n"
      "reported a failure (assertion, non-zero DONE, malformed ucall, stopped without\n"
      "DONE); 2 bad input (flags, guest image, sizes); 3 the guest crashed; 4 it ran past\n"
      "--timeout; 5 the host could not run it (/dev/kvm missing or not permitted, a KVM\n"
      "call failed). 'mmuvisor stress' exits 0 on PASS, 1 on FAIL, 2 for bad flags, 5 when\n"
      "--mode kvm cannot run.");
  cmdline::SetHelpFormat(app, "Usage: mmuvisor [COMMAND] [flags]", 28);
}

bool IsHelpFlag(absl::string_view arg) { return arg == "--help" || arg == "-h"; }

absl::StatusOr<Command> ParseHelpTopic(absl::Span<const std::string> words) {
  if (words.size() > 1) {
    return absl::InvalidArgumentError(absl::StrCat("help: unexpected argument '", words[1], "'"));
  }
  const std::string topic = words.empty() ? "" : words[0];
  if (!topic.empty() && topic != "run" && topic != "stress") {
    return absl::InvalidArgumentError(absl::StrCat("help: unknown command '", topic, "'"));
  }
  return Command{CommandKind::kHelp, topic, {}};
}

}  // namespace

absl::StatusOr<uint64_t> ParseGuestNumber(absl::string_view text) {
  const absl::Status not_a_number = absl::InvalidArgumentError(
      "not a number (expected decimal, 0x hex, or a size such as 4K or 4M)");
  uint64_t v = 0;
  if (absl::StartsWithIgnoreCase(text, "0x")) {
    const absl::string_view hex = text.substr(2);
    if (hex.empty() || hex.size() > 16 ||
        !std::all_of(hex.begin(), hex.end(),
                     [](char c) { return absl::ascii_isxdigit(static_cast<unsigned char>(c)); }) ||
        !absl::SimpleHexAtoi(hex, &v)) {
      return not_a_number;
    }
    return v;
  }
  if (text == "0") return uint64_t{0};
  if (text.empty() || !absl::ascii_isdigit(static_cast<unsigned char>(text[0]))) {
    return not_a_number;
  }
  absl::StatusOr<uint64_t> size = ParseSize(text);  // decimal with an optional unit
  if (!size.ok()) {
    if (absl::StrContains(size.status().message(), "zero")) return uint64_t{0};  // "00", "0K"
    if (absl::StrContains(size.status().message(), "unknown unit")) return not_a_number;
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
  TopLevel top;
  BuildTopLevel(top);
  MMUVISOR_ASSIGN_OR_RETURN(cmdline::ParsedWords parsed, cmdline::Parse(top.app, args));
  if (parsed.help) return Command{CommandKind::kHelp, "", {}};
  const std::vector<CLI::App*> chosen = top.app.get_subcommands();
  std::vector<std::string> words = chosen.empty() ? top.app.remaining() : chosen[0]->remaining();
  if (parsed.dash_dash) {  // the command's own to read (run: its guest arguments)
    words.push_back("--");
    words.insert(words.end(), parsed.after_dash_dash.begin(), parsed.after_dash_dash.end());
  }
  if (chosen.empty()) {
    // No command: the short stress scenario with its default flags.
    if (words.empty()) return Command{CommandKind::kStress, "", {}, {}};
    if (cmdline::FlagName(words[0])) {
      return absl::InvalidArgumentError(absl::StrCat(
          "unknown flag '", words[0], "' before a command (try 'mmuvisor --help')"));
    }
    return absl::InvalidArgumentError(
        absl::StrCat("unknown command '", words[0], "' (try 'mmuvisor --help')"));
  }
  if (chosen[0] == top.run) return ParseRun(words);
  if (chosen[0] == top.help) return ParseHelpTopic(words);
  if (std::any_of(words.begin(), words.end(), IsHelpFlag)) {
    return Command{CommandKind::kHelp, "stress", {}, {}};
  }
  return Command{CommandKind::kStress, "", {}, std::move(words)};
}

std::string GeneralHelp() {
  TopLevel top;
  BuildTopLevel(top);
  return top.app.help();
}

std::string RunHelp() {
  RunLine line;
  CLI::App app;
  BuildRunApp(app, line);
  return app.help();
}

}  // namespace mmuvisor::vmm::cli
