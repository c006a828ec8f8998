// Mirror: faulting, device access, invalidation (blockable and try-lock), owner-tagged
// migrations, attach/detach errors.
#include "mmu/mirror.h"

#include <thread>

#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kPages = 32;
const int kOwnerTag = 0;

class MirrorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(mirror_.Attach(hub_, FakeAddressSpace::kBase, 16 * kPageSize), IsOk());
  }
  void TearDown() override {
    EXPECT_THAT(mirror_.Detach(), IsOk());
    EXPECT_EQ(mirror_.mapped_count(), 0u);
    EXPECT_EQ(hub_.active_invalidate_ranges(), 0u);
  }
  uint64_t ReadWord(uint64_t page) {
    uint64_t word = 0;
    EXPECT_THAT(mirror_.AccessPage(FakeAddressSpace::Address(page), Access::kRead,
                                   [&](uint64_t host) {
                                     word = *reinterpret_cast<const uint64_t*>(host);
                                   }),
                IsOk());
    return word;
  }

  notifier::NotifierSubscriptions hub_;
  FakeAddressSpace space_{hub_, kPages};
  Mirror mirror_{space_, MirrorOptions{"test-mirror", absl::Milliseconds(200), &kOwnerTag}};
};

TEST_F(MirrorTest, AccessFaultsInOnceThenHits) {
  EXPECT_EQ(ReadWord(3), FakeAddressSpace::Word(3, 1));
  EXPECT_EQ(ReadWord(3), FakeAddressSpace::Word(3, 1));
  const MirrorStats stats = mirror_.stats();
  EXPECT_EQ(stats.faults, 1u);  // like hmm-tests anon_read: exactly one fault
  EXPECT_EQ(stats.accesses, 2u);
}

TEST_F(MirrorTest, InvalidationDropsTheEntryAndTheNextAccessSeesTheNewPage) {
  EXPECT_EQ(ReadWord(4), FakeAddressSpace::Word(4, 1));
  ASSERT_THAT(space_.ChangeBacking(4), IsOk());
  EXPECT_FALSE(mirror_.Lookup(FakeAddressSpace::Address(4)).has_value());
  EXPECT_EQ(ReadWord(4), FakeAddressSpace::Word(4, 2));
  EXPECT_EQ(mirror_.stats().invalidations, 1u);
}

TEST_F(MirrorTest, OwnMigrationsAreIgnoredOthersAreNot) {
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(2), Access::kRead), IsOk());
  ASSERT_OK_AND_ASSIGN(notifier::Range ours,
                       notifier::Range::Make(FakeAddressSpace::Address(2),
                                             FakeAddressSpace::Address(3),
                                             notifier::Event::kMigrate, true, &kOwnerTag));
  ASSERT_THAT(hub_.InvalidateRangeStart(ours), IsOk());
  hub_.InvalidateRangeEnd(ours);
  EXPECT_TRUE(mirror_.Lookup(FakeAddressSpace::Address(2)).has_value());
  ASSERT_THAT(space_.ChangeBacking(2), IsOk());  // owner null: not ours
  EXPECT_FALSE(mirror_.Lookup(FakeAddressSpace::Address(2)).has_value());
}

// dmirror_interval_invalidate: a non-blockable invalidation must not wait for the user
// lock. While an access holds it, the start fails with EAGAIN and nothing changes.
TEST_F(MirrorTest, NonBlockableInvalidationRefusesWhenTheLockIsHeld) {
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(6), Access::kRead), IsOk());
  const uint64_t host = space_.CurrentHost(6);
  absl::Status nonblocking;
  ASSERT_THAT(mirror_.AccessPage(FakeAddressSpace::Address(6), Access::kRead,
                                 [&](uint64_t) {
                                   std::thread t([&] {
                                     nonblocking = space_.ChangeBacking(6, /*blockable=*/false);
                                   });
                                   t.join();  // it must come back without waiting for us
                                 }),
              IsOk());
  EXPECT_THAT(nonblocking, StatusIs(absl::StatusCode::kUnavailable, ::testing::_));
  EXPECT_EQ(space_.CurrentHost(6), host);  // the caller left the range alone
  EXPECT_EQ(mirror_.Lookup(FakeAddressSpace::Address(6))->host_address, host);
  EXPECT_EQ(mirror_.stats().nonblock_refusals, 1u);
  // Uncontended, the same non-blockable invalidation goes through.
  EXPECT_THAT(space_.ChangeBacking(6, /*blockable=*/false), IsOk());
  EXPECT_FALSE(mirror_.Lookup(FakeAddressSpace::Address(6)).has_value());
}

TEST_F(MirrorTest, ErrorsNameTheirCause) {
  EXPECT_THAT(mirror_.Fault(FakeAddressSpace::Address(20), Access::kRead),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("outside the mirrored")));
  space_.SetWritable(1, false);
  EXPECT_THAT(mirror_.Fault(FakeAddressSpace::Address(1), Access::kWrite),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("read-only")));
  ASSERT_THAT(space_.Unmap(8, 1), IsOk());
  EXPECT_THAT(mirror_.AccessPage(FakeAddressSpace::Address(8), Access::kRead, [](uint64_t) {}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("nothing mapped")));
  EXPECT_THAT(mirror_.Attach(hub_, FakeAddressSpace::kBase, kPageSize),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already attached")));
  Mirror other(space_);
  EXPECT_THAT(other.Attach(hub_, FakeAddressSpace::kBase + 1, kPageSize),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not page aligned")));
}

TEST_F(MirrorTest, FaultTimesOutWhileItsPageKeepsChanging) {
  FaultHooks hooks;
  // Every attempt is invalidated right after it resolved: the fault can never install.
  hooks.after_resolve = [&](Gfn, int) { ASSERT_THAT(space_.ChangeBacking(9), IsOk()); };
  mirror_.SetFaultHooksForTesting(std::move(hooks));
  EXPECT_THAT(mirror_.Fault(FakeAddressSpace::Address(9), Access::kRead),
              StatusIs(absl::StatusCode::kDeadlineExceeded, HasSubstr("still racing")));
  EXPECT_EQ(mirror_.stats().timeouts, 1u);
  EXPECT_FALSE(mirror_.Lookup(FakeAddressSpace::Address(9)).has_value());
}

// Teardown invalidates [0, UINT64_MAX): the page arithmetic must not overflow.
TEST_F(MirrorTest, TeardownInvalidationDropsEveryEntry) {
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(0), Access::kRead), IsOk());
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(15), Access::kRead), IsOk());
  hub_.Release();
  EXPECT_EQ(mirror_.mapped_count(), 0u);
  EXPECT_EQ(mirror_.stats().zapped, 2u);
}

}  // namespace
}  // namespace mmuvisor::mmu
