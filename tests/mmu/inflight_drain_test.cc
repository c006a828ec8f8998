// mmu::InflightDrain, the tree's one in-flight drain (mmu/README.md, "The in-flight
// drain"): a non-blockable start refuses while a section is in flight and passes when
// none is; a blockable start waits for the sections that began before it; sections that
// begin while a start is inside step back until it is through.
#include "mmu/inflight_drain.h"

#include <atomic>
#include <thread>

#include "gtest/gtest.h"
#include "support/wait.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;

TEST(InflightDrainTest, TryWaitRefusesWhileASectionIsInFlightAndPassesOtherwise) {
  InflightDrain drain;
  EXPECT_TRUE(drain.TryWait());
  {
    InflightDrain::Section section(drain);
    EXPECT_FALSE(drain.TryWait());
    EXPECT_FALSE(drain.TryWait());
  }
  EXPECT_TRUE(drain.TryWait());
  EXPECT_EQ(drain.refusals(), 2u);
  EXPECT_FALSE(drain.Wait());  // nothing in flight: no wait
  EXPECT_EQ(drain.waits(), 0u);
}

// A start that begins while a section is in flight cannot return before the section ends,
// and the section's write happens before Wait returns (release/acquire through the
// stripe): what the start does next sees it. The section is released only once the start
// has announced itself (waiters() > 0), so the waiting path is the one taken, every time.
TEST(InflightDrainTest, WaitReturnsOnlyAfterTheSectionInFlightEnded) {
  InflightDrain drain;
  std::atomic<bool> entered{false}, starting{false}, release{false}, waited{false};
  uint64_t word = 0;  // plain: ordered by the drain alone
  std::jthread device([&] {  // joined on every path, an early ASSERT included
    InflightDrain::Section section(drain);
    entered.store(true);
    ASSERT_TRUE(WaitUntil([&] { return release.load(); })) << "never released";
    EXPECT_FALSE(waited.load()) << "the start returned while the section was in flight";
    word = 42;
  });
  ASSERT_TRUE(WaitUntil([&] { return entered.load(); })) << "no section within "
                                                         << kTestWaitLimit;
  std::jthread start([&] {
    starting.store(true);
    drain.Wait();
    waited.store(true);
    EXPECT_EQ(word, 42u);
  });
  const bool announced = WaitUntil([&] { return drain.waiters() > 0; });
  release.store(true);  // also on failure: the threads must end
  device.join();
  start.join();
  ASSERT_TRUE(announced) << "the start never announced itself";
  EXPECT_TRUE(waited.load());
  EXPECT_EQ(drain.waits(), 1u) << "the start saw the section in flight and waited";
}

}  // namespace
}  // namespace mmuvisor::mmu
