#include "vmm/stress/stress_options.h"

#include <algorithm>
#include <cstdlib>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "notifier/base/status_macros.h"
#include "vmm/memory/guest_mem_size.h"

namespace mmuvisor::vmm::stress {
namespace {

absl::Status Bad(absl::string_view flag, absl::string_view value, absl::string_view why) {
  return absl::InvalidArgumentError(
      absl::StrCat(flag, " '", value, "': ", why));
}

absl::StatusOr<uint64_t> Count(absl::string_view flag, absl::string_view text, bool zero_ok) {
  uint64_t n = 0;
  if (!absl::SimpleAtoi(text, &n) || (!zero_ok && n == 0)) {
    return Bad(flag, text, zero_ok ? "want a non-negative integer" : "want a positive integer");
  }
  return n;
}

absl::StatusOr<double> Fraction(absl::string_view flag, absl::string_view text) {
  absl::string_view t = text;
  const bool percent = absl::ConsumeSuffix(&t, "%");
  double v = 0;
  if (!absl::SimpleAtod(t, &v)) return Bad(flag, text, "want a number like 0.25 or 25%");
  if (percent) v /= 100;
  // Written so that NaN ("nan" parses) fails too.
  if (!(v >= 0 && v <= 1)) return Bad(flag, text, "must lie in [0, 1] (or 0%..100%)");
  return v;
}

absl::StatusOr<double> Rate(absl::string_view flag, absl::string_view text) {
  double v = 0;
  if (!absl::SimpleAtod(text, &v) || !(v >= 0 && v <= 1e6)) {  // NaN fails too
    return Bad(flag, text, "want operations per second in [0, 1e6]");
  }
  return v;
}

absl::StatusOr<absl::Duration> Duration(absl::string_view flag, absl::string_view text) {
  absl::Duration d;
  double seconds = 0;
  if (absl::SimpleAtod(text, &seconds)) {
    d = absl::Seconds(seconds);
  } else if (!absl::ParseDuration(std::string(text), &d)) {
    return Bad(flag, text, "want a duration like 3s or 500ms");
  }
  if (d <= absl::ZeroDuration()) return Bad(flag, text, "must be positive");
  // "inf", or seconds beyond absl's range: a run without an end (NaN seconds is infinite).
  if (d == absl::InfiniteDuration()) return Bad(flag, text, "must be finite");
  return d;
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
  StressOptions o;
  bool ops_given = false;
  HostOpRates chosen_rates = o.ops;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string flag = args[i];
    std::string value;
    bool has_value = false;
    if (const size_t eq = flag.find('='); flag.rfind("--", 0) == 0 && eq != std::string::npos) {
      value = flag.substr(eq + 1);
      flag = flag.substr(0, eq);
      has_value = true;
    }
    auto boolean = [&](bool& field) -> absl::Status {
      if (has_value) return Bad(flag, value, "takes no value");
      field = true;
      return absl::OkStatus();
    };
    auto next = [&]() -> absl::StatusOr<std::string> {
      if (has_value) return value;
      if (i + 1 >= args.size()) return Bad(flag, "", "missing value");
      return args[++i];
    };
#define MMV_TAKE(var, expr)                 \
  absl::StatusOr<std::string> var##_s = next(); \
  if (!var##_s.ok()) return var##_s.status(); \
  auto var = (expr)(flag, *var##_s);        \
  if (!var.ok()) return var.status();
    if (flag == "--mem") {
      // The parser and rules `run --mem` uses (vmm/memory/guest_mem_size.h).
      MMV_TAKE(v, [](absl::string_view, absl::string_view t) { return ParseGuestMemSize(t); });
      o.mem_bytes = *v;
      o.mem_given = true;
    } else if (flag == "--vcpus") {
      MMV_TAKE(v, [](absl::string_view f, absl::string_view t) { return Count(f, t, false); });
      if (*v > 32) return Bad(flag, *v_s, "at most 32 vCPUs");
      o.vcpus = static_cast<uint32_t>(*v);
    } else if (flag == "--duration") {
      MMV_TAKE(v, Duration);
      o.duration = *v;
    } else if (flag == "--rounds") {
      MMV_TAKE(v, [](absl::string_view f, absl::string_view t) { return Count(f, t, true); });
      o.rounds = *v;
    } else if (flag == "--seed") {
      MMV_TAKE(v, [](absl::string_view f, absl::string_view t) { return Count(f, t, true); });
      o.seed = *v;
    } else if (flag == "--resident") {
      MMV_TAKE(v, Fraction);
      o.resident_target = *v;
    } else if (flag == "--ops") {
      absl::StatusOr<std::string> list = next();
      if (!list.ok()) return list.status();
      HostOpRates r = chosen_rates;
      HostOpRates off{0, 0, 0, 0, 0};
      if (*list != "none") {
        for (absl::string_view name : absl::StrSplit(*list, ',')) {
          if (name == "reclaim") off.reclaim = r.reclaim;
          else if (name == "discard") off.discard = r.discard;
          else if (name == "migrate") off.migrate = r.migrate;
          else if (name == "protect") off.protect = r.protect;
          else if (name == "oom-reap") off.oom_reap = r.oom_reap;
          else return Bad(flag, *list, "operations are reclaim, discard, migrate, protect, oom-reap or none");
        }
      }
      o.ops = off;
      ops_given = true;
    } else if (flag == "--reclaim-rate" || flag == "--discard-rate" ||
               flag == "--migrate-rate" || flag == "--protect-rate" ||
               flag == "--oom-reap-rate") {
      MMV_TAKE(v, Rate);
      double* field = flag == "--reclaim-rate"   ? &o.ops.reclaim
                      : flag == "--discard-rate" ? &o.ops.discard
                      : flag == "--migrate-rate" ? &o.ops.migrate
                      : flag == "--protect-rate" ? &o.ops.protect
                                                 : &o.ops.oom_reap;
      *field = *v;
      double* chosen = flag == "--reclaim-rate"   ? &chosen_rates.reclaim
                       : flag == "--discard-rate" ? &chosen_rates.discard
                       : flag == "--migrate-rate" ? &chosen_rates.migrate
                       : flag == "--protect-rate" ? &chosen_rates.protect
                                                  : &chosen_rates.oom_reap;
      *chosen = *v;
    } else if (flag == "--op-pages") {
      MMV_TAKE(v, [](absl::string_view f, absl::string_view t) { return Count(f, t, false); });
      o.op_pages = *v;
    } else if (flag == "--policy") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (*v == "upstream") o.policy = notifier::Policy::kUpstream;
      else if (*v == "sorted") o.policy = notifier::Policy::kSortedEndLast;
      else if (*v == "legacy") o.policy = notifier::Policy::kLegacyUnpaired;
      else return Bad(flag, *v, "policies are upstream, sorted, legacy");
    } else if (flag == "--eagain") {
      MMV_TAKE(v, Fraction);
      o.eagain_probability = *v;
    } else if (flag == "--delay-prob") {
      MMV_TAKE(v, Fraction);
      o.delay_probability = *v;
    } else if (flag == "--delay") {
      MMV_TAKE(v, Duration);
      o.delay = *v;
    } else if (flag == "--fault-timeout") {
      MMV_TAKE(v, Duration);
      o.fault_timeout = *v;
      o.fault_timeout_given = true;
    } else if (flag == "--dma-path") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (*v == "secondary") o.dma_path = DmaPath::kSecondary;
      else if (*v == "mirror") o.dma_path = DmaPath::kMirror;
      else return Bad(flag, *v, "DMA paths are secondary, mirror");
    } else if (flag == "--no-dma") {
      bool b = false;
      MMUVISOR_RETURN_IF_ERROR(boolean(b));
      o.dma = false;
    } else if (flag == "--no-balloon") {
      bool b = false;
      MMUVISOR_RETURN_IF_ERROR(boolean(b));
      o.balloon = false;
    } else if (flag == "--no-progress") {
      bool b = false;
      MMUVISOR_RETURN_IF_ERROR(boolean(b));
      o.progress = false;
    } else if (flag == "--host-threads") {
      bool b = false;
      MMUVISOR_RETURN_IF_ERROR(boolean(b));
      o.mode = StressMode::kHostThreads;
    } else if (flag == "--mode") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (*v == "auto") o.mode = StressMode::kAuto;
      else if (*v == "kvm") o.mode = StressMode::kKvm;
      else if (*v == "host-threads") o.mode = StressMode::kHostThreads;
      else return Bad(flag, *v, "modes are auto, kvm, host-threads");
    } else if (flag == "--test-skip-dma-retry") {
      MMUVISOR_RETURN_IF_ERROR(boolean(o.skip_dma_retry_check_for_testing));
      o.force_dma_fault_races_for_testing = true;
    } else if (flag == "--json") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.json_path = *v;
    } else if (flag == "--trace") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.trace_path = *v;
    } else if (flag == "--kvm") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.kvm_path = *v;
    } else if (flag == "--guest") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      if (*v != "memstress" && *v != "hostile") {
        return Bad(flag, *v, "stress guests are memstress (the default) and hostile");
      }
      o.guest = *v;
    } else if (flag == "--hostile-log") {
      absl::StatusOr<std::string> v = next();
      if (!v.ok()) return v.status();
      o.hostile_log_path = *v;
    } else if (flag == "--test-hostile-hits-verifier") {
      MMUVISOR_RETURN_IF_ERROR(boolean(o.hostile_hits_verifier_for_testing));
    } else {
      return Bad(flag, value, "unknown flag (see `mmuvisor help stress`)");
    }
#undef MMV_TAKE
  }
  (void)ops_given;
  if (o.guest == "hostile" && o.vcpus < 2) {
    return Bad("--vcpus", absl::StrCat(o.vcpus),
               "--guest hostile needs at least 2 vCPUs (vCPU 0 is hostile, the others verify)");
  }
  if (o.guest == "hostile" && o.mode == StressMode::kHostThreads) {
    return Bad("--guest", o.guest, "runs under KVM only (--mode kvm or auto)");
  }
  if (o.guest != "hostile" && (!o.hostile_log_path.empty() || o.hostile_hits_verifier_for_testing)) {
    return Bad(!o.hostile_log_path.empty() ? "--hostile-log" : "--test-hostile-hits-verifier",
               o.hostile_log_path, "only with --guest hostile");
  }
  if (o.delay_probability > 0 && o.delay > o.duration) {
    return Bad("--delay", absl::FormatDuration(o.delay),
               absl::StrCat("longer than the run (--duration ", absl::FormatDuration(o.duration),
                            "): a delay sleeps inside a fault window, where nothing can cut "
                            "it short"));
  }
  return o;
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
      "--mem %u bytes at --resident %.0f%% keeps %.0f bytes resident: more than "
      "this host's %u bytes of RAM (lower --mem or --resident)",
      guest_bytes, resident * 100, needed, host_ram));
}

std::string StressHelp() {
  return R"(usage: mmuvisor stress [flags]
Runs the memstress guest (every vCPU writes seeded patterns, re-reads and verifies them,
drives DMA copies and gives pages back) while the host reclaims, migrates, protects and
OOM-reaps its memory underneath; ends with PASS/FAIL and a report. Exit code 0 on PASS,
1 on FAIL, 2 for bad flags, 5 when --mode kvm cannot run (no usable /dev/kvm).

  --mem SIZE            guest memory (default 2M under KVM, 32M on host threads)
  --vcpus N             vCPUs (default 2)
  --duration DUR        run time (default 3s); the run ends by DUR + max(1s, DUR/10)
  --rounds N            stop each vCPU after N rounds instead (0 = use --duration)
  --seed N              workload seed (default 1): same seed + flags = same workload
  --resident FRACTION   reclaim runs while resident memory is above this (default 50%)
  --ops LIST            host operations to run: reclaim,discard,migrate,protect,oom-reap
                        or none (default: all)
  --reclaim-rate R      operations per second (defaults 200, discard 10, migrate 100,
  --discard-rate R        protect 50, oom-reap 50); each covers --op-pages pages
  --migrate-rate R
  --protect-rate R
  --oom-reap-rate R
  --op-pages N          pages per host operation (default 16)
  --policy P            notifier dispatch: upstream (default), sorted, legacy
  --eagain P            probability that a non-blockable start fails with EAGAIN
  --delay-prob P        probability of a delay in each fault-path race window
  --delay DUR           that delay (default 200us; at most --duration, and none after it;
                        cut to an eighth of the fault timeout, which delays count against)
  --fault-timeout DUR   a fault still racing after this gives up (default 2s; 30s
                        under KVM, where windows are long and overlap); under the
                        legacy policy cut to max(1s, DUR/10) / 2 so that the run
                        keeps its time bound
  --dma-path PATH       secondary (default: SecondaryMmu) or mirror (interval Mirror)
  --no-dma, --no-balloon  leave those parts of the workload out
  --mode M              where the workload runs: auto (default: kvm if it can run
                        here, else host-threads), kvm, host-threads
  --host-threads        same as --mode host-threads
  --json FILE           write the report as JSON
  --trace FILE          write a Chrome/Perfetto trace (open in ui.perfetto.dev)
  --no-progress         no live progress line
  --kvm PATH            KVM device (default /dev/kvm)
  --guest NAME          memstress (default) or hostile: vCPU 0 runs a seeded program of
                        hostile records (random ucalls, ports, DMA chains, stores, balloon
                        calls, then one fatal record), the other vCPUs run memstress and
                        verify their data; KVM only, at least 2 vCPUs
  --hostile-log FILE    with --guest hostile: write the records its vCPU ran, one a line
  --test-skip-dma-retry TEST ONLY: the DMA path skips its retry checks, and every DMA
                        fault gets an invalidation of its page forced into its race
                        window, so the run FAILs on every seed (a must-fail control)
  --test-hostile-hits-verifier  TEST ONLY, with --guest hostile: its stores go into
                        vCPU 1's work pages, so the run FAILs by vCPU 1's check
)";
}

}  // namespace mmuvisor::vmm::stress
