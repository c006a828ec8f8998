// Smoke test of the real-guest demand-paging benchmark's core (RunGuestTouch,
// tests/bench/paging/guest_touch_run.h), so bench_guest_demand_paging cannot rot unnoticed:
// one small run each way under KVM, with the guest as the oracle (it verifies every page)
// and the page server's counters as the proof that every touched page was swapped in.
// Skips visibly without /dev/kvm (run it with tests/nested/run-kvm-tests).
#include "bench/paging/guest_touch_run.h"

#include <algorithm>
#include <string>

#include "absl/time/time.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "vmm/paging/page_server.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kPagesPerVcpu = 64;

class GuestTouchDemandPagedTest : public ::testing::TestWithParam<uint32_t> {};

TEST_P(GuestTouchDemandPagedTest, EveryTouchedPageIsSwappedInAndVerifiedByTheGuest) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  const uint32_t vcpus = GetParam();
  const uint64_t pages = kPagesPerVcpu * vcpus;
  ASSERT_OK_AND_ASSIGN(GuestTouchResult r,
                       RunGuestTouch({.vcpus = vcpus,
                                      .pages_per_vcpu = kPagesPerVcpu,
                                      .memory = TouchMemory::kDemandPaged}));
  EXPECT_EQ(r.reclaimed, pages);
  EXPECT_EQ(r.pages_touched, pages);
  EXPECT_EQ(r.swap_ins, pages) << "every touched page must come back from the store once";
  EXPECT_EQ(r.pages_verified, pages);
  EXPECT_EQ(r.pages_bad, 0u) << "first bad page at gpa 0x" << std::hex << r.first_bad_gpa;
  // Fault-around (default) brings 16 pages with a fault, and twice the previous cluster
  // with each fault that continues a stream, up to 256: at least that many faults.
  uint64_t min_faults = 0;
  for (uint64_t brought = 0, cluster = 1 + kDefaultFaultAroundPages; brought < pages;
       cluster = std::min<uint64_t>(2 * cluster, 1 + kDefaultFaultAroundMaxPages)) {
    brought += cluster;
    ++min_faults;
  }
  EXPECT_GE(r.fault_latency.count, min_faults);
  EXPECT_LE(r.server_faults, pages + vcpus);
  EXPECT_GT(r.touch_time, absl::ZeroDuration());
}

INSTANTIATE_TEST_SUITE_P(Vcpus, GuestTouchDemandPagedTest, ::testing::Values(1u, 2u),
                         [](const ::testing::TestParamInfo<uint32_t>& param) {
                           return std::to_string(param.param) + "vcpu";
                         });

TEST(GuestTouchTest, NeverTouchedBaselineRunsWithoutThePageServer) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ASSERT_OK_AND_ASSIGN(GuestTouchResult r,
                       RunGuestTouch({.vcpus = 2,
                                      .pages_per_vcpu = kPagesPerVcpu,
                                      .memory = TouchMemory::kNeverTouched}));
  EXPECT_EQ(r.reclaimed, 0u);
  EXPECT_EQ(r.pages_touched, 2 * kPagesPerVcpu);
  EXPECT_EQ(r.server_faults, 0u) << "the page server was shut down: no userfaultfd";
  EXPECT_EQ(r.swap_ins, 0u);
  EXPECT_EQ(r.pages_verified, 2 * kPagesPerVcpu);
  EXPECT_EQ(r.pages_bad, 0u) << "first bad page at gpa 0x" << std::hex << r.first_bad_gpa;
  EXPECT_EQ(r.fault_latency.count, 0u);
}

// Bad input is rejected before /dev/kvm is opened, so this one runs everywhere.
TEST(GuestTouchTest, ZeroPagesPerVcpuIsRejected) {
  EXPECT_THAT(RunGuestTouch({.pages_per_vcpu = 0}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("pages_per_vcpu")));
}

}  // namespace
}  // namespace mmuvisor::vmm
