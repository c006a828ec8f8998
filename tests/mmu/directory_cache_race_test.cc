// Directory-cache race: Translate reads through a per-thread cache of the last directory
// (level-1 table) it walked to (mmu/shadow_page_table.h). Here readers translate and verify
// pages spread over 8 directories while an invalidator unmaps whole directories (so they
// are unlinked, retired and freed, and the table's token moves), remaps them and migrates
// pages. Every read must return the intact current contents or be discarded by
// AccessRetry; one that kept a freed directory is a use-after-free (ASan) or a race (TSan).
//
// What every schedule guarantees (and all this test asserts): no read returns stale data,
// none fails unexpectedly, and no miss goes unexplained. A miss is explained when some
// invalidation overlapped it: after a Fault installed the entry, a Translate that misses
// while seq has not moved since before that Fault and no invalidation is in progress saw
// a table that no longer holds the entry (a cache kept on an unlinked directory): `lost`.
// How many attempts a read needs is NOT bounded by the schedule: an invalidator preempted
// between its start and its zap (holding the MMU lock) makes every AccessRetry say retry
// until it runs again, so a read gives up only after a deadline far beyond any preemption.
// How many reads the race phase verifies is up to the scheduler too (a loaded machine may
// run the invalidator to the end before a reader runs at all), so that is not asserted.
// Instead each reader, once the invalidator is done and with its per-thread cache left
// wherever the race phase put it (possibly on a directory unlinked and freed since), reads
// every page once: with nothing invalidating, each of those reads must verify.
#include <atomic>
#include <cstdio>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;

constexpr uint64_t kDirectories = 8;
constexpr uint64_t kPagesPerDirectory = 4;
constexpr uint64_t kPages = kDirectories * kPagesPerDirectory;
constexpr unsigned kDirectoryShift = 18;  // a directory covers 2^18 frames
constexpr int kInvalidations = 600;
// A hang guard, not a schedule assumption: far beyond any preemption of the invalidator.
constexpr absl::Duration kReadDeadline = absl::Seconds(20);

struct Tally {
  std::atomic<uint64_t> verified{0};
  std::atomic<uint64_t> failed{0};      // kNotFound: the directory's pages were unmapped
  std::atomic<uint64_t> discarded{0};   // AccessRetry said the copy raced: redone
  std::atomic<uint64_t> stale{0};       // MUST stay 0
  std::atomic<uint64_t> unexpected{0};  // other errors: MUST stay 0
  std::atomic<uint64_t> lost{0};        // MUST stay 0: a miss no invalidation explains
  std::atomic<uint64_t> gave_up{0};     // MUST stay 0: still no answer at kReadDeadline
};

constexpr int kReaders = 2;


Gfn GfnOf(uint64_t page) {
  return ((page / kPagesPerDirectory) << kDirectoryShift) + page % kPagesPerDirectory;
}

void Read(SecondaryMmu& mmu, uint64_t page, Tally& tally) {
  uint64_t words[FakeAddressSpace::kWords];
  const Gfn gfn = GfnOf(page);
  const absl::Time deadline = absl::Now() + kReadDeadline;
  std::optional<uint64_t> seq_before_fault;  // set once a Fault installed the entry
  for (uint64_t attempt = 0;; ++attempt) {
    if (attempt > 0 && absl::Now() > deadline) {
      tally.gave_up.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    {
      auto section = mmu.ReadSection();
      const uint64_t seq = mmu.SnapshotSeq();
      const uint64_t host = mmu.Translate(gfn, Access::kRead);
      if (host != 0) {
        FakeAddressSpace::ReadPage(host, words);
        if (mmu.AccessRetry(seq, gfn)) {
          tally.discarded.fetch_add(1, std::memory_order_relaxed);
          // The invalidator may be preempted inside its window: let it run.
          std::this_thread::yield();
          continue;
        }
        uint64_t version = 0;
        const bool intact = FakeAddressSpace::Intact(words, page, &version);
        (intact ? tally.verified : tally.stale).fetch_add(1, std::memory_order_relaxed);
        return;
      }
    }
    // A miss. in_progress first (acquire): seeing the count an End lowered implies seeing
    // that End's seq. A zap that made this miss happened inside a window that is either
    // still open (in_progress > 0) or ended (seq moved past seq_before_fault).
    if (seq_before_fault.has_value() && mmu.in_progress() == 0 &&
        mmu.SnapshotSeq() == *seq_before_fault) {
      tally.lost.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    const uint64_t before = mmu.SnapshotSeq();
    absl::StatusOr<ShadowEntry> faulted = mmu.Fault(gfn, Access::kRead);
    if (!faulted.ok()) {
      (absl::IsNotFound(faulted.status()) ? tally.failed : tally.unexpected)
          .fetch_add(1, std::memory_order_relaxed);
      return;
    }
    seq_before_fault = before;
  }
}

TEST(DirectoryCacheRaceTest, TranslateFollowsDirectoriesThatAreUnlinkedAndFreed) {
  notifier::NotifierSubscriptions hub;
  FakeAddressSpace space(hub, kPages);
  SecondaryMmu mmu(space, SecondaryMmuOptions{"directory-mmu", absl::Seconds(20)});
  std::vector<MemorySlot> slots;
  for (uint64_t d = 0; d < kDirectories; ++d) {
    slots.push_back({d << kDirectoryShift, kPagesPerDirectory,
                     FakeAddressSpace::Address(d * kPagesPerDirectory)});
  }
  ASSERT_THAT(mmu.SetLayout(slots), IsOk());
  ASSERT_THAT(hub.Register(mmu), IsOk());

  Tally tally;
  Tally after;  // the readers' quiescent pass: every read must verify
  std::atomic<bool> stop{false};
  std::atomic<int> started{0};
  auto reader = [&](int seed) {
    std::mt19937 rng(seed);
    started.fetch_add(1, std::memory_order_relaxed);
    while (!stop.load(std::memory_order_acquire)) Read(mmu, rng() % kPages, tally);
    // Quiescent (the acquire above pairs with the release store below, after the last
    // invalidation): this thread's directory cache is whatever the race left in it.
    for (uint64_t page = 0; page < kPages; ++page) Read(mmu, page, after);
  };
  std::vector<std::thread> threads;
  for (int r = 0; r < kReaders; ++r) threads.emplace_back(reader, r + 1);
  // Let the readers start before invalidating (bounded; not a guarantee of overlap, which
  // no schedule owes us, just a better chance of it).
  for (int i = 0; i < 100000 && started.load(std::memory_order_relaxed) < kReaders; ++i) {
    std::this_thread::yield();
  }

  std::mt19937 rng(42);
  for (int i = 0; i < kInvalidations; ++i) {
    const uint64_t directory = rng() % kDirectories;
    // EXPECT, not ASSERT: the readers must be stopped and joined on every path.
    if (i % 2 == 0) {
      // Every page of one directory: its leaf and the directory itself are unlinked.
      EXPECT_THAT(space.Unmap(directory * kPagesPerDirectory, kPagesPerDirectory), IsOk());
      std::this_thread::yield();
      space.Remap(directory * kPagesPerDirectory, kPagesPerDirectory);
    } else {
      EXPECT_THAT(space.ChangeBacking(directory * kPagesPerDirectory + rng() % 4), IsOk());
    }
  }
  stop.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(after.verified.load(), kReaders * kPages);
  EXPECT_EQ(after.failed.load(), 0u);
  EXPECT_EQ(after.discarded.load(), 0u);
  EXPECT_EQ(after.stale.load(), 0u);
  EXPECT_EQ(after.unexpected.load(), 0u);
  EXPECT_EQ(after.lost.load(), 0u);
  EXPECT_EQ(after.gave_up.load(), 0u);
  EXPECT_EQ(tally.stale.load(), 0u);
  EXPECT_EQ(tally.unexpected.load(), 0u);
  EXPECT_EQ(tally.lost.load(), 0u);
  EXPECT_EQ(tally.gave_up.load(), 0u);
  // Quiescent now: each directory read once, then all unmapped: every table but the root
  // is unlinked and, with no read section open, freed.
  for (uint64_t page = 0; page < kPages; page += kPagesPerDirectory) Read(mmu, page, tally);
  // The root, one level-2 table, and a directory and a leaf per directory.
  EXPECT_EQ(mmu.table_count(), 2u + 2u * kDirectories);
  ASSERT_THAT(space.Unmap(0, kPages), IsOk());
  EXPECT_EQ(mmu.table_count(), 1u);
  EXPECT_EQ(mmu.retired_table_count(), 0u);
  for (uint64_t page = 0; page < kPages; page += kPagesPerDirectory) {
    auto section = mmu.ReadSection();
    EXPECT_EQ(mmu.Translate(GfnOf(page), Access::kRead), 0u);
  }
  EXPECT_EQ(mmu.in_progress(), 0);
  EXPECT_EQ(mmu.stats().bugs, 0u);
  EXPECT_THAT(hub.Unregister(mmu), IsOk());
  std::printf("reads: %llu verified, %llu failed (unmapped), %llu discarded; faults %llu\n",
              static_cast<unsigned long long>(tally.verified.load()),
              static_cast<unsigned long long>(tally.failed.load()),
              static_cast<unsigned long long>(tally.discarded.load()),
              static_cast<unsigned long long>(mmu.stats().faults));
}

}  // namespace
}  // namespace mmuvisor::mmu
