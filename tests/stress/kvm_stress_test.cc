// KVM-backed stress runs (issue 6's test list): the memstress and dmahostile guests under
// KVM with HostAddressSpace-owned RAM. Each test skips with "needs /dev/kvm: ..." when
// /dev/kvm cannot be opened (tests/nested/run-kvm-tests runs them under nested KVM). The
// same scenarios run without KVM in host_threads_test.cc. Runs are short and the guest
// small: under nested KVM on TCG guest code is slow.
#include <cstdio>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "json_parse.h"
#include "support/read_file.h"
#include "support/status_matchers.h"
#include "vmm/stress/stress_kvm.h"

namespace mmuvisor::vmm::stress {
namespace {

using ::mmuvisor::testing::Json;
using ::mmuvisor::testing::JsonParser;

StressOptions KvmShort() {
  StressOptions o;
  o.mode = StressMode::kKvm;
  o.mem_bytes = kKvmDefaultMemBytes;
  o.mem_given = true;
  o.duration = absl::Seconds(3);
  o.progress = false;
  return o;
}

// Runs under KVM or skips with the reason.
// Only an unopenable /dev/kvm skips ("needs /dev/kvm: ..."); any error of the run itself
// fails the test.
#define RUN_KVM_OR_SKIP(outcome, options)                                            \
  if (absl::Status kvm = ProbeKvm((options).kvm_path); !kvm.ok()) {                  \
    GTEST_SKIP() << kvm.message();                                                   \
  }                                                                                  \
  absl::StatusOr<HostStressOutcome> outcome = RunKvmStress(options, nullptr, false); \
  ASSERT_TRUE(outcome.ok()) << outcome.status()

using ::mmuvisor::testing::ReadFileOrEmpty;

TEST(KvmStressTest, DefaultScenarioPassesWithWorkDone) {
  StressOptions o = KvmShort();
  o.json_path = ::testing::TempDir() + "/kvm_stress_default.json";
  o.trace_path = ::testing::TempDir() + "/kvm_stress_default_trace.json";
  RUN_KVM_OR_SKIP(out, o);
  EXPECT_TRUE(out->result.pass) << FormatReport(out->result);
  const std::string text = ReadFileOrEmpty(o.json_path);
  std::printf("%s\n", text.c_str());  // the numbers, in the nested runner's log
  ASSERT_OK_AND_ASSIGN(Json json, JsonParser::Parse(text));
  EXPECT_EQ(json["verdict"].string, "PASS");
  EXPECT_EQ(json["mode"].string, "kvm");
  for (const char* field : {"invalidations", "faults", "swap_ins", "dma_ops",
                            "guest_pages_verified"}) {
    EXPECT_GT(json[field].number, 0) << field;
  }
  EXPECT_EQ(json["in_progress_final"].number, 0);
  ASSERT_OK_AND_ASSIGN(Json trace, JsonParser::Parse(ReadFileOrEmpty(o.trace_path)));
  int windows = 0;
  for (const Json& e : trace["traceEvents"].array) {
    if (e.Has("cat") && e["cat"].string == "invalidate") ++windows;
  }
  EXPECT_GT(windows, 0) << "the trace shows the DMA MMU's invalidation windows";
}

TEST(KvmStressTest, LegacyPolicyWithEagainFails) {
  StressOptions o = KvmShort();
  o.policy = notifier::Policy::kLegacyUnpaired;
  o.eagain_probability = 1.0;
  // DMA faults behind the stuck count give up quickly instead of after 30 s.
  o.fault_timeout = absl::Milliseconds(500);
  o.fault_timeout_given = true;
  RUN_KVM_OR_SKIP(out, o);
  EXPECT_FALSE(out->result.pass);
  EXPECT_THAT(out->result.failures,
              ::testing::Contains(::testing::HasSubstr("in-progress count(s) not back at zero")));
}

TEST(KvmStressTest, SkippedDmaRetryCheckIsCaught) {
  StressOptions o = KvmShort();
  o.skip_dma_retry_check_for_testing = true;
  o.delay_probability = 1.0;
  // Windows under nested KVM take tens of milliseconds: a fault must sleep long enough
  // between Resolve and install for a window to start *and* discard the page meanwhile.
  o.delay = absl::Milliseconds(20);
  o.op_pages = 64;
  o.duration = absl::Seconds(10);  // more DMA faults, so a stale one gets used
  RUN_KVM_OR_SKIP(out, o);
  EXPECT_FALSE(out->result.pass);
  EXPECT_GT(out->result.guest_mismatches, 0u);
}

TEST(KvmStressTest, HostileDmaGuestGetsErrorsNotACrash) {
  StressOptions o = KvmShort();
  o.guest = "dmahostile";
  o.ops = HostOpRates{0, 0, 0, 0, 0};  // the device alone: every status is deterministic
  o.resident_target = 1.0;
  RUN_KVM_OR_SKIP(out, o);
  EXPECT_TRUE(out->result.workload_ok) << out->result.workload_problem;
  EXPECT_GT(out->result.dma_errors, out->result.dma_errors_unrequested);
}

TEST(KvmStressTest, SameSeedReplaysTheVerifiedPageSequence) {
  StressOptions o = KvmShort();
  o.rounds = 4;
  RUN_KVM_OR_SKIP(a, o);
  RUN_KVM_OR_SKIP(b, o);
  EXPECT_EQ(a->digests, b->digests);
}

}  // namespace
}  // namespace mmuvisor::vmm::stress
