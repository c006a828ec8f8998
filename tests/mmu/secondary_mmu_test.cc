// SecondaryMmu: the fault path, the notifier callbacks, layout changes, aging, release,
// and the errors each path reports. Race windows are in race_window_test.cc.
#include "mmu/secondary_mmu.h"

#include <memory>

#include "fake_address_space.h"
#include "mmu/fault_hooks.h"
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

constexpr uint64_t kPages = 64;

class SecondaryMmuTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(mmu_->SetLayout({{0, kPages, FakeAddressSpace::kBase}}), IsOk());
    ASSERT_THAT(hub_.Register(*mmu_), IsOk());
  }
  void TearDown() override {
    if (!hub_.torn_down()) {
      EXPECT_THAT(hub_.Unregister(*mmu_), IsOk());
    }
    EXPECT_EQ(mmu_->in_progress(), 0);
    EXPECT_EQ(mmu_->active_invalidations(), 0);
    EXPECT_EQ(mmu_->stats().bugs, 0u);
  }

  notifier::NotifierSubscriptions hub_;
  FakeAddressSpace space_{hub_, kPages};
  std::unique_ptr<SecondaryMmu> mmu_ = std::make_unique<SecondaryMmu>(
      space_, SecondaryMmuOptions{"test-mmu", absl::Milliseconds(200)});
};

TEST_F(SecondaryMmuTest, FaultInstallsTheCurrentBackingAndTranslateHits) {
  {
    auto section = mmu_->ReadSection();
    EXPECT_EQ(mmu_->Translate(3, Access::kRead), 0u);  // miss before the fault
  }
  ASSERT_OK_AND_ASSIGN(ShadowEntry entry, mmu_->Fault(3, Access::kRead));
  EXPECT_EQ(entry.host_address, space_.CurrentHost(3));
  EXPECT_TRUE(entry.writable);
  EXPECT_FALSE(entry.dirty);
  auto section = mmu_->ReadSection();
  EXPECT_EQ(mmu_->Translate(3, Access::kWrite), space_.CurrentHost(3));
  EXPECT_TRUE(mmu_->Lookup(3)->dirty);  // Translate for write marks dirty
  const SecondaryMmuStats stats = mmu_->stats();
  EXPECT_EQ(stats.faults, 1u);
  EXPECT_EQ(stats.installs, 1u);
  EXPECT_EQ(stats.retries, 0u);
}

TEST_F(SecondaryMmuTest, ReadOnlyPageMissesForWriteAndWriteFaultIsDenied) {
  space_.SetWritable(5, false);
  ASSERT_OK_AND_ASSIGN(ShadowEntry entry, mmu_->Fault(5, Access::kRead));
  EXPECT_FALSE(entry.writable);
  auto section = mmu_->ReadSection();
  EXPECT_NE(mmu_->Translate(5, Access::kRead), 0u);
  EXPECT_EQ(mmu_->Translate(5, Access::kWrite), 0u);
  EXPECT_THAT(mmu_->Fault(5, Access::kWrite),
              StatusIs(absl::StatusCode::kPermissionDenied, HasSubstr("gfn=0x5 access=write")));
}

TEST_F(SecondaryMmuTest, FaultOutsideEverySlotIsNotFound) {
  EXPECT_THAT(mmu_->Fault(kPages, Access::kRead),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no memory slot")));
}

TEST_F(SecondaryMmuTest, PrimaryErrorsCarryTheFaultContext) {
  ASSERT_THAT(space_.Unmap(7, 1), IsOk());
  EXPECT_THAT(mmu_->Fault(7, Access::kRead),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("gfn=0x7 access=read")));
}

TEST_F(SecondaryMmuTest, InvalidationZapsTheRangeAndBumpsSeq) {
  for (Gfn gfn = 0; gfn < 8; ++gfn) ASSERT_THAT(mmu_->Fault(gfn, Access::kRead), IsOk());
  const uint64_t seq = mmu_->seq();
  ASSERT_THAT(space_.Unmap(2, 3), IsOk());
  EXPECT_EQ(mmu_->seq(), seq + 1);
  EXPECT_EQ(mmu_->mapped_count(), 5u);
  EXPECT_FALSE(mmu_->Lookup(2).has_value());
  EXPECT_FALSE(mmu_->Lookup(4).has_value());
  EXPECT_TRUE(mmu_->Lookup(5).has_value());
  EXPECT_EQ(mmu_->stats().zapped, 3u);
}

TEST_F(SecondaryMmuTest, InvalidationOutsideEverySlotDoesNotBeginOrEnd) {
  const uint64_t seq = mmu_->seq();
  ASSERT_OK_AND_ASSIGN(notifier::Range range,
                       notifier::Range::Make(0x1000, 0x2000, notifier::Event::kClear));
  ASSERT_THAT(hub_.InvalidateRangeStart(range), IsOk());
  EXPECT_EQ(mmu_->in_progress(), 0);
  EXPECT_EQ(mmu_->active_invalidations(), 1);  // counted even without a slot
  hub_.InvalidateRangeEnd(range);
  EXPECT_EQ(mmu_->seq(), seq);
  EXPECT_EQ(mmu_->active_invalidations(), 0);
}

TEST_F(SecondaryMmuTest, FaultInsideAnOpenWindowTimesOutWithAClearError) {
  ASSERT_THAT(space_.StartChange(9), IsOk());
  EXPECT_EQ(mmu_->in_progress(), 1);
  EXPECT_THAT(mmu_->Fault(9, Access::kRead),
              StatusIs(absl::StatusCode::kDeadlineExceeded,
                       HasSubstr("still racing an invalidation")));
  // A frame outside the open range is not held up.
  EXPECT_THAT(mmu_->Fault(10, Access::kRead), IsOk());
  space_.EndChange(9);
  EXPECT_THAT(mmu_->Fault(9, Access::kRead), IsOk());
  const SecondaryMmuStats stats = mmu_->stats();
  EXPECT_EQ(stats.timeouts, 1u);
  EXPECT_GT(stats.retries, 0u);
  EXPECT_GT(stats.stale_detections, 0u);
}

TEST_F(SecondaryMmuTest, YoungOpsReportAndClearAccessedBits) {
  ASSERT_THAT(mmu_->Fault(1, Access::kRead), IsOk());  // installed accessed
  const uint64_t address = FakeAddressSpace::Address(1);
  EXPECT_TRUE(hub_.TestYoung(address));
  EXPECT_TRUE(hub_.ClearYoung(address, address + kPageSize));
  EXPECT_FALSE(hub_.TestYoung(address));
  EXPECT_FALSE(hub_.ClearFlushYoung(FakeAddressSpace::kBase, FakeAddressSpace::Address(kPages)));
  {
    auto section = mmu_->ReadSection();
    EXPECT_NE(mmu_->Translate(1, Access::kRead), 0u);  // an access makes it young again
  }
  EXPECT_TRUE(hub_.ClearFlushYoung(FakeAddressSpace::kBase, FakeAddressSpace::Address(kPages)));
}

TEST_F(SecondaryMmuTest, SetLayoutRejectsOverlapsAndZapsRemovedSlots) {
  EXPECT_THAT(mmu_->SetLayout({{0, 8, FakeAddressSpace::kBase},
                               {4, 8, FakeAddressSpace::Address(32)}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overlaps")));
  EXPECT_THAT(mmu_->SetLayout({{0, 0, FakeAddressSpace::kBase}}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  ASSERT_THAT(mmu_->Fault(40, Access::kRead), IsOk());
  ASSERT_THAT(mmu_->Fault(2, Access::kRead), IsOk());
  const uint64_t seq = mmu_->seq();
  // Keep only the first 32 frames: frame 40's entry goes, with a seq bump.
  ASSERT_THAT(mmu_->SetLayout({{0, 32, FakeAddressSpace::kBase}}), IsOk());
  EXPECT_FALSE(mmu_->Lookup(40).has_value());
  EXPECT_FALSE(mmu_->Lookup(2).has_value());  // its slot changed shape: zapped as well
  EXPECT_EQ(mmu_->seq(), seq + 1);
  EXPECT_THAT(mmu_->Fault(40, Access::kRead), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
}

// A slot removed by SetLayout must have no entry left by the time an invalidation start
// can see the new layout: that start no longer finds the slot, so it zaps nothing there,
// and the primary may then free the page the old entry still maps.
TEST_F(SecondaryMmuTest, ARemovedSlotIsZappedBeforeAStartCanSeeTheNewLayout) {
  ASSERT_THAT(mmu_->SetLayout({{0, 32, FakeAddressSpace::kBase},
                               {32, 32, FakeAddressSpace::Address(32)}}),
              IsOk());
  ASSERT_THAT(mmu_->Fault(40, Access::kRead), IsOk());
  const uint64_t old_host = space_.CurrentHost(40);
  bool ran = false;
  FaultHooks hooks;
  hooks.after_layout_visible = [&] {
    ran = true;
    // The host changes the page behind frame 40's old slot now: with the new layout the
    // start finds no slot there, so whatever still maps the old page stays mapped.
    EXPECT_THAT(space_.ChangeBacking(40), IsOk());
    EXPECT_FALSE(mmu_->Lookup(40).has_value())
        << "frame 40 still maps host page 0x" << std::hex << mmu_->Lookup(40)->host_address
        << " (old backing 0x" << old_host << ") after its slot was removed";
  };
  mmu_->SetFaultHooksForTesting(std::move(hooks));
  ASSERT_THAT(mmu_->SetLayout({{0, 32, FakeAddressSpace::kBase}}), IsOk());
  EXPECT_TRUE(ran);
  mmu_->SetFaultHooksForTesting(FaultHooks{});
}

TEST_F(SecondaryMmuTest, ReleaseDropsEverythingAndRefusesFaults) {
  for (Gfn gfn = 0; gfn < 4; ++gfn) ASSERT_THAT(mmu_->Fault(gfn, Access::kRead), IsOk());
  const uint64_t seq = mmu_->seq();
  hub_.Release();  // the primary itself still resolves: the MMU must refuse on its own
  EXPECT_EQ(mmu_->mapped_count(), 0u);
  EXPECT_EQ(mmu_->table_count(), 1u);  // empty tables freed (no reader open)
  EXPECT_EQ(mmu_->seq(), seq + 1);     // lockless accessors see the release
  EXPECT_THAT(mmu_->Fault(0, Access::kRead),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("released")));
}

TEST_F(SecondaryMmuTest, TablesUnlinkedUnderAnOpenReadSectionAreFreedLater) {
  ASSERT_THAT(mmu_->Fault(0, Access::kRead), IsOk());
  EXPECT_EQ(mmu_->table_count(), 4u);
  {
    auto section = mmu_->ReadSection();
    ASSERT_THAT(space_.Unmap(0, 1), IsOk());
    EXPECT_EQ(mmu_->table_count(), 1u);  // unlinked...
    EXPECT_EQ(mmu_->retired_table_count(), 3u);  // ...but not freed under the reader
  }
  space_.Remap(0, 1);
  ASSERT_THAT(mmu_->Fault(1, Access::kRead), IsOk());  // the next locked op reclaims
  EXPECT_EQ(mmu_->retired_table_count(), 0u);
  EXPECT_EQ(mmu_->table_count(), 4u);
}

// Translate goes through a per-thread directory cache (shadow_page_table.h). An
// invalidation that unlinks the cached directory must send the next Translate to the new
// one, even while this thread's read section keeps the old one from being freed.
TEST_F(SecondaryMmuTest, TranslateAfterAnInvalidationThatUnlinkedItsDirectory) {
  ASSERT_THAT(mmu_->Fault(2, Access::kRead), IsOk());
  auto section = mmu_->ReadSection();
  const uint64_t old_host = space_.CurrentHost(2);
  EXPECT_EQ(mmu_->Translate(2, Access::kRead), old_host);
  ASSERT_THAT(space_.Unmap(2, 1), IsOk());
  EXPECT_EQ(mmu_->retired_table_count(), 3u);  // held by our section
  EXPECT_EQ(mmu_->Translate(2, Access::kRead), 0u);  // zapped: never returned
  space_.Remap(2, 1);
  ASSERT_OK_AND_ASSIGN(ShadowEntry entry, mmu_->Fault(2, Access::kRead));
  EXPECT_EQ(entry.host_address, space_.CurrentHost(2));
  EXPECT_EQ(mmu_->Translate(2, Access::kRead), entry.host_address);
}

}  // namespace
}  // namespace mmuvisor::mmu
