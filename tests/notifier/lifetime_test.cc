// Lifetime at teardown and unregister (issue 12), each race landed deterministically with
// the hub's test hooks (notifier/hub_hooks.h): the hook stops one thread at the window and
// the test runs the other operation whole (or until it provably blocks: a grace period or
// the registration gate reports that it waits) before letting the first go on. Late calls
// into freed subscriptions are caught by PoisoningArena's tombstones, not by luck.
//
//   1 TeardownRace.*ClaimedByARacingUnregister   Release() returns before a ->release ran
//   2 TeardownRace.*AfterItsUnregisterReturned   teardown calls into an unregistered sub
//   3 TeardownRace.*AfterItsLastPutFreedIt       the same through Put's deferred free
//   4 IntervalTeardown.*                         an interval escapes its release
//   5 UnmatchedEnd.*                             one stray end wedges or opens the gate
// The LifetimeRule tests check the other rows of the README's lifetime table.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "notifier/hub_hooks.h"
#include "notifier/pairing_checker.h"
#include "notifier/thread_shard.h"
#include "poisoning_arena.h"
#include "support/status_matchers.h"
#include "test_subscriptions.h"

namespace mmuvisor::notifier {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::CallLog;
using testing::KvmLikeSubscription;
using testing::MakeRange;
using testing::MirrorInterval;
using testing::PoisoningAllocator;
using testing::PoisoningArena;

// Bound of every wait: only reached when the awaited event never comes (a failure).
constexpr auto kBound = std::chrono::seconds(60);

// A one-shot event between threads.
class Signal {
 public:
  void Notify() {
    std::lock_guard<std::mutex> lock(mu_);
    set_ = true;
    cv_.notify_all();
  }
  bool WaitFor(std::chrono::seconds bound) {
    std::unique_lock<std::mutex> lock(mu_);
    return cv_.wait_for(lock, bound, [&] { return set_; });
  }
  bool IsSet() {
    std::lock_guard<std::mutex> lock(mu_);
    return set_;
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool set_ = false;  // guarded by mu_
};

Subscription* MakeLogged(PoisoningArena& arena, CallLog* log, const char* name) {
  return arena.New<KvmLikeSubscription>(name, log);
}

// ---- 1-3: the classic release walk against Unregister and Put ------------------------

// Unregister claims ->release; teardown runs whole before the call. Teardown may not
// return until that ->release has returned (Linux: unregister's srcu_read_lock before
// ->release, mn_hlist_release's closing synchronize_srcu).
TEST(TeardownRaceTest, TeardownReturnsOnlyAfterAReleaseClaimedByARacingUnregister) {
  NotifierSubscriptions hub;
  std::atomic<bool> teardown_returned{false};
  std::atomic<int> late_releases{0};
  class Sub : public KvmLikeSubscription {
   public:
    Sub(std::atomic<bool>* returned, std::atomic<int>* late)
        : KvmLikeSubscription("a"), returned_(returned), late_(late) {}
    void Release(NotifierSubscriptions& hub) override {
      if (returned_->load()) late_->fetch_add(1);
      KvmLikeSubscription::Release(hub);
    }

   private:
    std::atomic<bool>* returned_;
    std::atomic<int>* late_;
  } sub(&teardown_returned, &late_releases);

  Signal teardown_done_or_waiting;
  std::thread teardown;
  HubHooks hooks;
  hooks.unregister_release_claimed = [&](Subscription&) {
    teardown = std::thread([&] {
      hub.Release();
      teardown_returned.store(true);
      teardown_done_or_waiting.Notify();
    });
    // Either teardown returned (the bug) or its grace period waits for this Unregister.
    EXPECT_TRUE(teardown_done_or_waiting.WaitFor(kBound));
  };
  hooks.grace_period_waits = [&] { teardown_done_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(sub), IsOk());

  ASSERT_THAT(hub.Unregister(sub), IsOk());
  teardown.join();
  EXPECT_EQ(sub.releases(), 1);
  EXPECT_EQ(late_releases.load(), 0) << "->release ran after teardown returned";
  EXPECT_EQ(hub.pairing_summary().violations, 0u) << hub.pairing_summary().ToString();
}

// Teardown has loaded the list; the owner unregisters and frees the subscription. The
// walk must not touch it after Unregister returned (Linux: the walk is an SRCU reader
// and unregister's synchronize_srcu waits for it).
TEST(TeardownRaceTest, TeardownNeverCallsIntoASubscriptionAfterItsUnregisterReturned) {
  PoisoningArena arena;  // outlives the hub
  CallLog log;
  NotifierSubscriptions hub;
  Subscription* sub = MakeLogged(arena, &log, "a");

  Signal owner_done_or_waiting;
  std::thread owner;
  HubHooks hooks;
  hooks.teardown_walk = [&] {
    owner = std::thread([&] {
      ASSERT_THAT(hub.Unregister(*sub), IsOk());
      arena.Free(sub);  // as subscription.h allows once Unregister returned
      owner_done_or_waiting.Notify();
    });
    EXPECT_TRUE(owner_done_or_waiting.WaitFor(kBound));
  };
  hooks.grace_period_waits = [&] { owner_done_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(*sub), IsOk());

  hub.Release();
  owner.join();
  EXPECT_EQ(arena.late_calls(), 0) << arena.LateCallLog();
  EXPECT_THAT(log.Take(), ElementsAre("a.release"));
  EXPECT_EQ(arena.frees(), 1);
}

// The same through Get/Put: the last Put unlinks and queues the free; a grace period runs.
// The free must wait for the teardown walk that still holds the subscription (Linux:
// call_srcu after the unlink, and the walk is a reader).
TEST(TeardownRaceTest, TeardownNeverCallsIntoAGetSubscriptionAfterItsLastPutFreedIt) {
  PoisoningArena arena;
  CallLog log;
  PoisoningAllocator alloc(&arena,
                           [&](PoisoningArena& a) { return MakeLogged(a, &log, "got"); });
  NotifierSubscriptions hub;
  ASSERT_OK_AND_ASSIGN(Subscription * got, hub.Get(alloc));

  Signal owner_done_or_waiting;
  std::thread owner;
  HubHooks hooks;
  hooks.teardown_walk = [&] {
    owner = std::thread([&] {
      ASSERT_THAT(hub.Put(*got), IsOk());
      hub.Synchronize();  // runs the queued free once its grace period is over
      owner_done_or_waiting.Notify();
    });
    EXPECT_TRUE(owner_done_or_waiting.WaitFor(kBound));
  };
  hooks.grace_period_waits = [&] { owner_done_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));

  hub.Release();
  owner.join();
  hub.Synchronize();
  EXPECT_EQ(arena.late_calls(), 0) << arena.LateCallLog();
  EXPECT_EQ(alloc.frees(), 1);
  // The walk began while it was linked, so it releases it (Linux: the same), then frees.
  EXPECT_THAT(log.Take(), ElementsAre("got.release"));
}

// ---- 4: no interval escapes its release ----------------------------------------------

// An Insert while the release walk runs (tree frozen by it) would be deferred to the
// walk's own end and never invalidated: it is refused.
TEST(IntervalTeardownTest, AnInsertDuringTheReleaseWalkIsRefused) {
  NotifierSubscriptions hub;
  MirrorInterval early(nullptr, "early"), late(nullptr, "late");
  ASSERT_THAT(early.Insert(hub, 0, 0x10000), IsOk());
  absl::Status inserted = absl::UnknownError("hook not run");
  HubHooks hooks;
  hooks.teardown_itree_walked = [&] { inserted = late.Insert(hub, 0x1000, 0x1000); };
  hub.SetHooksForTesting(std::move(hooks));

  hub.Release();
  EXPECT_EQ(early.last_event(), Event::kRelease);
  EXPECT_THAT(inserted, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("torn down")));
  if (inserted.ok()) {
    EXPECT_EQ(late.invalidations(), 1) << "inserted during teardown, never released";
    ASSERT_THAT(late.Remove(), IsOk());
  }
  EXPECT_EQ(hub.interval_count(), 1u);
  ASSERT_THAT(early.Remove(), IsOk());
}

// An Insert deferred before teardown began (another window froze the tree) enters the
// tree at that window's end, after the release walk: that end invalidates it with
// kRelease. Teardown does not wait for the window (it could be leaked).
TEST(IntervalTeardownTest, AnInsertDeferredBeforeTeardownStillGetsItsReleaseInvalidation) {
  NotifierSubscriptions hub;
  MirrorInterval early(nullptr, "early"), deferred(nullptr, "deferred");
  ASSERT_THAT(early.Insert(hub, 0, 0x10000), IsOk());
  const Range window = MakeRange(0, 0x1000);
  ASSERT_THAT(hub.InvalidateRangeStart(window), IsOk());  // overlaps `early`: frozen
  ASSERT_THAT(deferred.Insert(hub, 0x2000, 0x1000), IsOk());
  ASSERT_EQ(hub.interval_count(), 1u) << "the insert should be deferred";

  hub.Release();
  EXPECT_EQ(deferred.invalidations(), 0);  // still deferred: the walk could not see it
  hub.InvalidateRangeEnd(window);  // it enters the tree here, and gets its release

  EXPECT_EQ(hub.interval_count(), 2u);
  EXPECT_EQ(deferred.invalidations(), 1) << "an interval escaped its release";
  EXPECT_EQ(deferred.last_event(), Event::kRelease);
  ASSERT_THAT(deferred.Remove(), IsOk());
  ASSERT_THAT(early.Remove(), IsOk());
}

// ---- 5: an end without a start -------------------------------------------------------

// Runs `fn` on a thread and waits for it (bounded). A thread still stuck at the bound is
// a wedged hub: report and abort, since the thread cannot be joined.
void RunBounded(const char* what, std::function<void()> fn) {
  Signal done;
  std::thread t([&] {
    fn();
    done.Notify();
  });
  if (!done.WaitFor(kBound)) {
    ADD_FAILURE() << what << " did not return within the bound: the hub is wedged";
    std::fflush(nullptr);
    std::abort();
  }
  t.join();
}

TEST(UnmatchedEndTest, IsReportedCallsNobodyAndDoesNotWedgeRegistration) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a");
  ASSERT_THAT(hub.Register(a), IsOk());
  const Range range = MakeRange(0x5000, 0x6000);
  hub.InvalidateRangeEnd(range);  // no start on this thread: a caller bug

  const PairingSummary s = hub.pairing_summary();
  ASSERT_EQ(s.violations, 1u) << s.ToString();
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kEndWithoutStart);
  EXPECT_EQ(s.first_violations[0].address, static_cast<const void*>(&hub));
  EXPECT_EQ(s.first_violations[0].range.start, 0x5000u);
  EXPECT_THAT(s.ToString(), HasSubstr("no window open on this thread"));
  EXPECT_EQ(a.pairing().ends, 0u) << "the stray end reached a subscription";
  EXPECT_EQ(a.in_progress(), 0);

  // Registration (and a paired window afterwards) still work: nothing went below zero.
  KvmLikeSubscription b("b");
  RunBounded("Register after a stray end", [&] { ASSERT_THAT(hub.Register(b), IsOk()); });
  ASSERT_THAT(hub.InvalidateRangeStart(range), IsOk());
  hub.InvalidateRangeEnd(range);
  EXPECT_EQ(b.pairing().starts, 1u);
  EXPECT_EQ(b.pairing().ends, 1u);
  EXPECT_EQ(hub.pairing_summary().violations, 1u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
}

// Holds every exclusive counter slot (thread_shard.h) while alive, so threads started
// meanwhile land on shared slots.
class ExclusiveSlotHolders {
 public:
  ExclusiveSlotHolders() {
    std::atomic<int> holding{0};
    for (int i = 0; i < internal::kExclusiveSlots; ++i) {
      threads_.emplace_back([&] {
        internal::ThreadSlot();
        holding.fetch_add(1);
        release_.WaitFor(kBound);
      });
    }
    while (holding.load() < internal::kExclusiveSlots) std::this_thread::yield();
  }
  ~ExclusiveSlotHolders() {
    release_.Notify();
    for (std::thread& t : threads_) t.join();
  }

 private:
  Signal release_;
  std::vector<std::thread> threads_;
};

class UnmatchedEndSlotTest : public ::testing::TestWithParam<bool /*shared slots*/> {};

// X ends without a start; Y holds a real window. Counting X's end would make the sum of
// open windows 0 while Y's window is open, and a registration would link inside it.
TEST_P(UnmatchedEndSlotTest, NeverLetsARegistrationIntoAnOpenWindow) {
  std::unique_ptr<ExclusiveSlotHolders> holders;
  if (GetParam()) holders = std::make_unique<ExclusiveSlotHolders>();
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), late("late");
  Signal registrar_done_or_waiting;
  HubHooks hooks;
  hooks.gate_waits = [&] { registrar_done_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub.Register(a), IsOk());
  const Range range = MakeRange(0, 0x1000);
  auto on_expected_slot = [&] {
    return (internal::ThreadSlot() >= internal::kExclusiveSlots) == GetParam();
  };

  std::thread x([&] {
    EXPECT_TRUE(on_expected_slot());
    hub.InvalidateRangeEnd(range);
  });
  x.join();
  Signal opened, close;
  std::thread y([&] {
    EXPECT_TRUE(on_expected_slot());
    ASSERT_THAT(hub.InvalidateRangeStart(range), IsOk());
    opened.Notify();
    close.WaitFor(kBound);
    hub.InvalidateRangeEnd(range);
  });
  ASSERT_TRUE(opened.WaitFor(kBound));
  std::atomic<bool> registered{false};
  std::thread z([&] {
    ASSERT_THAT(hub.Register(late), IsOk());
    registered.store(true);
    registrar_done_or_waiting.Notify();
  });
  ASSERT_TRUE(registrar_done_or_waiting.WaitFor(kBound));
  EXPECT_FALSE(registered.load()) << "a registration completed inside an open window";
  close.Notify();
  y.join();
  z.join();

  EXPECT_EQ(late.pairing().ends, 0u) << "`late` got an end without its start";
  const PairingSummary s = hub.pairing_summary();
  ASSERT_EQ(s.violations, 1u) << s.ToString();  // X's end, reported at the hub
  EXPECT_EQ(s.first_violations[0].address, static_cast<const void*>(&hub));
  EXPECT_EQ(a.pairing().starts, a.pairing().ends);
  KvmLikeSubscription after("after");
  RunBounded("Register after the windows closed",
             [&] { ASSERT_THAT(hub.Register(after), IsOk()); });
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(late), IsOk());
  ASSERT_THAT(hub.Unregister(after), IsOk());
}

INSTANTIATE_TEST_SUITE_P(Slots, UnmatchedEndSlotTest, ::testing::Bool(),
                         [](const ::testing::TestParamInfo<bool>& param_info) {
                           return param_info.param ? std::string("Shared")
                                             : std::string("Exclusive");
                         });

// ---- The other rows of the lifetime table ----------------------------------------------

// Once Release() began, nothing can join the hub behind its walks.
TEST(LifetimeRuleTest, RegisterGetAndInsertFailOnceTeardownBegan) {
  PoisoningArena arena;
  PoisoningAllocator alloc(&arena,
                           [](PoisoningArena& a) { return MakeLogged(a, nullptr, "got"); });
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), late("late");
  MirrorInterval early(nullptr, "early"), late_interval(nullptr, "late");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(early.Insert(hub, 0, 0x1000), IsOk());
  absl::Status registered = absl::UnknownError("hook not run");
  absl::Status inserted = absl::UnknownError("hook not run");
  absl::StatusOr<Subscription*> got = absl::UnknownError("hook not run");
  HubHooks hooks;
  hooks.teardown_marked = [&] {
    registered = hub.Register(late);
    got = hub.Get(alloc);
    inserted = late_interval.Insert(hub, 0, 0x1000);
  };
  hub.SetHooksForTesting(std::move(hooks));

  hub.Release();
  EXPECT_THAT(registered, StatusIs(absl::StatusCode::kFailedPrecondition,
                                   HasSubstr("torn down")));
  EXPECT_THAT(got.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                     HasSubstr("torn down")));
  EXPECT_THAT(inserted, StatusIs(absl::StatusCode::kFailedPrecondition,
                                 HasSubstr("torn down")));
  EXPECT_EQ(alloc.allocs(), 0);
  EXPECT_EQ(a.releases(), 1);
  EXPECT_EQ(early.last_event(), Event::kRelease);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(early.Remove(), IsOk());
}

// A young-op callback that blocks until told, and checks on return that its subscription
// was not freed under it.
class BlockingYoung : public KvmLikeSubscription {
 public:
  BlockingYoung(Signal* entered, Signal* go, PoisoningArena* arena)
      : KvmLikeSubscription("blocking"), entered_(entered), go_(go), arena_(arena) {}
  bool ClearYoung(uint64_t, uint64_t) override {
    entered_->Notify();
    go_->WaitFor(kBound);
    frees_at_return_.store(arena_->frees());
    return false;
  }
  int frees_at_return() const { return frees_at_return_.load(); }

 private:
  Signal* entered_;
  Signal* go_;
  PoisoningArena* arena_;
  std::atomic<int> frees_at_return_{-1};
};

// FreeNotifier runs only after every op in flight on the subscription has returned.
TEST(LifetimeRuleTest, FreeNotifierWaitsForACallbackInFlight) {
  PoisoningArena arena;
  Signal entered, go, grace_period_waits;
  BlockingYoung* sub = nullptr;
  PoisoningAllocator alloc(&arena, [&](PoisoningArena& a) {
    sub = a.New<BlockingYoung>(&entered, &go, &a);
    return sub;
  });
  NotifierSubscriptions hub;
  HubHooks hooks;
  hooks.grace_period_waits = [&] { grace_period_waits.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  ASSERT_OK_AND_ASSIGN(Subscription * got, hub.Get(alloc));

  std::thread reader([&] { hub.ClearYoung(0, 0x1000); });
  ASSERT_TRUE(entered.WaitFor(kBound));
  std::thread owner([&] {
    ASSERT_THAT(hub.Put(*got), IsOk());
    hub.Synchronize();
  });
  ASSERT_TRUE(grace_period_waits.WaitFor(kBound));
  EXPECT_EQ(alloc.frees(), 0);
  go.Notify();
  reader.join();
  owner.join();
  EXPECT_EQ(alloc.frees(), 1);
  EXPECT_EQ(arena.late_calls(), 0) << arena.LateCallLog();
}

// The destructor waits for read-side sections in flight before freeing Get subscriptions.
TEST(LifetimeRuleTest, HubDestructionWaitsForAReaderInFlight) {
  PoisoningArena arena;
  Signal entered, go, grace_period_waits;
  BlockingYoung* sub = nullptr;
  PoisoningAllocator alloc(&arena, [&](PoisoningArena& a) {
    sub = a.New<BlockingYoung>(&entered, &go, &a);
    return sub;
  });
  auto hub = std::make_unique<NotifierSubscriptions>();
  NotifierSubscriptions* raw = hub.get();
  HubHooks hooks;
  hooks.grace_period_waits = [&] { grace_period_waits.Notify(); };
  hub->SetHooksForTesting(std::move(hooks));
  ASSERT_THAT(hub->Get(alloc).status(), IsOk());  // the destructor frees it

  std::thread reader([&] { raw->ClearYoung(0, 0x1000); });
  ASSERT_TRUE(entered.WaitFor(kBound));
  std::thread destroyer([&] { hub.reset(); });
  ASSERT_TRUE(grace_period_waits.WaitFor(kBound));
  EXPECT_EQ(alloc.frees(), 0);
  go.Notify();
  reader.join();
  destroyer.join();
  EXPECT_EQ(alloc.frees(), 1);
  EXPECT_EQ(arena.late_calls(), 0) << arena.LateCallLog();
}

// Remove while the release walk is inside the interval's Invalidate: Remove returns only
// after the walk's end, and no Invalidate runs after it returned.
TEST(LifetimeRuleTest, IntervalRemoveDuringTheReleaseWalkReturnsOnlyAfterIt) {
  class HookedInterval : public IntervalSubscription {
   public:
    bool Invalidate(const Range& range, uint64_t cur_seq) override {
      if (range.event == Event::kRelease && on_release) on_release();
      SetSeq(cur_seq);
      return true;
    }
    std::function<void()> on_release;
  };
  NotifierSubscriptions hub;
  HookedInterval m;
  ASSERT_THAT(m.Insert(hub, 0, 0x10000), IsOk());
  Signal remove_done_or_waiting;
  std::atomic<bool> removed{false};
  std::thread remover;
  HubHooks hooks;
  hooks.itree_waits = [&] { remove_done_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  m.on_release = [&] {
    remover = std::thread([&] {
      ASSERT_THAT(m.Remove(), IsOk());
      removed.store(true);
      remove_done_or_waiting.Notify();
    });
    ASSERT_TRUE(remove_done_or_waiting.WaitFor(kBound));
    EXPECT_FALSE(removed.load()) << "Remove returned while the walk was inside Invalidate";
  };

  hub.Release();
  remover.join();
  EXPECT_TRUE(removed.load());
  EXPECT_EQ(hub.interval_count(), 0u);
}

// A second Release (concurrent) returns only once the first has: no ->release after it.
// The first is held inside ->release; the second runs until it either returns (the bug)
// or reports that it waits for the first (HubHooks::release_waits).
TEST(LifetimeRuleTest, ASecondReleaseReturnsOnlyAfterTheFirst) {
  NotifierSubscriptions hub;
  Signal second_returned_or_waiting;
  std::atomic<bool> second_returned{false};
  std::atomic<int> releases_seen_by_second{-1};
  std::thread second;
  class Sub : public KvmLikeSubscription {
   public:
    Sub() : KvmLikeSubscription("a") {}
    void Release(NotifierSubscriptions& hub) override {
      if (on_release) on_release();
      KvmLikeSubscription::Release(hub);
    }
    std::function<void()> on_release;
  } sub;
  HubHooks hooks;
  hooks.release_waits = [&] { second_returned_or_waiting.Notify(); };
  hub.SetHooksForTesting(std::move(hooks));
  sub.on_release = [&] {
    second = std::thread([&] {
      hub.Release();
      releases_seen_by_second.store(sub.releases());
      second_returned.store(true);
      second_returned_or_waiting.Notify();
    });
    ASSERT_TRUE(second_returned_or_waiting.WaitFor(kBound))
        << "the second Release neither returned nor waited";
    EXPECT_FALSE(second_returned.load()) << "a second Release returned mid-teardown";
  };
  ASSERT_THAT(hub.Register(sub), IsOk());
  hub.Release();
  second.join();
  EXPECT_TRUE(second_returned.load());
  // The first ->release had returned by the time the second Release did.
  EXPECT_EQ(releases_seen_by_second.load(), 1);
  EXPECT_EQ(sub.releases(), 1);
  ASSERT_THAT(hub.Unregister(sub), IsOk());
}

// The checker records a ->release that comes too late.
TEST(LifetimeRuleTest, CheckerReportsAReleaseAfterUnregisterOrTeardown) {
  PairingChecker checker(/*enabled=*/true);
  NotifierSubscriptions hub;
  KvmLikeSubscription a("a"), b("b");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Unregister(a), IsOk());
  checker.OnRelease(a, /*teardown_returned=*/false);  // as a buggy teardown walk would
  checker.OnRelease(b, /*teardown_returned=*/true);   // as a buggy Unregister would
  const PairingSummary s = checker.Summary(PairingCounters{});
  ASSERT_EQ(s.violations, 2u) << s.ToString();
  EXPECT_EQ(s.first_violations[0].kind, ViolationKind::kCallbackAfterUnregister);
  EXPECT_EQ(s.first_violations[1].kind, ViolationKind::kCallbackAfterTeardown);
  EXPECT_EQ(s.first_violations[1].range.event, Event::kRelease);
}

}  // namespace
}  // namespace mmuvisor::notifier
