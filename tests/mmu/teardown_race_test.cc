// Teardown race (after the HMM selftest anon_teardown): reader threads fault and read
// pages through the SecondaryMmu (Translate + seq validation) and through the Mirror
// (AccessPage) and verify every word, while an invalidator migrates pages, unmaps and
// remaps half the space, issues non-blockable invalidations, and finally tears the
// address space down. Every read must either fail with an expected error or return the
// intact contents of the page's current backing: zero stale reads. Afterwards every count
// is back to zero. Runs under TSan (label concurrency).
#include <atomic>
#include <random>
#include <thread>
#include <vector>

#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmu/mirror.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"
#include "support/wait.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;

constexpr uint64_t kPages = 32;
constexpr int kInvalidations = 400;

struct ReadTally {
  std::atomic<uint64_t> verified{0};
  std::atomic<uint64_t> failed{0};      // expected errors (unmapped, torn down)
  std::atomic<uint64_t> discarded{0};   // validated as racing and redone
  std::atomic<uint64_t> stale{0};       // MUST stay 0
  std::atomic<uint64_t> unexpected{0};  // errors of an unexpected code: MUST stay 0
};

bool ExpectedFailure(const absl::Status& status) {
  return absl::IsNotFound(status) || absl::IsFailedPrecondition(status);
}

// One read of `page` through the secondary MMU: Translate under a read section, copy,
// then validate with AccessRetry (a seqlock read); fault on a miss.
void MmuRead(SecondaryMmu& mmu, uint64_t page, ReadTally& tally) {
  uint64_t words[FakeAddressSpace::kWords];
  for (;;) {
    uint64_t host = 0;
    {
      auto section = mmu.ReadSection();
      const uint64_t seq = mmu.SnapshotSeq();
      host = mmu.Translate(page, Access::kRead);
      if (host != 0) {
        FakeAddressSpace::ReadPage(host, words);
        if (mmu.AccessRetry(seq, page)) {
          tally.discarded.fetch_add(1, std::memory_order_relaxed);
          continue;
        }
        uint64_t version = 0;
        if (FakeAddressSpace::Intact(words, page, &version)) {
          tally.verified.fetch_add(1, std::memory_order_relaxed);
        } else {
          tally.stale.fetch_add(1, std::memory_order_relaxed);
        }
        return;
      }
    }
    absl::StatusOr<ShadowEntry> faulted = mmu.Fault(page, Access::kRead);
    if (!faulted.ok()) {
      (ExpectedFailure(faulted.status()) ? tally.failed : tally.unexpected)
          .fetch_add(1, std::memory_order_relaxed);
      return;
    }
  }
}

void MirrorRead(Mirror& mirror, uint64_t page, ReadTally& tally) {
  uint64_t words[FakeAddressSpace::kWords];
  absl::Status status = mirror.AccessPage(
      FakeAddressSpace::Address(page), Access::kRead,
      [&](uint64_t host) { FakeAddressSpace::ReadPage(host, words); });
  if (!status.ok()) {
    (ExpectedFailure(status) ? tally.failed : tally.unexpected)
        .fetch_add(1, std::memory_order_relaxed);
    return;
  }
  uint64_t version = 0;
  const bool intact = FakeAddressSpace::Intact(words, page, &version);
  (intact ? tally.verified : tally.stale).fetch_add(1, std::memory_order_relaxed);
}

TEST(TeardownRaceTest, ReadersNeverSeeStaleDataWhileTheSpaceChangesAndIsTornDown) {
  notifier::NotifierSubscriptions hub;
  FakeAddressSpace space(hub, kPages);
  SecondaryMmu mmu(space, SecondaryMmuOptions{"teardown-mmu", absl::Seconds(20)});
  Mirror mirror(space, MirrorOptions{"teardown-mirror", absl::Seconds(20)});
  ASSERT_THAT(mmu.SetLayout({{0, kPages, FakeAddressSpace::kBase}}), IsOk());
  ASSERT_THAT(hub.Register(mmu), IsOk());
  ASSERT_THAT(mirror.Attach(hub, FakeAddressSpace::kBase, kPages * kPageSize), IsOk());

  ReadTally mmu_tally;
  ReadTally mirror_tally;
  std::atomic<bool> torn_down{false};
  std::atomic<uint64_t> nonblock_refused{0};

  // Readers run until teardown, then a fixed number of reads more (which must now fail).
  auto reader = [&](int seed, bool through_mirror) {
    std::mt19937 rng(seed);
    int after_teardown = 0;
    while (after_teardown < 50) {
      if (torn_down.load(std::memory_order_acquire)) ++after_teardown;
      const uint64_t page = rng() % kPages;
      if (through_mirror) {
        MirrorRead(mirror, page, mirror_tally);
      } else {
        MmuRead(mmu, page, mmu_tally);
      }
    }
  };
  std::vector<std::thread> threads;
  threads.emplace_back(reader, 1, false);
  threads.emplace_back(reader, 2, false);
  threads.emplace_back(reader, 3, true);

  // No ASSERT while the readers are joinable (a failed ASSERT would return past their
  // joins: std::terminate). The first failed step stops the storm; the space is still
  // torn down, so the readers end, and the failure is reported after the joins.
  absl::Status storm_failure;
  int failed_step = -1;
  std::mt19937 rng(42);
  for (int i = 0; i < kInvalidations && storm_failure.ok(); ++i) {
    const uint64_t page = rng() % kPages;
    switch (i % 8) {
      case 3: {
        // Half the space goes away while readers use it (anon_teardown's munmap).
        storm_failure = space.Unmap(kPages / 2, kPages / 2);
        if (!storm_failure.ok()) break;
        std::this_thread::yield();
        space.Remap(kPages / 2, kPages / 2);
        break;
      }
      case 5: {
        absl::Status s = space.ChangeBacking(page, /*blockable=*/false);
        if (absl::IsUnavailable(s)) {
          nonblock_refused.fetch_add(1);
        } else {
          storm_failure = s;
        }
        break;
      }
      default:
        storm_failure = space.ChangeBacking(page);
    }
    if (!storm_failure.ok()) failed_step = i;
  }
  // Readers run until teardown, so once the invalidations stop each verifies a read in
  // every schedule; wait for that (bounded) rather than hope it happened during the storm.
  const bool both_read = storm_failure.ok() && WaitUntil([&] {
    return mmu_tally.verified.load() > 0 && mirror_tally.verified.load() > 0;
  });
  space.Teardown();
  torn_down.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();
  EXPECT_THAT(storm_failure, IsOk()) << "invalidation step " << failed_step;

  EXPECT_EQ(mmu_tally.stale.load(), 0u);
  EXPECT_EQ(mirror_tally.stale.load(), 0u);
  EXPECT_EQ(mmu_tally.unexpected.load(), 0u);
  EXPECT_EQ(mirror_tally.unexpected.load(), 0u);
  if (storm_failure.ok()) {
    EXPECT_TRUE(both_read) << "no verified read within " << kTestWaitLimit;
  }
  EXPECT_GT(mmu_tally.verified.load(), 0u);
  EXPECT_GT(mirror_tally.verified.load(), 0u);
  EXPECT_GT(mmu_tally.failed.load() + mirror_tally.failed.load(), 0u);  // reads after teardown

  // Counts back to zero, nothing left mapped, every start paired with an end.
  EXPECT_EQ(mmu.in_progress(), 0);
  EXPECT_EQ(mmu.active_invalidations(), 0);
  EXPECT_EQ(mmu.stats().bugs, 0u);
  EXPECT_EQ(mmu.mapped_count(), 0u);
  EXPECT_EQ(mmu.stats().starts, mmu.stats().ends);
  EXPECT_EQ(hub.active_invalidate_ranges(), 0u);
  EXPECT_EQ(mmu.stats().timeouts, 0u);
  EXPECT_EQ(mirror.stats().timeouts, 0u);
  ASSERT_THAT(mirror.Detach(), IsOk());
  EXPECT_EQ(mirror.mapped_count(), 0u);

  const SecondaryMmuStats stats = mmu.stats();
  std::printf("mmu reads: %llu verified, %llu failed, %llu discarded; faults %llu, retries "
              "%llu, stale detections %llu; mirror reads: %llu verified, %llu failed; "
              "non-blockable refusals %llu\n",
              static_cast<unsigned long long>(mmu_tally.verified.load()),
              static_cast<unsigned long long>(mmu_tally.failed.load()),
              static_cast<unsigned long long>(mmu_tally.discarded.load()),
              static_cast<unsigned long long>(stats.faults),
              static_cast<unsigned long long>(stats.retries),
              static_cast<unsigned long long>(stats.stale_detections),
              static_cast<unsigned long long>(mirror_tally.verified.load()),
              static_cast<unsigned long long>(mirror_tally.failed.load()),
              static_cast<unsigned long long>(nonblock_refused.load()));
}

}  // namespace
}  // namespace mmuvisor::mmu
