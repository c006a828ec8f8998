// InvalidateState: KVM's begin/range_add/end algebra, the retry checks, the error paths
// and the active-invalidation wait of layout changes.
#include "mmu/invalidate_state.h"

#include <atomic>
#include <thread>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "support/wait.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

class InvalidateStateTest : public ::testing::Test {
 protected:
  void Begin(GfnRange range) {
    MutexLock lock(&mu_);
    state_.Begin(mu_);
    ASSERT_THAT(state_.RangeAdd(mu_, range), IsOk());
  }
  absl::Status End() {
    MutexLock lock(&mu_);
    return state_.End(mu_);
  }
  bool RetryGfn(uint64_t snapshot, Gfn gfn) {
    MutexLock lock(&mu_);
    return state_.RetryGfn(mu_, snapshot, gfn);
  }

  SharedMutex mu_;
  InvalidateState state_{&mu_};
};

TEST_F(InvalidateStateTest, EndBumpsSeqAndDropsCount) {
  const uint64_t seq0 = state_.SnapshotSeq();
  Begin({10, 20});
  EXPECT_EQ(state_.in_progress(), 1);
  EXPECT_EQ(state_.seq(), seq0);  // Begin does not move seq.
  ASSERT_THAT(End(), IsOk());
  EXPECT_EQ(state_.in_progress(), 0);
  EXPECT_EQ(state_.seq(), seq0 + 1);
}

TEST_F(InvalidateStateTest, RetryGfnInsideInProgressRangeOnly) {
  const uint64_t snapshot = state_.SnapshotSeq();
  Begin({10, 20});
  EXPECT_TRUE(RetryGfn(snapshot, 10));
  EXPECT_TRUE(RetryGfn(snapshot, 19));
  EXPECT_FALSE(RetryGfn(snapshot, 9));
  EXPECT_FALSE(RetryGfn(snapshot, 20));  // half-open
  ASSERT_THAT(End(), IsOk());
  // After the end every frame of the old snapshot is stale: seq moved.
  EXPECT_TRUE(RetryGfn(snapshot, 9));
  EXPECT_FALSE(RetryGfn(state_.SnapshotSeq(), 9));
}

TEST_F(InvalidateStateTest, ConcurrentRangesAreUnionedUntilTheLastEnd) {
  const uint64_t snapshot = state_.SnapshotSeq();
  Begin({10, 20});
  Begin({100, 110});
  // The union is [10, 110): 50 lies in neither range but is a permitted false positive.
  EXPECT_TRUE(RetryGfn(snapshot, 50));
  ASSERT_THAT(End(), IsOk());
  EXPECT_EQ(state_.in_progress(), 1);
  // The range persists until the last end, even though one window is closed.
  EXPECT_TRUE(RetryGfn(state_.SnapshotSeq(), 15));
  ASSERT_THAT(End(), IsOk());
  EXPECT_FALSE(RetryGfn(state_.SnapshotSeq(), 15));
  // A fresh window starts with a fresh range.
  Begin({200, 201});
  EXPECT_FALSE(RetryGfn(state_.SnapshotSeq(), 15));
  ASSERT_THAT(End(), IsOk());
}

TEST_F(InvalidateStateTest, UnsafeCheckNeverMissesWhatTheLockedCheckSeesOnceSettled) {
  const uint64_t snapshot = state_.SnapshotSeq();
  EXPECT_FALSE(state_.RetryGfnUnsafe(snapshot, 5));
  Begin({0, 10});
  EXPECT_TRUE(state_.RetryGfnUnsafe(snapshot, 5));
  EXPECT_TRUE(state_.RetryUnsafe(snapshot));
  EXPECT_FALSE(state_.AccessRetry(snapshot, 50));
  EXPECT_TRUE(state_.AccessRetry(snapshot, 5));
  ASSERT_THAT(End(), IsOk());
  EXPECT_TRUE(state_.RetryGfnUnsafe(snapshot, 50));  // seq moved
  EXPECT_TRUE(state_.RetryUnsafe(snapshot));
}

TEST_F(InvalidateStateTest, EndWithoutBeginIsAnErrorAndCountStaysAtZero) {
  EXPECT_THAT(End(), StatusIs(absl::StatusCode::kInternal, HasSubstr("end without begin")));
  EXPECT_EQ(state_.in_progress(), 0);
  EXPECT_EQ(state_.bugs(), 1u);
}

TEST_F(InvalidateStateTest, RangeAddWithoutBeginIsAnError) {
  MutexLock lock(&mu_);
  EXPECT_THAT(state_.RangeAdd(mu_, {1, 2}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("missing Begin")));
  state_.Begin(mu_);
  EXPECT_THAT(state_.RangeAdd(mu_, {5, 5}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("empty range")));
  // A window with no range: every frame retries (KVM WARNs and retries), End reports it.
  EXPECT_TRUE(state_.RetryGfn(mu_, state_.SnapshotSeq(), 12345));
  EXPECT_THAT(state_.End(mu_),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("added no range")));
  EXPECT_EQ(state_.in_progress(), 0);
}

TEST_F(InvalidateStateTest, ActiveInvalidationEndWithoutBeginIsAnError) {
  EXPECT_THAT(state_.ActiveInvalidationEnd(),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("end without start")));
  EXPECT_EQ(state_.active_invalidations(), 0);
}

// A layout change must wait for the open start/end window to close, then run before any
// new start can begin.
TEST_F(InvalidateStateTest, LayoutUpdateWaitsForActiveInvalidations) {
  state_.ActiveInvalidationBegin();
  std::atomic<bool> published{false};
  std::thread updater([&] {
    EXPECT_TRUE(state_.UpdateLayout([&] { published.store(true); }, absl::Seconds(60)));
  });
  // Until the updater has found the window open (or published: the bug). It cannot publish
  // while the window is open, however long it has been waiting.
  EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
      [&] { return state_.layout_waits() > 0 || published.load(); }))
      << "the updater neither waited nor published";
  EXPECT_FALSE(published.load());
  ASSERT_THAT(state_.ActiveInvalidationEnd(), IsOk());
  updater.join();
  EXPECT_TRUE(published.load());
  EXPECT_EQ(state_.active_invalidations(), 0);
}

// A start whose end never comes (the legacy policy's leak): KVM's memslot update would wait
// for ever; this one gives up after its timeout and publishes nothing.
TEST_F(InvalidateStateTest, LayoutUpdateGivesUpOnAnInvalidationThatNeverEnds) {
  state_.ActiveInvalidationBegin();
  bool published = false;
  EXPECT_FALSE(state_.UpdateLayout([&] { published = true; }, absl::Milliseconds(5)));
  EXPECT_FALSE(published);
  ASSERT_THAT(state_.ActiveInvalidationEnd(), IsOk());
  EXPECT_TRUE(state_.UpdateLayout([&] { published = true; }, absl::Milliseconds(5)));
  EXPECT_TRUE(published);
}

}  // namespace
}  // namespace mmuvisor::mmu
