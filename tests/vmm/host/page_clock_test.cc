#include "vmm/host/page_clock.h"

#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/host/page_range_lock.h"

namespace mmuvisor::vmm {
namespace {

TEST(PageClockTest, YoungPagesGetASecondChanceAndOldOnesAreVictims) {
  PageClock clock(8);
  std::vector<uint8_t> resident = {1, 1, 0, 1, 1, 1, 1, 1};
  std::vector<bool> young = {true, false, false, true, false, true, false, false};
  std::vector<uint64_t> v = clock.PickVictims(3, resident, [&](uint64_t p) {
    const bool y = young[p];
    young[p] = false;  // clearing, as ClearYoung does
    return y;
  });
  EXPECT_THAT(v, ::testing::ElementsAre(1, 4, 6));
  EXPECT_EQ(clock.second_chances(), 3u);  // pages 0, 3 and 5
}

TEST(PageClockTest, AllYoungStillYieldsVictimsOnTheSecondTurnWithoutDuplicates) {
  PageClock clock(4);
  std::vector<uint8_t> resident(4, 1);
  std::vector<bool> young(4, true);
  std::vector<uint64_t> v = clock.PickVictims(10, resident, [&](uint64_t p) {
    const bool y = young[p];
    young[p] = false;
    return y;
  });
  EXPECT_THAT(v, ::testing::ElementsAre(0, 1, 2, 3));
}

TEST(PageClockTest, NonResidentPagesAreNeverPicked) {
  PageClock clock(4);
  std::vector<uint8_t> resident(4, 0);
  EXPECT_TRUE(clock.PickVictims(4, resident, [](uint64_t) { return false; }).empty());
}

TEST(PageRangeLockTest, OverlappingRangesExcludeEachOtherAndLockAllWaitsForAll) {
  PageRangeLock lock;
  lock.Lock(PageRange{0, 4});
  EXPECT_FALSE(lock.TryLock(PageRange{3, 2}));
  EXPECT_TRUE(lock.TryLock(PageRange{4, 2}));
  EXPECT_TRUE(lock.IsLocked(3));
  EXPECT_FALSE(lock.IsLocked(6));
  EXPECT_EQ(lock.held(), 2u);
  lock.Unlock(PageRange{0, 4});
  lock.Unlock(PageRange{4, 2});
  lock.LockAll();
  EXPECT_FALSE(lock.TryLock(PageRange{9, 1}));
  EXPECT_TRUE(lock.IsLocked(9));
  lock.UnlockAll();
  EXPECT_EQ(lock.held(), 0u);
}

}  // namespace
}  // namespace mmuvisor::vmm
