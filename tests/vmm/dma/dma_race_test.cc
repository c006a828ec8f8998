// The DMA engine racing real invalidations. Two kinds of tests:
//  - Deterministic windows: a fault-path hook migrates or reclaims the very page the DMA is
//    faulting in, between resolve and install. With the retry checks the DMA retries and
//    moves the right bytes; with them skipped (the test-only switch) it reads poison from
//    the freed page or loses its write — the proof that the oracle can fail.
//  - Storms: host threads migrate, reclaim, write-protect and OOM-reap the descriptors,
//    source and destination while the device thread runs copy chains; every copy must be
//    exact, every status OK and every count must return to zero.
#include <atomic>
#include <cstring>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "dma_test_rig.h"
#include "gtest/gtest.h"
#include "notifier/base/random.h"
#include "support/stop_and_join.h"
#include "support/wait.h"
#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::dma {
namespace {

constexpr uint64_t kDesc = 0x0;
constexpr uint64_t kSrc = 0x4000;
constexpr uint64_t kDst = 0x20000;
constexpr uint64_t kLen = 0x4000;
constexpr uint64_t kPoison = 0xdeadbeefdeadbeefull;  // PagePoolSpaceOptions default

uint64_t Pattern(uint64_t gpa, uint64_t round) { return Mix64(gpa ^ (round << 40)); }

// Installs a hook that, the first time the DMA faults `victim_gpa`'s page, runs `op` on it
// from the faulting thread, after the page was resolved and before it is installed.
mmu::FaultHooks LandInWindow(std::atomic<DmaRig*>* rig, uint64_t victim_gpa, bool reclaim,
                             std::atomic<int>* landed) {
  mmu::FaultHooks hooks;
  hooks.after_resolve = [=](mmu::Gfn gfn, int /*attempt*/) {
    DmaRig* r = rig->load();
    if (r == nullptr || gfn != victim_gpa / 4096 || landed->load() != 0) return;
    landed->store(1);
    const absl::Status s = reclaim ? r->space().Reclaim(victim_gpa, 4096)
                                   : r->space().Migrate(victim_gpa, 4096);
    ASSERT_TRUE(s.ok()) << s;
  };
  return hooks;
}

struct WindowCase {
  bool skip_retry;
  bool victim_is_source;
  bool reclaim;  // else migrate
};

class DmaWindowTest : public ::testing::TestWithParam<WindowCase> {};

TEST_P(DmaWindowTest, InvalidationInsideTheFaultWindow) {
  const WindowCase c = GetParam();
  std::atomic<DmaRig*> rig_ptr{nullptr};
  std::atomic<int> landed{0};
  const uint64_t victim = c.victim_is_source ? kSrc + 0x1000 : kDst + 0x1000;
  DmaRigOptions options;
  options.skip_retry_check = c.skip_retry;
  options.hooks = LandInWindow(&rig_ptr, victim, c.reclaim, &landed);
  DmaRig rig(options);
  for (uint64_t a = kSrc; a < kSrc + kLen; a += 8) rig.PutWord(a, Pattern(a, 1));
  rig_ptr.store(&rig);

  const mmv_dma_desc back = rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen));
  ASSERT_EQ(landed.load(), 1) << "the hook never ran: the test proves nothing";
  ASSERT_EQ(back.status, MMV_DMA_STATUS_OK);
  uint64_t wrong = 0, poison = 0;
  for (uint64_t off = 0; off < kLen; off += 8) {
    const uint64_t got = rig.GetWord(kDst + off);
    wrong += got != Pattern(kSrc + off, 1);
    poison += got == kPoison;
  }
  if (!c.skip_retry) {
    EXPECT_EQ(wrong, 0u) << "the retry protocol must hide the invalidation";
    EXPECT_GT(rig.mmu()->stats().retries, 0u);
  } else {
    // One page (512 words) read stale poison or had its write lost.
    EXPECT_EQ(wrong, 512u) << "without the retry checks the stale page must show";
    if (c.victim_is_source) {
      EXPECT_EQ(poison, 512u);
    }
  }
  EXPECT_EQ(rig.mmu()->in_progress(), 0);
}

INSTANTIATE_TEST_SUITE_P(
    Windows, DmaWindowTest,
    ::testing::Values(WindowCase{false, true, false}, WindowCase{false, false, false},
                      WindowCase{false, true, true}, WindowCase{false, false, true},
                      WindowCase{true, true, false}, WindowCase{true, false, false},
                      WindowCase{true, true, true}),
    [](const ::testing::TestParamInfo<WindowCase>& p) {
      return std::string(p.param.skip_retry ? "SkipRetry" : "Checked") +
             (p.param.victim_is_source ? "Source" : "Destination") +
             (p.param.reclaim ? "Reclaimed" : "Migrated");
    });

class DmaStormTest : public ::testing::TestWithParam<bool> {};  // param: mirror path

TEST_P(DmaStormTest, CopiesStayExactWhileTheHostInvalidates) {
  DmaRigOptions options;
  options.pages = 64;
  options.mirror = GetParam();
  DmaRig rig(options);
  rig.engine().Start();

  std::atomic<bool> stop{false};
  // A host operation failed: its thread ended, and the copy loop below must not go on
  // waiting for windows that thread will never open.
  std::atomic<bool> host_failed{false};
  std::vector<std::thread> host;
  for (int t = 0; t < 2; ++t) {
    host.emplace_back([&, t] {
      for (uint64_t n = 0; !stop.load(); ++n) {
        const uint64_t r = Mix64(n * 2 + t);
        // Pages 0..51: the descriptors (page 0, so the descriptor reads and the status
        // write-back race invalidations too), the source and the destination.
        const uint64_t gpa = (r % 52) * 4096;
        absl::Status s;
        switch (r >> 60 & 3) {
          case 0: s = rig.space().Migrate(gpa, 4096); break;
          case 1: s = rig.space().Reclaim(gpa, 2 * 4096); break;
          case 2: s = rig.space().Protect(gpa, 4096); break;
          default: s = rig.space().OomReap(gpa, 4096); break;
        }
        if (!s.ok() && !absl::IsUnavailable(s)) {
          ADD_FAILURE() << "host operation on gpa 0x" << std::hex << gpa << ": " << s;
          host_failed.store(true);
          return;
        }
        // A pause between operations: back-to-back windows from two threads can keep
        // KVM's union range open for as long as a loaded scheduler likes, and a fault
        // retries while it is (seen under concurrency_under_load: a FAULT status).
        absl::SleepFor(absl::Microseconds(50));
      }
    });
  }
  // Every return (an ASSERT below included) stops and joins the host threads.
  const ::mmuvisor::testing::StopAndJoin joiner(stop, host);
  // At least 150 copies, and on until the host threads have opened some windows: they
  // may get no CPU during the first 150 on a loaded machine (bounded against a hang by
  // kTestWaitLimit, and ended at once when a host thread failed).
  uint64_t copies = 0;
  const uint64_t windows_before = rig.space().stats().invalidations;
  const absl::Time deadline = absl::Now() + ::mmuvisor::testing::kTestWaitLimit;
  for (uint64_t round = 1;
       !host_failed.load() &&
       (round <= 150 || (rig.space().stats().invalidations < windows_before + 20 &&
                         absl::Now() < deadline));
       ++round) {
    for (uint64_t a = kSrc; a < kSrc + kLen; a += 8) rig.PutWord(a, Pattern(a, round));
    rig.PutDesc(kDesc, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kDst, kLen, 0, kDesc + 64));
    rig.PutDesc(kDesc + 64, MakeDescriptor(MMV_DMA_OP_FILL, 0, kDst + kLen, 0x1000, round));
    const uint32_t gpa = kDesc;
    uint8_t bytes[4];
    std::memcpy(bytes, &gpa, 4);
    rig.engine().Write(0, 0, absl::MakeConstSpan(bytes, 4));
    ASSERT_TRUE(rig.engine().WaitIdle(::mmuvisor::testing::kTestWaitLimit)) << "the engine hung";
    ASSERT_EQ(rig.GetDesc(kDesc).status, MMV_DMA_STATUS_OK);
    ASSERT_EQ(rig.GetDesc(kDesc + 64).status, MMV_DMA_STATUS_OK);
    for (uint64_t off = 0; off < kLen; off += 8) {
      ASSERT_EQ(rig.GetWord(kDst + off), Pattern(kSrc + off, round)) << "round " << round;
    }
    for (uint64_t off = 0; off < 0x1000; off += 8) ASSERT_EQ(rig.GetWord(kDst + kLen + off), round);
    ++copies;
  }
  stop.store(true);
  for (std::thread& t : host) t.join();
  rig.engine().Stop();
  ASSERT_FALSE(host_failed.load()) << "a host thread failed (above)";
  EXPECT_GE(copies, 150u);
  EXPECT_GE(rig.space().stats().invalidations, windows_before + 20);
  EXPECT_EQ(rig.engine().stats().errors(), 0u);
  if (rig.mmu() != nullptr) {
    EXPECT_EQ(rig.mmu()->in_progress(), 0);
    EXPECT_EQ(rig.mmu()->active_invalidations(), 0);
  }
  EXPECT_EQ(rig.space().hub().pairing_summary().violations, 0u);
  EXPECT_EQ(rig.space().hub().pairing_summary().open, 0);
}

INSTANTIATE_TEST_SUITE_P(Paths, DmaStormTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) { return p.param ? "Mirror" : "SecondaryMmu"; });

}  // namespace
}  // namespace mmuvisor::vmm::dma

namespace mmuvisor::vmm::dma {
namespace {

// The hazard DeviceMmu closes (device_mmu.h): the DMA translated its destination page P
// and is about to write; meanwhile the host migrates P (freeing its old backing page X)
// and then migrates another page Q, which gets X (LIFO reuse) with Q's data. A write
// through the old translation now lands in Q. AccessRetry makes the DMA redo its own
// write correctly, but Q stays corrupted. With DeviceMmu's wait the migration of P cannot
// complete while the access is in flight, so the write lands in P's page before the copy.
class DeviceMmuWaitTest : public ::testing::TestWithParam<bool> {};  // param: wait on

TEST_P(DeviceMmuWaitTest, InFlightWriteCannotLandInAReusedPage) {
  const bool wait = GetParam();
  constexpr uint64_t kP = kDst;            // DMA destination page
  constexpr uint64_t kQ = kDst + 0x8000;   // an unrelated resident page
  DmaRig rig;
  rig.mmu()->SetAccessWaitForTesting(wait);
  for (uint64_t a = kSrc; a < kSrc + 0x1000; a += 8) rig.PutWord(a, Pattern(a, 7));
  for (uint64_t a = kQ; a < kQ + 0x1000; a += 8) rig.PutWord(a, Pattern(a, 9));
  // Map P in the DMA MMU first, so the copy takes the Translate fast path.
  ASSERT_EQ(rig.RunOne(kDesc, MakeDescriptor(MMV_DMA_OP_FILL, 0, kP, 0x1000, 1)).status, MMV_DMA_STATUS_OK);

  auto* memory = dynamic_cast<SecondaryMmuMemory*>(&rig.engine_memory());
  ASSERT_NE(memory, nullptr);
  std::thread host;
  std::atomic<bool> host_done{false};
  bool fired = false;
  memory->set_after_translate_for_testing([&](uint64_t gpa) {
    if (fired || gpa / 4096 != kP / 4096) return;
    fired = true;
    host = std::thread([&] {
      EXPECT_TRUE(rig.space().Migrate(kP, 0x1000).ok());
      EXPECT_TRUE(rig.space().Migrate(kQ, 0x1000).ok());
      host_done.store(true);
    });
    // Without the wait the host finishes here, however late the scheduler runs it; with
    // the wait it cannot until we are done: hold the access until the migrate of P has
    // announced itself to the drain, so it must wait for this access (bounded both ways).
    if (wait) {
      EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
          [&] { return rig.mmu()->access_waiters() > 0; }))
          << "the migrate never reached the drain";
    } else {
      EXPECT_TRUE(::mmuvisor::testing::WaitUntil([&] { return host_done.load(); }))
          << "the host never finished";
    }
  });
  const mmv_dma_desc back = rig.RunOne(kDesc + 64, MakeDescriptor(MMV_DMA_OP_COPY, kSrc, kP, 0x1000));
  // The hook (this thread, inside RunOne) started the host thread only if it fired.
  if (host.joinable()) host.join();
  ASSERT_TRUE(fired) << "the copy never translated P: the test proves nothing";
  ASSERT_EQ(back.status, MMV_DMA_STATUS_OK);
  uint64_t p_wrong = 0, q_wrong = 0;
  for (uint64_t off = 0; off < 0x1000; off += 8) {
    p_wrong += rig.GetWord(kP + off) != Pattern(kSrc + off, 7);
    q_wrong += rig.GetWord(kQ + off) != Pattern(kQ + off, 9);
  }
  EXPECT_EQ(p_wrong, 0u) << "the DMA's own write lands in P either way (kept with the wait, "
                           "redone without it)";
  if (wait) {
    EXPECT_EQ(q_wrong, 0u);
    EXPECT_GT(rig.mmu()->access_waits(), 0u);
  } else {
    EXPECT_EQ(q_wrong, 512u) << "without the wait the stray write must land in Q's page";
  }
}

INSTANTIATE_TEST_SUITE_P(Wait, DeviceMmuWaitTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& p) {
                           return p.param ? "WaitOn" : "WaitOffShowsTheHazard";
                         });

// An access in flight through a slot that SetLayout removes must finish before SetLayout
// lets any start see the new layout: such a start finds no slot for the old page, so it
// would not wait, and the primary could free the page under the access.
TEST(DeviceMmuLayoutTest, RemovingASlotWaitsForAnAccessInFlight) {
  DmaRig rig;
  std::atomic<bool> returned{false};
  absl::Status set;
  std::thread control;
  {
    DeviceMmu::AccessSection access(*rig.mmu());  // an access that has translated
    control = std::thread([&] {
      set = rig.mmu()->SetLayout({});
      returned.store(true);
    });
    EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
        [&] { return rig.mmu()->access_waiters() > 0 || returned.load(); }));
    EXPECT_FALSE(returned.load()) << "SetLayout returned with an access in flight";
    EXPECT_GT(rig.mmu()->access_waiters(), 0);
  }
  control.join();
  EXPECT_TRUE(set.ok()) << set;
  EXPECT_GT(rig.mmu()->access_waits(), 0u);
}

// A device write that raced an invalidation has landed (DeviceMmu's start waited for it,
// and the migrate kept it), so it must not be replayed: the guest may have seen it and
// written the word again. A chain's status word is that case: the guest sees OK, sets it
// PENDING for its next chain and rings; a replayed OK then makes it read that chain's
// results before the device ran it (nested SVM, 2026-12-03: a dma-fill mismatch on one
// word at gpa 0x1da000, the FILL's page read before the FILL). Forced here: the device's
// write translates; a migrate of its page starts (and waits for the write); the write
// lands and AccessRetry says it raced; the guest reads OK and writes PENDING before the
// device could fault the page again (a fault-path hook holds such a refault until then).
TEST(DmaRacedWriteTest, ARacedWriteIsNotReplayedOverTheGuestsNextWrite) {
  using ::mmuvisor::testing::WaitUntil;
  constexpr uint64_t kStatus = kDst + 0x38;
  constexpr uint64_t kOk = uint64_t{MMV_DMA_STATUS_OK} << 32;
  constexpr uint64_t kPending = uint64_t{MMV_DMA_STATUS_PENDING} << 32 | 0x77;
  std::atomic<bool> armed{false};
  std::atomic<bool> guest_wrote{false};
  DmaRigOptions options;
  options.hooks.after_resolve = [&](mmu::Gfn gfn, int /*attempt*/) {
    if (!armed.load() || gfn != kStatus / 4096) return;
    EXPECT_TRUE(WaitUntil([&] { return guest_wrote.load(); }));  // a replay comes after
  };
  DmaRig rig(options);
  auto* memory = dynamic_cast<SecondaryMmuMemory*>(&rig.engine_memory());
  ASSERT_NE(memory, nullptr);
  // The page is mapped in the DMA MMU first, so the write takes the Translate fast path.
  const uint64_t first = 0;
  ASSERT_TRUE(memory->WriteWords(kStatus, absl::MakeConstSpan(&first, 1)).ok());
  std::thread host;
  std::atomic<bool> migrated{false};
  bool fired = false;
  memory->set_after_translate_for_testing([&](uint64_t gpa) {
    if (fired || gpa / 4096 != kStatus / 4096) return;
    fired = true;
    armed.store(true);
    host = std::thread([&] {
      EXPECT_TRUE(rig.space().Migrate(kStatus & ~uint64_t{4095}, 4096).ok());
      migrated.store(true);
    });
    // Until the migrate's start has zapped the page; it then waits for this access.
    EXPECT_TRUE(WaitUntil([&] { return rig.mmu()->in_progress() > 0; }));
  });
  std::thread device([&] {
    EXPECT_TRUE(memory->WriteWords(kStatus, absl::MakeConstSpan(&kOk, 1)).ok());
  });
  // The guest: the write is visible once the migrate is done; it reuses the word. On a
  // failure both threads are still joined before returning (the hook waiting for
  // guest_wrote is released either way).
  const bool migrate_done = WaitUntil([&] { return migrated.load(); });
  EXPECT_TRUE(migrate_done) << "the migrate did not finish within "
                            << ::mmuvisor::testing::kTestWaitLimit;
  if (migrate_done) {
    EXPECT_EQ(rig.GetWord(kStatus), kOk) << "the raced write did not land";
    rig.PutWord(kStatus, kPending);
  }
  guest_wrote.store(true);
  device.join();
  // The device thread's hook started `host` only if it fired; joined above, so visible.
  if (host.joinable()) host.join();
  ASSERT_TRUE(fired) << "the device write never translated: the test proves nothing";
  ASSERT_TRUE(migrate_done);
  EXPECT_EQ(rig.GetWord(kStatus), kPending) << "the device replayed its raced write";
  EXPECT_EQ(memory->stats().raced_writes, 1u);
  EXPECT_EQ(memory->stats().access_retries, 0u);
}

}  // namespace
}  // namespace mmuvisor::vmm::dma
