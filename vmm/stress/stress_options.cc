#include "vmm/stress/stress_options.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "notifier/base/status_macros.h"
#include "vmm/memory/guest_mem_size.h"
#include "vmm/stress/command_line.h"

namespace mmuvisor::vmm::stress {
namespace {

using cmdline::AddFlag;
using cmdline::AddSwitch;
using cmdline::OneOf;
// A stress flag given twice: the last one wins, as it always did.
constexpr cmdline::Repeat kLast = cmdline::Repeat::kLastWins;

constexpr uint64_t kPageBytes = 4096;
constexpr uint64_t kMaxOpPages = uint64_t{1} << 20;  // 4 GiB of pages

absl::Status Bad(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(absl::StrCat(flag, " '", value, "': ", why));
}

// The flags' value parsers: the error is the "why" (command_line.h adds "--flag 'text': ").
absl::StatusOr<uint64_t> Count(absl::string_view text, bool zero_ok) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || (!zero_ok && n == 0)) {
    return absl::InvalidArgumentError(zero_ok ? "want a non-negative integer"
                                              : "want a positive integer");
  }
  return n;
}
absl::StatusOr<uint64_t> AnyCount(absl::string_view text) { return Count(text, true); }
absl::StatusOr<uint64_t> PositiveCount(absl::string_view text) { return Count(text, false); }

absl::StatusOr<double> Fraction(absl::string_view text) {
  const bool percent = absl::ConsumeSuffix(&text, "%");
  double v = 0;
  if (!absl::SimpleAtod(text, &v)) {
    return absl::InvalidArgumentError("want a number like 0.25 or 25%");
  }
  if (percent) v /= 100;
  // Written so that NaN ("nan" parses) fails too.
  if (!(v >= 0 && v <= 1)) return absl::InvalidArgumentError("must lie in [0, 1] (or 0%..100%)");
  return v;
}

absl::StatusOr<double> Rate(absl::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !(v >= 0 && v <= 1e6)) {  // NaN fails too
    return absl::InvalidArgumentError("want operations per second in [0, 1e6]");
  }
  return v;
}

absl::StatusOr<absl::Duration> Duration(absl::string_view text) {
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(std::string(text), &d)) {
    return absl::InvalidArgumentError("want a duration like 3s or 500ms");
  }
  if (d <= absl::ZeroDuration()) return absl::InvalidArgumentError("must be positive");
  // "inf", or seconds beyond absl's range: a run without an end (NaN seconds is infinite).
  if (d == absl::InfiniteDuration()) return absl::InvalidArgumentError("must be finite");
  return d;
}

absl::StatusOr<std::string> Text(const std::string& text) { return text; }

// The host operations: their --ops names and --<name>-rate flags.
struct HostOpFlag {
  const char* name;
  double HostOpRates::*rate;
};
constexpr HostOpFlag kHostOps[] = {{"reclaim", &HostOpRates::reclaim},
                                   {"migrate", &HostOpRates::migrate},
                                   {"protect", &HostOpRates::protect},
                                   {"oom-reap", &HostOpRates::oom_reap}};

// What `mmuvisor stress`'s command line fills in.
struct StressLine {
  StressOptions o;
  // The rates --<op>-rate chose so far: --ops turns the operations it names on at these.
  HostOpRates chosen;
};

// --ops LIST: the named operations at their chosen rates, every other one off.
absl::Status SetOps(const std::string& list, StressLine& line) {
  HostOpRates on{0, 0, 0, 0};
  if (list != "none") {
    for (absl::string_view name : absl::StrSplit(list, ',')) {
      const HostOpFlag* op = std::find_if(std::begin(kHostOps), std::end(kHostOps),
                                          [name](const HostOpFlag& f) { return name == f.name; });
      if (name == "discard") {
        return absl::InvalidArgumentError(
            "discards are not a host operation here: they come from the guest's balloon "
            "calls (--no-balloon leaves them out)");
      }
      if (op == std::end(kHostOps)) {
        return absl::InvalidArgumentError(
            "operations are reclaim, migrate, protect, oom-reap or none");
      }
      on.*op->rate = line.chosen.*op->rate;
    }
  }
  line.o.ops = on;
  return absl::OkStatus();
}

void AddWorkloadFlags(CLI::App& app, StressLine& line) {
  StressOptions& o = line.o;
  // The parser and rules `run --mem` uses (vmm/memory/guest_mem_size.h).
  AddFlag(app, "--mem", "SIZE", "guest memory (default 2M under KVM, 32M on host threads)", kLast,
          [&o](const std::string& text) -> absl::Status {
            MMUVISOR_ASSIGN_OR_RETURN(o.mem_bytes, ParseGuestMemSize(text));
            o.mem_given = true;
            return absl::OkStatus();
          });
  // The parser `run --vcpus` uses.
  AddFlag(app, "--vcpus", "N", "vCPUs, 1 to 32 (default 2)", kLast, &o.vcpus,
          cmdline::ParseVcpus);
  AddFlag(app, "--duration", "DUR", "run time (default 3s); the run ends by DUR + max(1s, DUR/10)",
          kLast, &o.duration, Duration);
  AddFlag(app, "--rounds", "N",
          "stop each vCPU after N rounds (0 = use --duration); a KVM run\n"
          "then ends by --duration + 60s, a host-thread run still at --duration",
          kLast, &o.rounds, AnyCount);
  AddFlag(app, "--seed", "N", "workload seed (default 1): same seed + flags = same workload",
          kLast, &o.seed, AnyCount);
  AddSwitch(app, "--no-dma", "leave the DMA part of the workload out", [&o] { o.dma = false; });
  AddSwitch(app, "--no-balloon", "leave the balloon part of the workload out",
            [&o] { o.balloon = false; });
  AddFlag(app, "--guest", "NAME",
          "memstress (default) or hostile: vCPU 0 runs a seeded program of\n"
          "hostile records (random ucalls, ports, DMA chains, stores, balloon\n"
          "calls, then one fatal record), the other vCPUs run memstress and\n"
          "verify their data; KVM only, at least 2 vCPUs",
          kLast, &o.guest,
          OneOf<std::string>({{"memstress", "memstress"}, {"hostile", "hostile"}},
                             "stress guests are memstress (the default) and hostile"));
  AddFlag(app, "--hostile-log", "FILE",
          "with --guest hostile: write the records its vCPU ran, one a line", kLast,
          &o.hostile_log_path, Text);
}

void AddHostOpFlags(CLI::App& app, StressLine& line) {
  StressOptions& o = line.o;
  AddFlag(app, "--resident", "FRACTION",
          "reclaim runs while resident memory is above this (default 50%)", kLast,
          &o.resident_target, Fraction);
  AddFlag(app, "--ops", "LIST",
          "host operations to run: reclaim,migrate,protect,oom-reap or none\n"
          "(default: all; discards come from the guest's balloon calls)",
          kLast, [&line](const std::string& text) { return SetOps(text, line); });
  for (const HostOpFlag& op : kHostOps) {
    AddFlag(app, absl::StrCat("--", op.name, "-rate"), "R",
            absl::StrFormat("%s operations per second (default %g)", op.name,
                            HostOpRates{}.*op.rate),
            kLast, [&line, op](const std::string& text) -> absl::Status {
              MMUVISOR_ASSIGN_OR_RETURN(const double rate, Rate(text));
              line.o.ops.*op.rate = rate;
              line.chosen.*op.rate = rate;
              return absl::OkStatus();
            });
  }
  AddFlag(app, "--op-pages", "N", "pages per host operation (default 16)", kLast, &o.op_pages,
          PositiveCount);
  AddFlag(app, "--policy", "P", "notifier dispatch: upstream (default), sorted, legacy", kLast,
          &o.policy,
          OneOf<notifier::Policy>({{"upstream", notifier::Policy::kUpstream},
                                   {"sorted", notifier::Policy::kSortedEndLast},
                                   {"legacy", notifier::Policy::kLegacyUnpaired}},
                                  "policies are upstream, sorted, legacy"));
}

void AddRaceFlags(CLI::App& app, StressLine& line) {
  StressOptions& o = line.o;
  AddFlag(app, "--eagain", "P", "probability that a non-blockable start fails with EAGAIN", kLast,
          &o.eagain_probability, Fraction);
  AddFlag(app, "--delay-prob", "P", "probability of a delay in each fault-path race window",
          kLast, &o.delay_probability, Fraction);
  AddFlag(app, "--delay", "DUR",
          "that delay (default 200us; at most --duration, and none after it;\n"
          "cut to an eighth of the fault timeout, which delays count against)",
          kLast, &o.delay, Duration);
  AddFlag(app, "--fault-timeout", "DUR",
          "a fault still racing after this gives up (default 2s; 30s\n"
          "under KVM, where windows are long and overlap); under the\n"
          "legacy policy cut to max(1s, --duration/10) / 2 (not in KVM\n"
          "--rounds runs) so that the run keeps its time bound",
          kLast, [&o](const std::string& text) -> absl::Status {
            MMUVISOR_ASSIGN_OR_RETURN(o.fault_timeout, Duration(text));
            o.fault_timeout_given = true;
            return absl::OkStatus();
          });
  AddFlag(app, "--dma-path", "PATH",
          "secondary (default: SecondaryMmu) or mirror (interval Mirror)", kLast, &o.dma_path,
          OneOf<DmaPath>({{"secondary", DmaPath::kSecondary}, {"mirror", DmaPath::kMirror}},
                         "DMA paths are secondary, mirror"));
}

void AddRunFlags(CLI::App& app, StressLine& line) {
  StressOptions& o = line.o;
  AddFlag(app, "--mode", "M",
          "where the workload runs: auto (default: kvm if it can run\n"
          "here, else host-threads), kvm, host-threads",
          kLast, &o.mode,
          OneOf<StressMode>({{"auto", StressMode::kAuto},
                             {"kvm", StressMode::kKvm},
                             {"host-threads", StressMode::kHostThreads}},
                            "modes are auto, kvm, host-threads"));
  AddSwitch(app, "--host-threads", "same as --mode host-threads",
            [&o] { o.mode = StressMode::kHostThreads; });
  AddFlag(app, "--json", "FILE", "write the report as JSON", kLast, &o.json_path, Text);
  AddFlag(app, "--trace", "FILE", "write a Chrome/Perfetto trace (open in ui.perfetto.dev)",
          kLast, &o.trace_path, Text);
  AddSwitch(app, "--no-progress", "no live progress line", [&o] { o.progress = false; });
  AddFlag(app, "--kvm", "PATH", "KVM device (default /dev/kvm)", kLast, &o.kvm_path, Text);
  AddFlag(app, "--slots", "N",
          "KVM runs: guest RAM as N memslots (default 1), at most 4096 and\n"
          "what KVM allows", kLast, &o.ram_slots, cmdline::ParseSlots);
  AddFlag(app, "--aliases", "K",
          "KVM runs: guest RAM also at K more guest-physical ranges (one\n"
          "memslot each over the same pages; default 0, at most 8); the\n"
          "guest writes through one and verifies through another",
          kLast, &o.aliases, cmdline::ParseAliases);
  AddFlag(app, "--memslot-churn", "R",
          "KVM runs: spare-slot changes per second while the guest runs\n"
          "(add, move, delete in turn; default 0 = none)",
          kLast, &o.memslot_churn, Rate);
  AddFlag(app, "--dirty", "LOG",
          "KVM runs: bitmap (default), ring (KVM's dirty ring; an error\n"
          "where KVM lacks it), auto (none where KVM prefetches on faults,\n"
          "else the ring where it passes a self-check, else the bitmap)\n"
          "or none (no log: every resident page written back)",
          kLast, &o.dirty_log,
          OneOf<DirtyLogSource>({{"bitmap", DirtyLogSource::kBitmap},
                                   {"ring", DirtyLogSource::kRing},
                                   {"auto", DirtyLogSource::kAuto},
                                   {"none", DirtyLogSource::kNone}},
                                  "must be bitmap, ring, auto or none"));
}

void AddTestFlags(CLI::App& app, StressLine& line) {
  StressOptions& o = line.o;
  AddSwitch(app, "--test-skip-dma-retry",
            "TEST ONLY: the DMA path skips its retry checks, and every DMA\n"
            "fault gets an invalidation of its page forced into its race\n"
            "window, so the run FAILs on every seed (a must-fail control)",
            [&o] {
              o.skip_dma_retry_check_for_testing = true;
              o.force_dma_fault_races_for_testing = true;
            });
  AddSwitch(app, "--test-hostile-hits-verifier",
            "TEST ONLY, with --guest hostile: its stores go into vCPU 1's\n"
            "work pages, so the run FAILs by vCPU 1's check",
            [&o] { o.hostile_hits_verifier_for_testing = true; });
}

void BuildStressApp(CLI::App& app, StressLine& line) {
  app.name("stress");
  app.allow_extras();  // words it cannot place: ParseStressFlags says what they are
  app.set_help_flag();  // `mmuvisor stress --help` is answered by the CLI (vmm/cli/flags.h)
  app.description(
      "Runs the memstress guest (every vCPU writes seeded patterns, re-reads and verifies them,\n"
      "drives DMA copies and gives pages back) while the host reclaims, migrates, protects and\n"
      "OOM-reaps its memory underneath; ends with PASS/FAIL and a report. Exit code 0 on PASS,\n"
      "1 on FAIL, 2 for bad flags, 5 when --mode kvm cannot run (no usable /dev/kvm).");
  app.option_defaults()->group("Workload");
  AddWorkloadFlags(app, line);
  app.option_defaults()->group("Host operations");
  AddHostOpFlags(app, line);
  app.option_defaults()->group("Races");
  AddRaceFlags(app, line);
  app.option_defaults()->group("Where it runs, what it writes");
  AddRunFlags(app, line);
  app.option_defaults()->group("Must-fail controls");
  AddTestFlags(app, line);
  cmdline::SetHelpFormat(app, "usage: mmuvisor stress [flags]", 24);
}

// The rules between flags, once all are read.
absl::Status CheckCombination(const StressOptions& o) {
  if (o.guest == "hostile" && o.vcpus < 2) {
    return Bad("--vcpus", absl::StrCat(o.vcpus),
               "--guest hostile needs at least 2 vCPUs (vCPU 0 is hostile, the others verify)");
  }
  if (o.guest == "hostile" && o.mode == StressMode::kHostThreads) {
    return Bad("--guest", o.guest, "runs under KVM only (--mode kvm or auto)");
  }
  if (o.guest != "hostile" &&
      (!o.hostile_log_path.empty() || o.hostile_hits_verifier_for_testing)) {
    return Bad(!o.hostile_log_path.empty() ? "--hostile-log" : "--test-hostile-hits-verifier",
               o.hostile_log_path, "only with --guest hostile");
  }
  if (o.aliases > 0 && o.dma_path == DmaPath::kMirror) {
    return Bad("--aliases", absl::StrCat(o.aliases),
               "not with --dma-path mirror (the mirror reaches guest RAM by offset, not "
               "through the memslots an alias is)");
  }
  // One operation's pages are counted in 64-bit arithmetic with the rates (at most 1e6/s):
  // a bound far above any guest keeps those products exact.
  if (o.op_pages > kMaxOpPages) {
    return Bad("--op-pages", absl::StrCat(o.op_pages),
               absl::StrCat("at most ", kMaxOpPages, " pages (4 GiB) per operation"));
  }
  // The guest's size is known here when --mem is given or the mode is host threads (whose
  // default mem_bytes is); a KVM guest of the default size checks it when laid out, and a
  // host-thread guest again when created (--mode auto may fall back to one).
  if ((o.mem_given || o.mode == StressMode::kHostThreads) &&
      o.op_pages * kPageBytes > o.mem_bytes) {
    return Bad("--op-pages", absl::StrCat(o.op_pages),
               absl::StrCat("more than the guest's ", o.mem_bytes / kPageBytes, " pages (--mem",
                            o.mem_given ? "" : ", by default 32M on host threads", ")"));
  }
  // Only a non-blockable start can fail, and the OOM reaper is the one host operation
  // that opens one: without it the injector would never be asked.
  if (o.eagain_probability > 0 && o.ops.oom_reap <= 0) {
    return Bad("--eagain", absl::StrCat(o.eagain_probability),
               "needs the OOM reaper (oom-reap in --ops, a --oom-reap-rate above 0): its "
               "windows are the only non-blockable starts");
  }
  // The fault-path delays, the mirror and the must-fail control act on the DMA path only;
  // memstress without DMA never takes it.
  if (!o.dma && o.guest == "memstress") {
    const char* flag = o.delay_probability > 0               ? "--delay-prob"
                       : o.dma_path == DmaPath::kMirror      ? "--dma-path"
                       : o.skip_dma_retry_check_for_testing ? "--test-skip-dma-retry"
                                                             : nullptr;
    if (flag != nullptr) {
      return absl::InvalidArgumentError(
          absl::StrCat(flag, ": acts on the DMA path, which --no-dma leaves out"));
    }
  }
  if (o.resident_target <= 0) {
    return Bad("--resident", absl::StrCat(o.resident_target),
               "must be above 0 (the guest's touched pages are resident while it uses them)");
  }
  if (!o.json_path.empty() && o.json_path == o.trace_path) {
    return Bad("--trace", o.trace_path, "the same file as --json");
  }
  if (!o.hostile_log_path.empty() &&
      (o.hostile_log_path == o.json_path || o.hostile_log_path == o.trace_path)) {
    return Bad("--hostile-log", o.hostile_log_path,
               absl::StrCat("the same file as ", o.hostile_log_path == o.json_path ? "--json"
                                                                                   : "--trace"));
  }
  if (o.delay_probability > 0 && o.delay > o.duration) {
    return Bad("--delay", absl::FormatDuration(o.delay),
               absl::StrCat("longer than the run (--duration ", absl::FormatDuration(o.duration),
                            "): a delay sleeps inside a fault window, where nothing can cut "
                            "it short"));
  }
  return absl::OkStatus();
}

}  // namespace

const char* PolicyFlagName(notifier::Policy policy) {
  switch (policy) {
    case notifier::Policy::kUpstream: return "upstream";
    case notifier::Policy::kSortedEndLast: return "sorted";
    case notifier::Policy::kLegacyUnpaired: return "legacy";
  }
  return "?";
}

const char* DmaPathName(DmaPath path) {
  return path == DmaPath::kSecondary ? "secondary" : "mirror";
}

absl::StatusOr<StressOptions> ParseStressFlags(absl::Span<const std::string> args) {
  StressLine line;
  CLI::App app;
  BuildStressApp(app, line);
  MMUVISOR_ASSIGN_OR_RETURN(const cmdline::ParsedWords words, cmdline::Parse(app, args));
  std::vector<std::string> leftovers = app.remaining();
  if (words.dash_dash) leftovers.push_back("--");
  for (const std::string& word : leftovers) {
    if (std::optional<std::string> flag = cmdline::FlagName(word); flag && word != "--") {
      return absl::InvalidArgumentError(
          absl::StrCat("unknown flag '", *flag, "' (see 'mmuvisor help stress')"));
    }
    return absl::InvalidArgumentError(absl::StrCat(
        "unexpected argument '", word, "' (stress takes flags only; see 'mmuvisor help stress')"));
  }
  MMUVISOR_RETURN_IF_ERROR(CheckCombination(line.o));
  return line.o;
}

absl::Duration RunSlack(absl::Duration duration) {
  return std::max(absl::Seconds(1), duration / 10);
}

absl::Duration BoundedFaultTimeout(absl::Duration wanted, absl::Duration duration,
                                   bool windows_leak, bool* cut) {
  const absl::Duration limit =
      windows_leak ? RunSlack(duration) / 2 : absl::InfiniteDuration();
  if (cut != nullptr) *cut = wanted > limit;
  return std::min(wanted, limit);
}

absl::Duration BoundedDelay(absl::Duration wanted, absl::Duration fault_timeout, bool* cut) {
  const absl::Duration limit = fault_timeout / 8;
  if (cut != nullptr) *cut = wanted > limit;
  return std::min(wanted, limit);
}

absl::Status CheckGuestFitsHost(uint64_t guest_bytes, double resident, uint64_t host_ram) {
  const double needed = static_cast<double>(guest_bytes) * resident;
  if (host_ram == 0 || needed <= static_cast<double>(host_ram)) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "--mem %u bytes at %.0f%% resident (--resident, or all of it without reclaim) keeps "
      "%.0f bytes resident: more than this host's %u bytes of RAM (lower --mem or "
      "--resident)",
      guest_bytes, resident * 100, needed, host_ram));
}

double ResidentBound(const StressOptions& options) {
  return options.ops.reclaim > 0 ? options.resident_target : 1.0;
}

std::string StressHelp() {
  StressLine line;
  CLI::App app;
  BuildStressApp(app, line);
  return app.help();
}

}  // namespace mmuvisor::vmm::stress
