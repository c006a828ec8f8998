// The scenario of the mailing-list thread the project grew from (the top README's
// "Design"), as a table:
// A and C are KVM-like (start raises in_progress, end lowers it), B's start fails when the
// range is non-blockable and B has no end. Registered A, B, C, so the walk is C, B, A.
// OOM-reaper-style non-blockable invalidations, the caller obeying the contract (end only
// after a successful start), then a blockable one. Upstream and SortedEndLast must leave
// every count at zero; LegacyUnpaired must leave A and C stuck above zero.
#include <ostream>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "notifier/invalidation_guard.h"
#include "support/status_matchers.h"
#include "test_subscriptions.h"

namespace mmuvisor::notifier {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::_;
using testing::FailingSubscription;
using testing::KvmLikeSubscription;
using testing::MakeRange;

struct SeedCase {
  Policy policy;
  int64_t stuck_per_nonblock;  // in_progress left on A and C per non-blockable attempt
  int b_starts_per_nonblock;   // how often B's start is reached
};
// A stable printout (gtest's default prints the bytes, padding included, into the name).
void PrintTo(const SeedCase& c, std::ostream* os) {
  *os << PolicyName(c.policy) << " stuck=" << c.stuck_per_nonblock
      << " b_starts=" << c.b_starts_per_nonblock;
}

class SeedScenarioTest : public ::testing::TestWithParam<SeedCase> {};

constexpr int kAttempts = 5;

TEST_P(SeedScenarioTest, NonBlockingInvalidationKeepsKvmCountsPaired) {
  const SeedCase& c = GetParam();
  NotifierSubscriptions hub({.policy = c.policy});
  KvmLikeSubscription a("A");
  FailingSubscription b("B");
  KvmLikeSubscription cc("C");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  ASSERT_THAT(hub.Register(cc), IsOk());

  for (int i = 0; i < kAttempts; ++i) {
    const Range range = MakeRange(0x1000ull * i, 0x1000ull * (i + 1), /*blockable=*/false,
                                  Event::kClear);
    absl::StatusOr<InvalidationGuard> guard = InvalidationGuard::Start(hub, range);
    // B fails under every policy; a failed start must not be ended by the caller.
    EXPECT_THAT(guard.status(), StatusIs(absl::StatusCode::kUnavailable, _));
  }
  // A blockable invalidation afterwards always succeeds and is always paired.
  {
    ASSERT_OK_AND_ASSIGN(InvalidationGuard guard,
                         InvalidationGuard::Start(hub, MakeRange(0, 0x10000)));
  }

  EXPECT_EQ(a.in_progress(), c.stuck_per_nonblock * kAttempts) << PolicyName(c.policy);
  EXPECT_EQ(cc.in_progress(), c.stuck_per_nonblock * kAttempts) << PolicyName(c.policy);
  EXPECT_EQ(b.starts(), c.b_starts_per_nonblock * kAttempts + 1);
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.open, 2 * c.stuck_per_nonblock * kAttempts) << s.ToString();
  EXPECT_EQ(s.violations, 0u) << s.ToString();
  if (c.policy == Policy::kLegacyUnpaired) {
    // The bug, reproduced: KVM would refuse every fault from now on.
    EXPECT_GT(a.in_progress(), 0);
    EXPECT_GT(s.open, 0);
  } else {
    EXPECT_EQ(a.in_progress(), 0);
    EXPECT_EQ(s.open, 0);
  }
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
  ASSERT_THAT(hub.Unregister(cc), IsOk());
}

INSTANTIATE_TEST_SUITE_P(
    Policies, SeedScenarioTest,
    ::testing::Values(
        // Every start, then both ends, then EAGAIN.
        SeedCase{Policy::kUpstream, /*stuck=*/0, /*b_starts=*/1},
        // Two end-needers: non-blocking refused before any start.
        SeedCase{Policy::kSortedEndLast, /*stuck=*/0, /*b_starts=*/0},
        // Every start, no end: A and C stay raised.
        SeedCase{Policy::kLegacyUnpaired, /*stuck=*/1, /*b_starts=*/1}),
    [](const ::testing::TestParamInfo<SeedCase>& param_info) {
      return std::string(PolicyName(param_info.param.policy)).substr(1);
    });

}  // namespace
}  // namespace mmuvisor::notifier
