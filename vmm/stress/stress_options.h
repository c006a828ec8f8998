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

namespace mmuvisor::vmm::stress {

enum class DmaPath { kSecondary, kMirror };
// Where the workload runs (stress_command.h).
enum class StressMode { kAuto, kKvm, kHostThreads };
const char* DmaPathName(DmaPath path);
// The --policy spelling: "upstream", "sorted", "legacy".
const char* PolicyFlagName(notifier::Policy policy);

// Host operations per second (0 = off). Each operation covers op_pages pages.
struct HostOpRates {
  double reclaim = 200;
  double discard = 10;
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
  StressMode mode = StressMode::kAuto;
  absl::Duration fault_timeout = absl::Seconds(2);  // a fault stuck this long gives up
  bool fault_timeout_given = false;  // KVM runs default to a longer one (stress_kvm.h)
  std::string json_path;
  std::string trace_path;
  bool progress = true;
  std::string kvm_path = "/dev/kvm";
  std::string guest = "memstress";
};

// Parses `mmuvisor stress` flags (args after "stress"). InvalidArgument naming the flag.
absl::StatusOr<StressOptions> ParseStressFlags(absl::Span<const std::string> args);
std::string StressHelp();

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_OPTIONS_H_
