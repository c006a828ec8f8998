// libFuzzer target `stress_flags`: the words after `mmuvisor stress` (vmm/stress/
// stress_options.h ParseStressFlags), one word per input line (fuzz_words.h).
//
// Checked on every accepted set of flags (abort on violation): what `stress --help` and
// stress_options.h promise the runners: a page-aligned, non-zero --mem; 1..32 vCPUs; a
// positive --duration (finite: the run's time bound is --duration plus slack), --delay and
// --fault-timeout; --resident, --eagain and --delay-prob
// inside [0, 1]; operation rates inside [0, 1e6]; --op-pages > 0; a --delay no longer than
// --duration when delays are on; --guest memstress or hostile, hostile with >= 2 vCPUs and
// not on host threads, the hostile flags only with it. Comparisons are written so that a
// NaN fails them. Every error is one line with a message.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "tests/fuzz/fuzz_words.h"
#include "vmm/stress/stress_options.h"

namespace {

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "stress_flags fuzz: %s\n", what);
  std::abort();
}

bool InUnit(double v) { return v >= 0 && v <= 1; }
bool IsRate(double v) { return v >= 0 && v <= 1e6; }

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  namespace stress = mmuvisor::vmm::stress;
  const std::vector<std::string> words = mmuvisor::fuzz::SplitWords(data, size);
  absl::StatusOr<stress::StressOptions> parsed = stress::ParseStressFlags(words);
  if (!parsed.ok()) {
    if (parsed.status().message().empty()) Fail("error without a message");
    if (parsed.status().message().find('\n') != absl::string_view::npos) {
      Fail("error of more than one line");  // `mmuvisor stress` prints it as one line
    }
    return 0;
  }
  const stress::StressOptions& o = *parsed;
  if (o.mem_bytes == 0 || o.mem_bytes % 4096 != 0) Fail("--mem accepted");
  if (o.vcpus == 0 || o.vcpus > 32) Fail("--vcpus accepted");
  if (!(o.duration > absl::ZeroDuration())) Fail("non-positive --duration accepted");
  if (o.duration == absl::InfiniteDuration()) Fail("endless --duration accepted");
  if (!(o.delay > absl::ZeroDuration())) Fail("non-positive --delay accepted");
  if (!(o.fault_timeout > absl::ZeroDuration())) Fail("non-positive --fault-timeout accepted");
  if (!InUnit(o.resident_target)) Fail("--resident outside [0, 1] accepted");
  if (!InUnit(o.eagain_probability)) Fail("--eagain outside [0, 1] accepted");
  if (!InUnit(o.delay_probability)) Fail("--delay-prob outside [0, 1] accepted");
  if (!IsRate(o.ops.reclaim) || !IsRate(o.ops.migrate) ||
      !IsRate(o.ops.protect) || !IsRate(o.ops.oom_reap)) {
    Fail("operation rate outside [0, 1e6] accepted");
  }
  if (o.op_pages == 0) Fail("--op-pages 0 accepted");
  if (o.op_pages > (uint64_t{1} << 20)) Fail("--op-pages beyond 4 GiB of pages accepted");
  if (!(o.resident_target > 0)) Fail("--resident 0 accepted");
  if (o.eagain_probability > 0 && !(o.ops.oom_reap > 0)) Fail("--eagain without the OOM reaper");
  if (!o.json_path.empty() && o.json_path == o.trace_path) Fail("--json and --trace one file");
  if (o.delay_probability > 0 && o.delay > o.duration) Fail("--delay longer than the run");
  if (o.guest != "memstress" && o.guest != "hostile") Fail("unknown --guest accepted");
  if (o.guest == "hostile" && o.vcpus < 2) Fail("--guest hostile with one vCPU accepted");
  if (o.guest == "hostile" && o.mode == stress::StressMode::kHostThreads) {
    Fail("--guest hostile on host threads accepted");
  }
  if (o.guest != "hostile" &&
      (!o.hostile_log_path.empty() || o.hostile_hits_verifier_for_testing)) {
    Fail("a hostile flag accepted without --guest hostile");
  }
  (void)stress::PolicyFlagName(o.policy);
  (void)stress::DmaPathName(o.dma_path);
  return 0;
}
