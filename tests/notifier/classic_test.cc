// Unit tests of the classic-subscription rules (notifier/README.md, "Classic
// subscriptions", rules 1-5), one test per rule.
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "notifier/hub_hooks.h"
#include "notifier/invalidation_guard.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "test_subscriptions.h"

namespace mmuvisor::notifier {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;
using ::testing::_;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CallLog;
using testing::FailingSubscription;
using testing::KvmLikeSubscription;
using testing::MakeRange;

TEST(RangeTest, MakeRejectsEmptyRange) {
  EXPECT_THAT(Range::Make(0x1000, 0x1000, Event::kUnmap).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(RangeTest, MakeRejectsWrappingRange) {
  EXPECT_THAT(Range::Make(0x2000, 0x1000, Event::kClear).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("wraps")));
}

TEST(RangeTest, MakeKeepsEveryField) {
  int owner = 0;
  ASSERT_OK_AND_ASSIGN(Range r, Range::Make(0x1000, 0x3000, Event::kMigrate, false, &owner));
  EXPECT_EQ(r.start, 0x1000u);
  EXPECT_EQ(r.end, 0x3000u);
  EXPECT_EQ(r.event, Event::kMigrate);
  EXPECT_FALSE(r.blockable);
  EXPECT_EQ(r.owner, &owner);
  EXPECT_TRUE(r.Overlaps(0x2fff, 0x4000));
  EXPECT_FALSE(r.Overlaps(0x3000, 0x4000));  // half-open
}

TEST(RangeTest, HubRejectsEmptyRangeWithInvalidArgument) {
  NotifierSubscriptions hub;
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(5, 5)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
}

TEST(RegistrationTest, ArchInvalidateSecondaryTlbsExcludesStartEnd) {
  NotifierSubscriptions hub;
  Subscription sub({Op::kArchInvalidateSecondaryTlbs, Op::kInvalidateRangeStart}, "arch");
  EXPECT_THAT(hub.Register(sub), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("arch_invalidate_secondary_tlbs")));
  Subscription ok({Op::kArchInvalidateSecondaryTlbs}, "arch-only");
  EXPECT_THAT(hub.Register(ok), IsOk());
  EXPECT_THAT(hub.Unregister(ok), IsOk());
}

TEST(RegistrationTest, StartThatMayFailExcludesEnd) {
  NotifierSubscriptions hub;
  Subscription sub({Op::kInvalidateRangeStart, Op::kStartMayFail, Op::kInvalidateRangeEnd},
                   "bad");
  EXPECT_THAT(hub.Register(sub),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("may fail")));
}

TEST(RegistrationTest, RegisterTwiceIsFailedPrecondition) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  EXPECT_THAT(hub.Register(a), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("already registered")));
  EXPECT_THAT(hub.Unregister(a), IsOk());
}

TEST(RegistrationTest, NewestRegisteredIsCalledFirst) {
  CallLog log;
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a", &log), b("b", &log), c("c", &log);
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  ASSERT_THAT(hub.Register(c), IsOk());
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  EXPECT_THAT(log.Take(), ElementsAre("c.start", "b.start", "a.start", "c.end", "b.end",
                                      "a.end"));
  for (auto* s : {&a, &b, &c}) ASSERT_THAT(hub.Unregister(*s), IsOk());
}

TEST(RegistrationTest, RegistrationNeverLandsInsideAnOpenWindow) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), late("late");
  std::atomic<bool> gate_waits{false};
  HubHooks hooks;
  hooks.gate_waits = [&] { gate_waits.store(true); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(a), IsOk());
  const Range range = MakeRange(0, 4096);
  ASSERT_THAT(hub.InvalidateRangeStart(range), IsOk());
  std::atomic<bool> registered{false};
  std::thread registrar([&] {
    EXPECT_THAT(hub.Register(late), IsOk());
    registered.store(true);
  });
  // Until the registrar has closed the gate and found our window open, or has returned
  // (the bug): if it slipped in, `late` would get our end without its start, which the
  // checks below catch too.
  EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
      [&] { return gate_waits.load() || registered.load(); }))
      << "the registrar neither waited nor returned";
  const bool early = registered.load();
  hub.InvalidateRangeEnd(range);
  registrar.join();
  EXPECT_FALSE(early) << "Register returned while a start/end window was open";
  EXPECT_EQ(late.pairing().ends, 0u);
  EXPECT_EQ(hub.pairing_summary().violations, 0u) << hub.pairing_summary().ToString();
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(late), IsOk());
}

TEST(RegistrationTest, WhileARegistrationWaitsNonBlockableStartsAreUnavailableButNestedOnesEnter) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), late("late");
  std::atomic<bool> gate_waits{false};
  HubHooks hooks;
  hooks.gate_waits = [&] { gate_waits.store(true); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(a), IsOk());
  const Range outer = MakeRange(0, 4096);
  ASSERT_THAT(hub.InvalidateRangeStart(outer), IsOk());
  std::thread registrar([&] { EXPECT_THAT(hub.Register(late), IsOk()); });
  // Once the registrar has closed the gate it waits for `outer`, so it cannot finish
  // before we end it: another thread's non-blockable start is then refused.
  const bool closed = ::mmuvisor::testing::WaitUntil([&] { return gate_waits.load(); });
  EXPECT_TRUE(closed) << "the registrar never closed the gate";
  absl::Status refused;
  std::thread other([&] {
    const Range r = MakeRange(0x8000, 0x9000, /*blockable=*/false);
    refused = hub.InvalidateRangeStart(r);
    if (refused.ok()) hub.InvalidateRangeEnd(r);
  });
  other.join();
  EXPECT_THAT(refused, StatusIs(absl::StatusCode::kUnavailable,
                                HasSubstr("registration in progress")));
  // This thread is inside a window: a nested start enters even though the gate is closed
  // (waiting would deadlock with the registrar, which waits for `outer`).
  const Range inner = MakeRange(0x1000, 0x2000, /*blockable=*/false);
  ASSERT_THAT(hub.InvalidateRangeStart(inner), IsOk());
  hub.InvalidateRangeEnd(inner);
  hub.InvalidateRangeEnd(outer);
  registrar.join();
  EXPECT_EQ(late.pairing().starts, 0u);
  EXPECT_EQ(late.pairing().ends, 0u);
  EXPECT_EQ(a.pairing().open, 0);
  EXPECT_EQ(hub.pairing_summary().violations, 0u) << hub.pairing_summary().ToString();
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(late), IsOk());
}

TEST(UnregisterTest, CallsReleaseUnlinksAndRejectsASecondCall) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Unregister(a), IsOk());
  EXPECT_EQ(a.releases(), 1);
  EXPECT_EQ(hub.subscription_count(), 0u);
  EXPECT_THAT(hub.Unregister(a), StatusIs(absl::StatusCode::kFailedPrecondition,
                                          HasSubstr("not registered")));
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  EXPECT_EQ(a.pairing().starts, 0u);
}

// A start callback that, once armed, stops inside its first call until let go, and counts
// the calls that began or ended after its Unregister had returned.
class HeldSubscription : public KvmLikeSubscription {
 public:
  HeldSubscription() : KvmLikeSubscription("held") {}
  StartResult InvalidateRangeStart(const Range& range) override {
    if (unregister_returned.load()) late_calls.fetch_add(1);
    if (armed.exchange(false)) {
      inside.store(true);
      held_ok.store(WaitUntil([&] { return let_go.load(); }));
    }
    StartResult r = KvmLikeSubscription::InvalidateRangeStart(range);
    if (unregister_returned.load()) late_calls.fetch_add(1);
    return r;
  }
  std::atomic<bool> armed{true};
  std::atomic<bool> inside{false};   // the held call has begun
  std::atomic<bool> let_go{false};
  std::atomic<bool> held_ok{true};   // false: let_go never came within the bound
  std::atomic<bool> unregister_returned{false};
  std::atomic<int> late_calls{0};
};

// The window's start callback is held inside; Unregister runs on another thread until it
// either returns (the bug: a callback still runs) or its grace period reports that it waits
// for that callback's read-side section (HubHooks::grace_period_waits). Then the callback is
// let go, Unregister returns, and windows opened afterwards never reach the subscription.
TEST(UnregisterTest, NoCallbackRunsAfterUnregisterReturns) {
  NotifierSubscriptions hub;
  HeldSubscription held;
  std::atomic<bool> unregistering{false};
  std::atomic<bool> grace_period_waits{false};
  HubHooks hooks;
  hooks.grace_period_waits = [&] {  // only signals (it runs under the domain's lock)
    if (unregistering.load()) grace_period_waits.store(true);
  };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(held), IsOk());

  std::atomic<bool> window_done{false};
  std::thread invalidator([&] {
    const Range range = MakeRange(0, 4096);
    if (hub.InvalidateRangeStart(range).ok()) hub.InvalidateRangeEnd(range);
    window_done.store(true);
  });
  // No ASSERT while threads are joinable: a failed wait lets everything go, then reports.
  const bool entered = WaitUntil([&] { return held.inside.load(); });
  EXPECT_TRUE(entered) << "the start callback was not entered within " << kTestWaitLimit;
  std::thread unregisterer;
  bool unregister_waited = false;
  bool returned_while_inside = false;
  absl::Status unregistered = absl::UnknownError("Unregister not run");
  if (entered) {
    unregistering.store(true);
    unregisterer = std::thread([&] {
      unregistered = hub.Unregister(held);
      held.unregister_returned.store(true);
    });
    unregister_waited = WaitUntil(
        [&] { return grace_period_waits.load() || held.unregister_returned.load(); });
    returned_while_inside = held.unregister_returned.load();
  }
  held.let_go.store(true);
  const bool all_done = WaitUntil([&] {
    return window_done.load() && (!entered || held.unregister_returned.load());
  });
  if (!all_done) {
    ADD_FAILURE() << "the window or Unregister did not return within " << kTestWaitLimit
                  << " after the callback was let go: the hub is wedged";
    std::fflush(nullptr);
    std::abort();  // the threads cannot be joined
  }
  invalidator.join();
  if (unregisterer.joinable()) unregisterer.join();
  ASSERT_TRUE(entered);
  EXPECT_TRUE(held.held_ok.load());
  EXPECT_TRUE(unregister_waited) << "Unregister neither returned nor waited for the callback";
  EXPECT_FALSE(returned_while_inside) << "Unregister returned while a callback was running";
  ASSERT_THAT(unregistered, IsOk());

  // Every window from here on begins after Unregister returned.
  const uint64_t starts = held.pairing().starts;
  for (int i = 0; i < 3; ++i) {
    const Range range = MakeRange(0, 4096);
    ASSERT_THAT(hub.InvalidateRangeStart(range), IsOk());
    hub.InvalidateRangeEnd(range);
  }
  EXPECT_EQ(held.pairing().starts, starts) << "a callback ran after Unregister returned";
  EXPECT_EQ(held.late_calls.load(), 0) << "a callback ran after Unregister returned";
  EXPECT_EQ(hub.pairing_summary().violations, 0u) << hub.pairing_summary().ToString();
}

class KvmAllocator : public SubscriptionAllocator {
 public:
  absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(NotifierSubscriptions&) override {
    if (fail) return absl::ResourceExhaustedError("alloc_notifier: no memory");
    ++allocs;
    return std::make_unique<KvmLikeSubscription>("got");
  }
  void FreeNotifier(std::unique_ptr<Subscription> sub) override {
    ++frees;
    released_at_free = static_cast<KvmLikeSubscription&>(*sub).releases();
  }
  bool fail = false;
  int allocs = 0;
  int frees = 0;
  int released_at_free = -1;
};

TEST(GetPutTest, GetSharesOneSubscriptionPerAllocator) {
  NotifierSubscriptions hub;
  KvmAllocator kvm, other;
  ASSERT_OK_AND_ASSIGN(Subscription * a, hub.Get(kvm));
  ASSERT_OK_AND_ASSIGN(Subscription * b, hub.Get(kvm));
  ASSERT_OK_AND_ASSIGN(Subscription * c, hub.Get(other));
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_EQ(kvm.allocs, 1);
  EXPECT_EQ(a->allocator(), &kvm);
  EXPECT_EQ(hub.subscription_count(), 2u);
  ASSERT_THAT(hub.Put(*a), IsOk());
  ASSERT_THAT(hub.Put(*b), IsOk());
  ASSERT_THAT(hub.Put(*c), IsOk());
  hub.Synchronize();
  EXPECT_EQ(kvm.frees, 1);
}

TEST(GetPutTest, PutFreesAfterGracePeriodWithoutReleaseAndSynchronizeWaits) {
  NotifierSubscriptions hub;
  KvmAllocator kvm;
  ASSERT_OK_AND_ASSIGN(Subscription * sub, hub.Get(kvm));
  ASSERT_THAT(hub.Put(*sub), IsOk());
  EXPECT_EQ(hub.subscription_count(), 0u);  // unlinked at once
  EXPECT_EQ(kvm.frees, 0);                  // freed only after a grace period
  hub.Synchronize();
  EXPECT_EQ(kvm.frees, 1);
  EXPECT_EQ(kvm.released_at_free, 0) << "Put must never call release";
}

TEST(GetPutTest, GetReturnsTheAllocatorsError) {
  NotifierSubscriptions hub;
  KvmAllocator kvm;
  kvm.fail = true;
  EXPECT_THAT(hub.Get(kvm).status(),
              StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("alloc_notifier")));
}

TEST(RegistrationTest, ALeakedWindowBlocksOnlyRegistrations) {
  // A registrar waiting for an open window (here one this thread holds until the end of
  // the test, as a leaked one would stay) must not hold the lock that Unregister, Put,
  // a Get of a linked subscription, teardown and the introspection calls take.
  NotifierSubscriptions hub;
  KvmAllocator kvm;
  KvmLikeSubscription a("a"), b("b"), late("late");
  std::atomic<bool> gate_waits{false};
  HubHooks hooks;
  hooks.gate_waits = [&] { gate_waits.store(true); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  ASSERT_OK_AND_ASSIGN(Subscription * got, hub.Get(kvm));
  const Range range = MakeRange(0, 4096);
  ASSERT_THAT(hub.InvalidateRangeStart(range), IsOk());
  absl::Status late_status;
  std::thread registrar([&] { late_status = hub.Register(late); });
  ASSERT_TRUE(WaitUntil([&] { return gate_waits.load(); }))
      << "the registrar never waited for the open window";
  std::atomic<bool> done{false};
  std::thread other([&] {
    EXPECT_EQ(hub.subscription_count(), 3u);
    (void)hub.pairing_summary();
    EXPECT_THAT(hub.Unregister(b), IsOk());
    ASSERT_OK_AND_ASSIGN(Subscription * again, hub.Get(kvm));
    EXPECT_EQ(again, got);
    EXPECT_THAT(hub.Put(*again), IsOk());
    EXPECT_THAT(hub.Put(*got), IsOk());
    hub.Release();
    done.store(true);
  });
  const bool unblocked = WaitUntil([&] { return done.load(); });
  hub.InvalidateRangeEnd(range);  // lets a wedged run finish before the verdict
  other.join();
  registrar.join();
  EXPECT_TRUE(unblocked) << "a registrar waiting for a window blocked the other calls for "
                         << kTestWaitLimit;
  // Teardown began while it waited: the registration is refused with the gate closed.
  EXPECT_THAT(late_status, StatusIs(absl::StatusCode::kFailedPrecondition,
                                    HasSubstr("torn down")));
  EXPECT_EQ(a.releases(), 1);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  hub.Synchronize();
  EXPECT_EQ(kvm.frees, 1);
}

TEST(GetPutTest, AGetThatCannotLinkFreesWithNoHubLockHeld) {
  // AllocNotifier returns a subscription registration refuses (arch TLBs with start), so
  // Get frees it at once. FreeNotifier asks the hub for its subscription count on another
  // thread: that takes the registration lock, and finishes only if Get dropped it first.
  class BadAllocator : public SubscriptionAllocator {
   public:
    absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(
        NotifierSubscriptions& hub) override {
      hub_ = &hub;
      return std::make_unique<Subscription>(
          OpSet{Op::kArchInvalidateSecondaryTlbs, Op::kInvalidateRangeStart}, "bad");
    }
    void FreeNotifier(std::unique_ptr<Subscription> sub) override {
      sub.reset();
      counter_ = std::thread([this] {
        hub_->subscription_count();
        counted_.store(true);
      });
      // Bounded: with the lock held the count waits for Get, which waits for us.
      lock_free_ = WaitUntil([&] { return counted_.load(); });
    }
    bool lock_free_ = false;
    std::thread counter_;  // joined by the test once Get returned

   private:
    NotifierSubscriptions* hub_ = nullptr;
    std::atomic<bool> counted_{false};
  } bad;
  NotifierSubscriptions hub;
  EXPECT_THAT(hub.Get(bad).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("arch_invalidate")));
  ASSERT_TRUE(bad.counter_.joinable());
  bad.counter_.join();
  EXPECT_TRUE(bad.lock_free_) << "FreeNotifier ran under the registration lock for "
                              << kTestWaitLimit;
}

TEST(GetPutTest, UnregisterOfAGetSubscriptionIsFailedPrecondition) {
  KvmAllocator kvm;  // outlives the hub, whose destructor runs the pending free
  NotifierSubscriptions hub;
  ASSERT_OK_AND_ASSIGN(Subscription * sub, hub.Get(kvm));
  EXPECT_THAT(hub.Unregister(*sub),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("use Put")));
  ASSERT_THAT(hub.Put(*sub), IsOk());
  EXPECT_THAT(hub.Put(*sub), StatusIs(absl::StatusCode::kFailedPrecondition, _));
}

// Release drops the last reference from inside the callback, as Linux allows.
class PutInRelease : public KvmLikeSubscription {
 public:
  PutInRelease() : KvmLikeSubscription("put-in-release") {}
  void Release(NotifierSubscriptions& hub) override {
    KvmLikeSubscription::Release(hub);
    put_status = hub.Put(*this);
  }
  absl::Status put_status = absl::UnknownError("not called");
};
class PutInReleaseAllocator : public SubscriptionAllocator {
 public:
  absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(NotifierSubscriptions&) override {
    return std::make_unique<PutInRelease>();
  }
  void FreeNotifier(std::unique_ptr<Subscription> sub) override {
    put_status = static_cast<PutInRelease&>(*sub).put_status;
    ++frees;
  }
  absl::Status put_status;
  int frees = 0;
};

TEST(GetPutTest, PutFromReleaseAtTeardownIsAllowed) {
  PutInReleaseAllocator alloc;
  {
    NotifierSubscriptions hub;
    ASSERT_THAT(hub.Get(alloc).status(), IsOk());
    hub.Release();
    hub.Synchronize();
    EXPECT_EQ(alloc.frees, 1);
  }
  EXPECT_THAT(alloc.put_status, IsOk());
}

TEST(TeardownTest, ReleaseCallsReleaseExactlyOncePerSubscription) {
  CallLog log;
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a", &log), b("b", &log);
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  hub.Release();
  hub.Release();  // idempotent
  EXPECT_THAT(log.Take(), ElementsAre("b.release", "a.release"));
  // Unregister after teardown: no second release.
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
  EXPECT_EQ(a.releases(), 1);
  EXPECT_EQ(b.releases(), 1);
}

TEST(TeardownTest, NoClassicCallbackAfterTeardown) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  a.set_young(true);
  ASSERT_THAT(hub.Register(a), IsOk());
  hub.Release();
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  EXPECT_FALSE(hub.TestYoung(0));
  EXPECT_EQ(a.pairing().starts, 0u);
  EXPECT_EQ(hub.pairing_summary().violations, 0u);
  EXPECT_THAT(hub.Register(a), StatusIs(absl::StatusCode::kFailedPrecondition, _));
  KvmLikeSubscription fresh("fresh");
  EXPECT_THAT(hub.Register(fresh),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("torn down")));
  ASSERT_THAT(hub.Unregister(a), IsOk());
}

// Smoke test: Release() and Unregister() on two threads, schedule left to chance (it
// rarely lands inside the race). It asserts only what every schedule guarantees: both
// return, ->release runs exactly once. Each order of the race is forced deterministically
// in lifetime_test.cc: Unregister claiming the release while teardown runs
// (TeardownRace.TeardownReturnsOnlyAfterAReleaseClaimedByARacingUnregister) and Unregister
// during teardown's walk (TeardownRace.TeardownNeverCallsIntoASubscriptionAfterIts...).
TEST(TeardownTest, ReleaseAndUnregisterOnTwoThreadsReleaseOnceInEverySchedule) {
  for (int round = 0; round < 50; ++round) {
    NotifierSubscriptions hub;
    KvmLikeSubscription a("a");
    ASSERT_THAT(hub.Register(a), IsOk());
    std::atomic<bool> released{false};
    std::thread t([&] {
      hub.Release();
      released.store(true);
    });
    // No ASSERT while `t` is joinable.
    const absl::Status unregistered = hub.Unregister(a);
    if (!WaitUntil([&] { return released.load(); })) {
      ADD_FAILURE() << "round " << round << ": Release() did not return within "
                    << kTestWaitLimit;
      std::fflush(nullptr);
      std::abort();  // the thread cannot be joined
    }
    t.join();
    ASSERT_THAT(unregistered, IsOk()) << "round " << round;
    ASSERT_EQ(a.releases(), 1) << "round " << round;
  }
}

TEST(YoungTest, ClearYoungOrsEverySubscription) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), b("b");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  a.set_young(true);
  b.set_young(true);
  EXPECT_TRUE(hub.ClearYoung(0, 4096));
  // Both were cleared: the OR did not short-circuit after b.
  EXPECT_FALSE(hub.ClearYoung(0, 4096));
  a.set_young(true);
  EXPECT_TRUE(hub.ClearFlushYoung(0, 4096));
  EXPECT_FALSE(hub.ClearFlushYoung(0, 4096));
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
}

TEST(YoungTest, TestYoungStopsAtTheFirstYoung) {
  CallLog log;
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a", &log), b("b", &log);
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());  // b is newest: asked first
  b.set_young(true);
  EXPECT_TRUE(hub.TestYoung(0x1000));
  EXPECT_THAT(log.Take(), ElementsAre("b.test_young"));
  b.set_young(false);
  EXPECT_FALSE(hub.TestYoung(0x1000));
  EXPECT_THAT(log.Take(), ElementsAre("b.test_young", "a.test_young"));
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
}

TEST(YoungTest, ArchInvalidateSecondaryTlbsReachesOnlyItsSubscribers) {
  class ArchSub : public Subscription {
   public:
    ArchSub() : Subscription({Op::kArchInvalidateSecondaryTlbs}, "arch") {}
    void ArchInvalidateSecondaryTlbs(uint64_t start, uint64_t end) override {
      last_start = start;
      last_end = end;
    }
    uint64_t last_start = 0, last_end = 0;
  } arch;
  NotifierSubscriptions hub;
  KvmLikeSubscription kvm("kvm");
  ASSERT_THAT(hub.Register(arch), IsOk());
  ASSERT_THAT(hub.Register(kvm), IsOk());
  hub.ArchInvalidateSecondaryTlbs(0x2000, 0x3000);
  EXPECT_EQ(arch.last_start, 0x2000u);
  EXPECT_EQ(arch.last_end, 0x3000u);
  EXPECT_EQ(kvm.pairing().starts, 0u);
  ASSERT_THAT(hub.Unregister(arch), IsOk());
  ASSERT_THAT(hub.Unregister(kvm), IsOk());
}

TEST(StartFailureTest, UpstreamCallsEveryStartThenEveryEndThenUnavailable) {
  CallLog log;
  NotifierSubscriptions hub;  // kUpstream
  KvmLikeSubscription a("a", &log);
  FailingSubscription b("b", &log);
  KvmLikeSubscription c("c", &log);
  for (Subscription* s : std::initializer_list<Subscription*>{&a, &b, &c}) {
    ASSERT_THAT(hub.Register(*s), IsOk());
  }
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096, /*blockable=*/false)),
              StatusIs(absl::StatusCode::kUnavailable, HasSubstr("try again")));
  EXPECT_THAT(log.Take(), ElementsAre("c.start", "b.start", "a.start", "c.end", "a.end"));
  EXPECT_EQ(a.in_progress(), 0);
  EXPECT_EQ(c.in_progress(), 0);
  EXPECT_EQ(hub.pairing_summary().violations, 0u);
  for (Subscription* s : std::initializer_list<Subscription*>{&a, &b, &c}) {
    ASSERT_THAT(hub.Unregister(*s), IsOk());
  }
}

TEST(StartFailureTest, BlockableStartFailureIsReportedAndTheWindowStaysPaired) {
  class Rogue : public Subscription {
   public:
    Rogue() : Subscription({Op::kInvalidateRangeStart}, "rogue") {}
    StartResult InvalidateRangeStart(const Range&) override { return StartResult::kAgain; }
  } rogue;
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(rogue), IsOk());
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  EXPECT_EQ(a.in_progress(), 0);
  const PairingSummary s = hub.pairing_summary();
  ASSERT_EQ(s.violations, 2u) << s.ToString();  // blockable failure + undeclared failure
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kBlockableStartFailed);
  EXPECT_EQ(s.first_violations[1].kind, ViolationKind::kUndeclaredStartFailure);
  EXPECT_EQ(s.first_violations[0].subscription, "rogue");
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(rogue), IsOk());
}

TEST(StartFailureTest, BlockableStartFailureOfAnEnderKeepsItsEndPaired) {
  // The hub treats a blockable kAgain as done and delivers the end; the checker must count
  // that start as a window, or the end is a false kEndWithoutStart.
  class RogueEnder : public Subscription {
   public:
    RogueEnder()
        : Subscription({Op::kInvalidateRangeStart, Op::kInvalidateRangeEnd}, "rogue") {}
    StartResult InvalidateRangeStart(const Range&) override { return StartResult::kAgain; }
  } rogue;
  NotifierSubscriptions hub;
  ASSERT_THAT(hub.Register(rogue), IsOk());
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  const PairingSummary s = hub.pairing_summary();
  std::vector<ViolationKind> kinds;
  for (const Violation& v : s.first_violations) kinds.push_back(v.kind);
  EXPECT_THAT(kinds, ElementsAre(ViolationKind::kBlockableStartFailed,
                                 ViolationKind::kFailingStartHasEnd,
                                 ViolationKind::kUndeclaredStartFailure))
      << s.ToString();
  EXPECT_EQ(rogue.pairing().starts, 1u);
  EXPECT_EQ(rogue.pairing().ends, 1u);
  EXPECT_EQ(rogue.pairing().failed_starts, 1u);
  EXPECT_EQ(s.open, 0);
  ASSERT_THAT(hub.Unregister(rogue), IsOk());
}

TEST(StartFailureTest, SortedEndLastRefusesNonBlockingWithTwoEndNeeders) {
  CallLog log;
  NotifierSubscriptions hub({.policy = Policy::kSortedEndLast});
  KvmLikeSubscription a("a", &log), c("c", &log);
  ASSERT_THAT(hub.Register(a), IsOk());
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096, false)), IsOk());  // one: fine
  hub.InvalidateRangeEnd(MakeRange(0, 4096, false));
  ASSERT_THAT(hub.Register(c), IsOk());
  log.Take();
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096, false)),
              StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_THAT(log.Take(), ElementsAre());  // refused up front
  EXPECT_EQ(hub.sorted_nonblock_refusals(), 1u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(c), IsOk());
}

TEST(StartFailureTest, SortedEndLastPutsEndNeedersLastAndStopsAtTheFailure) {
  CallLog log;
  NotifierSubscriptions hub({.policy = Policy::kSortedEndLast});
  KvmLikeSubscription a("a", &log);
  FailingSubscription b("b", &log);
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  FailingSubscription d("d", &log);
  ASSERT_THAT(hub.Register(d), IsOk());
  EXPECT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096, false)),
              StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_THAT(log.Take(), ElementsAre("d.start"));  // a (end-needer) never started
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  EXPECT_THAT(log.Take(), ElementsAre("d.start", "b.start", "a.start", "a.end"));
  for (Subscription* s : std::initializer_list<Subscription*>{&a, &b, &d}) {
    ASSERT_THAT(hub.Unregister(*s), IsOk());
  }
}

TEST(GuardTest, EndIsCalledExactlyWhenStartSucceeded) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  FailingSubscription b("b");
  ASSERT_THAT(hub.Register(a), IsOk());
  {
    ASSERT_OK_AND_ASSIGN(InvalidationGuard guard,
                         InvalidationGuard::Start(hub, MakeRange(0, 4096)));
    EXPECT_TRUE(guard.active());
    EXPECT_EQ(a.in_progress(), 1);
    InvalidationGuard moved = std::move(guard);
    EXPECT_FALSE(guard.active());  // NOLINT(bugprone-use-after-move): testing the move
    EXPECT_EQ(a.in_progress(), 1);
  }
  EXPECT_EQ(a.in_progress(), 0);
  EXPECT_EQ(a.pairing().ends, 1u);
  ASSERT_THAT(hub.Register(b), IsOk());
  EXPECT_THAT(InvalidationGuard::Start(hub, MakeRange(0, 4096, false)).status(),
              StatusIs(absl::StatusCode::kUnavailable, _));
  EXPECT_EQ(a.in_progress(), 0);
  EXPECT_EQ(a.pairing().ends, 2u);  // the hub's own unwind end, none from a guard
  EXPECT_EQ(hub.pairing_summary().violations, 0u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
}

TEST(PairingCheckerTest, ReportsEndWithoutStartWithSubscriptionAndRange) {
  // Driven directly, as a subscription-level check. Through the hub an unmatched end
  // never reaches a subscription: the hub reports it at its own address and drops it
  // (lifetime_test.cc, UnmatchedEndTest).
  PairingChecker checker(/*enabled=*/true);
  KvmLikeSubscription a("a");
  checker.OnStart(a, MakeRange(0, 4096), StartResult::kOk);
  checker.OnEnd(a, MakeRange(0, 4096));
  checker.OnEnd(a, MakeRange(0x5000, 0x6000));
  const PairingSummary s = checker.Summary(a.pairing());
  ASSERT_EQ(s.violations, 1u) << s.ToString();
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kEndWithoutStart);
  EXPECT_EQ(s.first_violations[0].range.start, 0x5000u);
  EXPECT_EQ(s.open, 0);
  EXPECT_THAT(s.ToString(), HasSubstr("end without start"));
  EXPECT_THAT(s.ToString(), HasSubstr("'a'"));
}

TEST(PairingCheckerTest, UnmatchedEndsInARowAreEachReportedAndLeaveTheCountsExact) {
  // The checker packs starts and open windows in one word; an unmatched end borrows from
  // the start count until it is put back. Each unmatched end is reported once and the
  // windows after them count normally (starts = ends + open, depth from real windows).
  PairingChecker checker(/*enabled=*/true);
  KvmLikeSubscription a("a");
  checker.OnEnd(a, MakeRange(0x1000, 0x2000));
  checker.OnEnd(a, MakeRange(0x3000, 0x4000));
  checker.OnStart(a, MakeRange(0, 4096), StartResult::kOk);
  checker.OnStart(a, MakeRange(0, 4096), StartResult::kOk);
  checker.OnEnd(a, MakeRange(0, 4096));
  const PairingSummary s = checker.Summary(a.pairing());
  ASSERT_EQ(s.violations, 2u) << s.ToString();
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kEndWithoutStart);
  EXPECT_EQ(s.first_violations[1].kind, ViolationKind::kEndWithoutStart);
  EXPECT_EQ(s.starts, 2u);
  EXPECT_EQ(s.ends, 1u);
  EXPECT_EQ(s.open, 1);
  EXPECT_EQ(s.max_depth, 2);
}

TEST(PairingCheckerTest, AnEndOnlySubscriptionIsNoViolation) {
  // Registration accepts an end without a start op (Linux calls it alone); it never gets
  // a start, so each end counts as one window, not as an end without start.
  class EndOnly : public Subscription {
   public:
    EndOnly() : Subscription({Op::kInvalidateRangeEnd}, "end-only") {}
    void InvalidateRangeEnd(const Range&) override { ++ends; }
    int ends = 0;
  } end_only;
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(end_only), IsOk());
  for (int i = 0; i < 3; ++i) {
    ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
    hub.InvalidateRangeEnd(MakeRange(0, 4096));
  }
  EXPECT_EQ(end_only.ends, 3);
  EXPECT_EQ(end_only.pairing().starts, 3u);
  EXPECT_EQ(end_only.pairing().ends, 3u);
  EXPECT_EQ(end_only.pairing().open, 0);
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.violations, 0u) << s.ToString();
  EXPECT_EQ(s.starts, 6u);
  EXPECT_EQ(s.ends, 6u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(end_only), IsOk());
}

TEST(PairingCheckerTest, TracksNestingDepth) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
  ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0x1000, 0x2000)), IsOk());  // nested
  EXPECT_EQ(a.pairing().open, 2);
  hub.InvalidateRangeEnd(MakeRange(0x1000, 0x2000));
  hub.InvalidateRangeEnd(MakeRange(0, 4096));
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.max_depth, 2);
  EXPECT_EQ(s.open, 0);
  EXPECT_EQ(s.starts, 2u);
  EXPECT_EQ(s.ends, 2u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
}

TEST(PairingCheckerTest, AReRegisteredSubscriptionIsCountedOncePerWindow) {
  // Each unlink moves the subscription's totals to the checker's retired sums, so the
  // next link must start its counts from zero.
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  auto windows = [&](int n) {
    for (int i = 0; i < n; ++i) {
      ASSERT_THAT(hub.InvalidateRangeStart(MakeRange(0, 4096)), IsOk());
      hub.InvalidateRangeEnd(MakeRange(0, 4096));
    }
  };
  ASSERT_THAT(hub.Register(a), IsOk());
  windows(3);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Register(a), IsOk());
  windows(2);
  EXPECT_EQ(a.pairing().starts, 2u);  // this link's
  ASSERT_THAT(hub.Unregister(a), IsOk());
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.starts, 5u) << s.ToString();
  EXPECT_EQ(s.ends, 5u) << s.ToString();
  EXPECT_EQ(s.violations, 0u) << s.ToString();
}

TEST(PairingCheckerTest, ReportsCallbackAfterUnregister) {
  PairingChecker checker(/*enabled=*/true);
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Unregister(a), IsOk());
  checker.OnStart(a, MakeRange(0, 4096), StartResult::kOk);  // as a buggy hub would
  const PairingSummary s = checker.Summary(PairingCounters{});
  ASSERT_EQ(s.violations, 1u);
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kCallbackAfterUnregister);
}

}  // namespace
}  // namespace mmuvisor::notifier
