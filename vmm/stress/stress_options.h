// StressOptions: everything a stress run is configured with (the `mmuvisor stress` flags,
// README "Stress scenario"), shared by the KVM runner and the host-thread runner.
// Plain value type.
#ifndef MMUVISOR_VMM_STRESS_STRESS_OPTIONS_H_
#define MMUVISOR_VMM_STRESS_STRESS_OPTIONS_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "notifier/hub.h"
#include "vmm/host/dirty_tracking.h"

namespace mmuvisor::vmm::stress {

enum class DmaPath { kSecondary, kMirror };
// Where the workload runs (stress_command.h).
enum class StressMode { kAuto, kKvm, kHostThreads };
const char* DmaPathName(DmaPath path);
// The --policy spelling: "upstream", "sorted", "legacy".
const char* PolicyFlagName(notifier::Policy policy);

// Host operations per second (0 = off). Each operation covers op_pages pages. Discards
// are not among them: they come from the guest's balloon calls (StressOptions::balloon).
struct HostOpRates {
  double reclaim = 200;
  double migrate = 100;
  double protect = 50;
  double oom_reap = 50;
};

struct StressOptions {
  uint64_t mem_bytes = 32ull << 20;  // host-thread runs; KVM runs use it only if mem_given
  bool mem_given = false;            // --mem was on the command line
  uint32_t vcpus = 2;
  absl::Duration duration = absl::Seconds(3);
  uint64_t rounds = 0;  // > 0: stop after this many rounds per vCPU (replay tests)
  uint64_t seed = 1;
  double resident_target = 0.5;  // reclaim keeps resident memory near this fraction
  HostOpRates ops;
  uint64_t op_pages = 16;
  notifier::Policy policy = notifier::Policy::kUpstream;
  double eagain_probability = 0;   // per non-blockable start
  double delay_probability = 0;    // per fault-path window visit
  absl::Duration delay = absl::Microseconds(200);
  DmaPath dma_path = DmaPath::kSecondary;
  bool dma = true;
  bool balloon = true;
  bool skip_dma_retry_check_for_testing = false;  // --test-skip-dma-retry (must FAIL)
  // Set by --test-skip-dma-retry too (no flag of its own): each DMA fault's first attempt
  // gets an invalidation of its own page (a reclaim) forced into its race window, after
  // the page was resolved and before the translation is installed. With the checks on,
  // the fault sees it and retries (the run PASSes); with them off it installs a translation
  // to a page the host just freed, every time, so the control fails on every seed.
  bool force_dma_fault_races_for_testing = false;
  StressMode mode = StressMode::kAuto;
  absl::Duration fault_timeout = absl::Seconds(2);  // a fault stuck this long gives up
  bool fault_timeout_given = false;  // KVM runs default to a longer one (stress_kvm.h)
  std::string json_path;
  std::string trace_path;
  bool progress = true;
  std::string kvm_path = "/dev/kvm";
  // --dirty (KVM runs): the dirty log reclaim windows harvest. Host-thread runs have none.
  DirtyLogSource dirty_log = DirtyLogSource::kBitmap;
  // --slots (KVM runs): guest RAM as this many memslots.
  uint32_t ram_slots = 1;
  // --aliases (KVM runs): K more memslots over all of guest RAM (MachineConfig::ram_aliases);
  // the guest writes through one view of a page and verifies through another.
  uint32_t aliases = 0;
  // --memslot-churn (KVM runs): spare-slot changes per second (add, move, delete, in
  // turn) while the guest runs; 0 = none (memslot_churn.h).
  double memslot_churn = 0;
  // The guest: memstress on every vCPU, or hostile (vCPU 0 runs seeded hostile records,
  // the others memstress; KVM only, >= 2 vCPUs). The KVM tests also run dmahostile.
  std::string guest = "memstress";
  std::string hostile_log_path;  // --hostile-log: the hostile vCPU's records, one a line
  // --test-hostile-hits-verifier: the hostile vCPU's stores go into vCPU 1's work pages
  // (the must-fail control of the hostile guest: the verdict must FAIL by the cpu check).
  bool hostile_hits_verifier_for_testing = false;
};

// Parses `mmuvisor stress` flags (args after "stress"). InvalidArgument naming the flag;
// also for a --delay longer than --duration (a delay sleeps inside a fault window, where
// nothing can cut it short, so it could not fit the run's time bound).
absl::StatusOr<StressOptions> ParseStressFlags(absl::Span<const std::string> args);

// The run-time bound (README "Bounded run time"): a --duration D run ends by
// D + RunSlack(D), where RunSlack(D) = max(1 s, D / 10). Half of it is the most any part of
// the run may still take once D is over (a fault's retry timeout, the guest's way to a
// stop); the other half is for collecting and tearing down.
absl::Duration RunSlack(absl::Duration duration);
// The fault retry timeout a run gives its MMUs: `wanted` (the --fault-timeout or the
// mode's default), cut to RunSlack / 2 when `windows_leak` (the legacy policy, whose
// failed starts leave windows open for good), so a fault stuck behind one at the deadline
// still gives up in time. With the other policies every window closes, and the runners
// stop opening new ones at the deadline, so a fault in flight then ends on its own; a
// cut there would only make faults that race a dense storm time out (seen with delays).
// `cut` (may be null) is set when it was cut.
absl::Duration BoundedFaultTimeout(absl::Duration wanted, absl::Duration duration,
                                   bool windows_leak, bool* cut);
// The --delay a run injects: `wanted`, cut to fault_timeout / 8. Each fault attempt has
// three windows to delay in, and the retry timeout counts the delays as time spent
// racing: a delay near the timeout would make a fault that raced once time out, a failure
// the run made up itself. `cut` (may be null) is set when it was cut.
absl::Duration BoundedDelay(absl::Duration wanted, absl::Duration fault_timeout, bool* cut);
// InvalidArgument when `guest_bytes` of guest memory, kept resident at `resident`
// (fraction), is more than `host_ram` bytes (0 = unknown: accepted). The same rule as
// `mmuvisor run`'s, which refuses more than the host's RAM; both ask
// vmm::HostPhysicalMemoryBytes().
absl::Status CheckGuestFitsHost(uint64_t guest_bytes, double resident, uint64_t host_ram);
// The fraction of guest memory a run keeps resident at most: --resident while reclaim runs,
// all of it when reclaim is off (--ops without reclaim, --reclaim-rate 0), since nothing
// else holds the guest to --resident.
double ResidentBound(const StressOptions& options);
std::string StressHelp();

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_OPTIONS_H_
