// Mirror: faulting, device access, invalidation (blockable and try-lock), owner-tagged
// migrations, attach/detach errors, and accesses/faults that run while Detach runs.
#include "mmu/mirror.h"

#include <atomic>
#include <optional>
#include <random>
#include <thread>
#include <vector>

#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"
#include "support/wait.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::testing::WaitUntil;
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
  std::atomic<bool> returned{false};
  std::thread t;
  ASSERT_THAT(mirror_.AccessPage(FakeAddressSpace::Address(6), Access::kRead,
                                 [&](uint64_t) {
                                   t = std::thread([&] {
                                     nonblocking = space_.ChangeBacking(6, /*blockable=*/false);
                                     returned.store(true);
                                   });
                                   // It must come back without waiting for us. If it waits
                                   // (the bug), give up and release the lock, so the test
                                   // fails here instead of deadlocking.
                                   EXPECT_TRUE(WaitUntil([&] { return returned.load(); }))
                                       << "a non-blockable start waited for the user lock";
                                 }),
              IsOk());
  t.join();
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

// Detach against a device access that runs while it detaches (tests/model's
// interval_seq.pml -DACCESS_DURING_DETACH; its -DOLD_DETACH_ORDER trail). Between Detach's
// two steps the primary migrates a page the mirror maps, then the device reads it. Detach
// zaps and marks the mirror detached before it removes the interval, so the access finds
// nothing and is refused. In the old order (Remove, then the zap) the migration reached
// nobody and the access read the old page: poisoned, in the kernel a freed page.
TEST(MirrorDetachTest, AccessBetweenDetachStepsIsRefusedNeverStale) {
  notifier::NotifierSubscriptions hub;
  FakeAddressSpace space(hub, kPages);
  Mirror mirror(space, MirrorOptions{"detach-mirror", absl::Seconds(5)});
  ASSERT_THAT(mirror.Attach(hub, FakeAddressSpace::kBase, 16 * kPageSize), IsOk());
  ASSERT_THAT(mirror.Fault(FakeAddressSpace::Address(5), Access::kRead), IsOk());
  const uint64_t old_host = space.CurrentHost(5);

  bool hook_ran = false;
  absl::Status access = absl::UnknownError("the detach hook did not run");
  std::optional<uint64_t> accessed_host;
  std::optional<ShadowEntry> entry_during;
  mirror.SetDetachHookForTesting([&] {
    hook_ran = true;
    ASSERT_THAT(space.ChangeBacking(5), IsOk());  // old_host is poisoned from here on
    access = mirror.AccessPage(FakeAddressSpace::Address(5), Access::kRead,
                               [&](uint64_t host) { accessed_host = host; });
    entry_during = mirror.Lookup(FakeAddressSpace::Address(5));
  });
  ASSERT_THAT(mirror.Detach(), IsOk());

  ASSERT_TRUE(hook_ran);
  EXPECT_THAT(access, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("detached")));
  EXPECT_FALSE(accessed_host.has_value())
      << "the device accessed host page 0x" << std::hex << *accessed_host
      << (*accessed_host == old_host ? " (the page the primary migrated away)" : "");
  EXPECT_FALSE(entry_during.has_value())
      << "mid-Detach the mirror still maps host page 0x" << std::hex
      << entry_during->host_address << " (migrated-away page 0x" << old_host << ")";
  EXPECT_EQ(mirror.mapped_count(), 0u);
  EXPECT_EQ(hub.active_invalidate_ranges(), 0u);
}

// A fault in flight across Detach (the same model check, the mirror's Fault side): it
// resolved its page and waits at its install while Detach runs; between Detach's steps
// the primary may migrate that page, then the fault goes on. It must install nothing
// (kFailedPrecondition: detached) and nothing may be left mapped.
//   migrate: in the old order (Remove, then zap) the fault found the mirror still attached
//     and its seq untouched (the migration reached nobody) and installed the
//     migrated-away page (model: OLD_DETACH_ORDER).
//   no migration: without the locked attached_ check the fault installs after Detach's
//     zap, and the entry outlives Detach (model: NO_DETACHED_CHECK).
void FaultAcrossDetach(bool migrate) {
  notifier::NotifierSubscriptions hub;
  FakeAddressSpace space(hub, kPages);
  Mirror mirror(space, MirrorOptions{"detach-mirror", absl::Seconds(5)});
  ASSERT_THAT(mirror.Attach(hub, FakeAddressSpace::kBase, 16 * kPageSize), IsOk());

  std::atomic<bool> at_install{false};
  std::atomic<bool> release{false};
  std::atomic<bool> fault_done{false};
  FaultHooks hooks;
  hooks.before_install = [&](Gfn, int attempt) {
    if (attempt != 0) return;
    at_install.store(true);
    EXPECT_TRUE(WaitUntil([&] { return release.load(); }))
        << "Detach's hook never let the fault go on";
  };
  mirror.SetFaultHooksForTesting(std::move(hooks));
  absl::Status fault = absl::UnknownError("the fault did not return");
  std::thread faulter([&] {
    fault = mirror.Fault(FakeAddressSpace::Address(7), Access::kRead);
    fault_done.store(true);
  });
  const bool reached = WaitUntil([&] { return at_install.load(); });
  EXPECT_TRUE(reached) << "the fault never reached its install";

  uint64_t resolved_host = 0;
  std::optional<ShadowEntry> entry_during;
  if (reached) {
    resolved_host = space.CurrentHost(7);
    mirror.SetDetachHookForTesting([&] {
      if (migrate) {
        EXPECT_THAT(space.ChangeBacking(7), IsOk());
      }
      release.store(true);
      EXPECT_TRUE(WaitUntil([&] { return fault_done.load(); })) << "the fault never returned";
      entry_during = mirror.Lookup(FakeAddressSpace::Address(7));
    });
    EXPECT_THAT(mirror.Detach(), IsOk());
  }
  release.store(true);
  faulter.join();

  EXPECT_THAT(fault, StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("detached")));
  EXPECT_FALSE(entry_during.has_value())
      << "mid-Detach the fault installed host page 0x" << std::hex
      << entry_during->host_address << " (resolved page 0x" << resolved_host
      << (migrate ? ", migrated away)" : ")");
  EXPECT_EQ(mirror.stats().installs, 0u);
  EXPECT_EQ(mirror.mapped_count(), 0u) << "an entry outlived Detach";
  EXPECT_EQ(hub.active_invalidate_ranges(), 0u);
}

TEST(MirrorDetachTest, FaultInFlightWhosePageMigratesDuringDetachDoesNotInstall) {
  FaultAcrossDetach(/*migrate=*/true);
}

TEST(MirrorDetachTest, FaultInFlightAcrossDetachLeavesNoEntry) {
  FaultAcrossDetach(/*migrate=*/false);
}

// The same contract with real threads (no forced schedule, so it asserts only what every
// schedule guarantees): readers access random pages while a migrator changes them and
// the control thread detaches. No access ever sees a stale page; every access that began
// after Detach returned is refused as detached; nothing is left mapped.
TEST(MirrorDetachTest, AccessesRacingDetachNeverSeeAStalePage) {
  notifier::NotifierSubscriptions hub;
  FakeAddressSpace space(hub, kPages);
  Mirror mirror(space, MirrorOptions{"detach-mirror", absl::Seconds(20)});
  constexpr uint64_t kMirrored = 16;
  constexpr int kReaders = 3;
  ASSERT_THAT(mirror.Attach(hub, FakeAddressSpace::kBase, kMirrored * kPageSize), IsOk());

  std::atomic<bool> detached{false};
  std::atomic<uint64_t> verified{0}, stale{0}, refused{0}, unexpected{0}, used_after{0};
  auto reader = [&](int seed) {
    std::mt19937 rng(seed);
    for (;;) {
      const bool after = detached.load(std::memory_order_acquire);
      const uint64_t page = rng() % kMirrored;
      uint64_t words[FakeAddressSpace::kWords];
      const absl::Status status = mirror.AccessPage(
          FakeAddressSpace::Address(page), Access::kRead,
          [&](uint64_t host) { FakeAddressSpace::ReadPage(host, words); });
      if (status.ok()) {
        uint64_t version = 0;
        (FakeAddressSpace::Intact(words, page, &version) ? verified : stale).fetch_add(1);
        if (after) used_after.fetch_add(1);
      } else if (absl::IsFailedPrecondition(status)) {
        refused.fetch_add(1);
      } else {
        unexpected.fetch_add(1);
      }
      if (after) return;  // one access that began after Detach returned
    }
  };
  std::vector<std::thread> threads;
  for (int i = 0; i < kReaders; ++i) threads.emplace_back(reader, i + 1);
  threads.emplace_back([&] {
    std::mt19937 rng(42);
    while (!detached.load(std::memory_order_acquire)) {
      EXPECT_THAT(space.ChangeBacking(rng() % kMirrored), IsOk());
    }
  });
  EXPECT_TRUE(WaitUntil([&] { return verified.load() >= 200; }))
      << "the readers made no progress before Detach";
  EXPECT_THAT(mirror.Detach(), IsOk());
  detached.store(true, std::memory_order_release);
  for (std::thread& t : threads) t.join();

  EXPECT_EQ(stale.load(), 0u);
  EXPECT_EQ(unexpected.load(), 0u);
  EXPECT_EQ(used_after.load(), 0u) << "an access that began after Detach used an entry";
  EXPECT_GE(refused.load(), static_cast<uint64_t>(kReaders));
  EXPECT_EQ(mirror.mapped_count(), 0u);
  EXPECT_EQ(hub.active_invalidate_ranges(), 0u);
}

}  // namespace
}  // namespace mmuvisor::mmu
