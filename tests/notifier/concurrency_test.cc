// Concurrency: invalidators (blockable and not, nested sometimes) race with registration,
// unregistration, Get/Put, interval insert/remove and ReadBegin/ReadRetry readers.
// Afterwards the pairing checker must report no violation and every count that stayed
// registered must be back at zero. Runs under TSan in CI (label `concurrency`).
#include <linux/filter.h>
#include <linux/membarrier.h>
#include <linux/seccomp.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>

#include <atomic>
#include <cstdio>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/hub.h"
#include "notifier/thread_shard.h"
#include "support/status_matchers.h"
#include "test_subscriptions.h"

namespace mmuvisor::notifier {
namespace {

using ::mmuvisor::testing::IsOk;
using testing::FailingSubscription;
using testing::KvmLikeSubscription;
using testing::MirrorInterval;

constexpr uint64_t kSpace = 1 << 20;

Range RandomRange(std::mt19937_64& rng, bool blockable) {
  const uint64_t start = (rng() % (kSpace / 4096)) * 4096;
  const uint64_t len = (1 + rng() % 16) * 4096;
  return Range{start, start + len, static_cast<Event>(rng() % 8), blockable, nullptr};
}

class KvmAllocator : public SubscriptionAllocator {
 public:
  absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(NotifierSubscriptions&) override {
    return std::make_unique<KvmLikeSubscription>("got");
  }
};

class ConcurrencyTest : public ::testing::TestWithParam<Policy> {};

TEST_P(ConcurrencyTest, StormKeepsEveryWindowPaired) {
  KvmAllocator allocator;
  NotifierSubscriptions hub({.policy = GetParam()});
  KvmLikeSubscription a("A"), c("C");
  FailingSubscription b("B");
  ASSERT_THAT(hub.Register(a), IsOk());
  ASSERT_THAT(hub.Register(b), IsOk());
  ASSERT_THAT(hub.Register(c), IsOk());
  MirrorInterval reader_mirror(nullptr, "reader");
  ASSERT_THAT(reader_mirror.Insert(hub, 0, kSpace), IsOk());

  constexpr int kInvalidators = 2;
  constexpr int kOpsPerInvalidator = 1500;
  std::atomic<int> invalidators_done{0};
  std::atomic<uint64_t> successes{0}, eagain{0};
  std::vector<std::thread> threads;

  for (int t = 0; t < kInvalidators; ++t) {
    threads.emplace_back([&, t] {
      std::mt19937_64 rng(1000 + t);
      for (int i = 0; i < kOpsPerInvalidator; ++i) {
        const Range outer = RandomRange(rng, rng() % 2 == 0);
        // EXPECT, never ASSERT, in the workers: a failure must not leave a window open
        // (the registrar would wait for it for ever) or skip invalidators_done.
        absl::Status s = hub.InvalidateRangeStart(outer);
        if (!s.ok()) {
          EXPECT_EQ(s.code(), absl::StatusCode::kUnavailable) << s;
          eagain.fetch_add(1);
          continue;
        }
        successes.fetch_add(1);
        if (rng() % 4 == 0) {  // a nested window inside the outer one
          const Range inner = RandomRange(rng, true);
          const absl::Status in = hub.InvalidateRangeStart(inner);
          EXPECT_THAT(in, IsOk());
          if (in.ok()) hub.InvalidateRangeEnd(inner);
        }
        if (rng() % 8 == 0) hub.ClearYoung(outer.start, outer.end);
        hub.InvalidateRangeEnd(outer);
      }
      invalidators_done.fetch_add(1);
    });
  }
  auto running = [&] { return invalidators_done.load() < kInvalidators; };

  threads.emplace_back([&] {  // registrar: register/unregister and get/put
    std::mt19937_64 rng(7);
    while (running()) {
      KvmLikeSubscription extra("extra");
      ASSERT_THAT(hub.Register(extra), IsOk());
      ASSERT_OK_AND_ASSIGN(Subscription * got, hub.Get(allocator));
      if (rng() % 2 == 0) hub.TestYoung(rng() % kSpace);
      ASSERT_THAT(hub.Put(*got), IsOk());
      ASSERT_THAT(hub.Unregister(extra), IsOk());
      if (rng() % 4 == 0) hub.Synchronize();
    }
  });
  threads.emplace_back([&] {  // interval churn
    std::mt19937_64 rng(11);
    while (running()) {
      MirrorInterval m(nullptr, "churn");
      const uint64_t start = (rng() % (kSpace / 4096)) * 4096;
      ASSERT_THAT(m.Insert(hub, start, (1 + rng() % 8) * 4096), IsOk());
      if (rng() % 2 == 0) std::this_thread::yield();
      ASSERT_THAT(m.Remove(), IsOk());
    }
  });
  std::atomic<uint64_t> reads{0}, retries{0};
  threads.emplace_back([&] {  // the mirror's fault path (may starve while the storm
                              // keeps seq odd; it goes on until it has done some work)
    while (running() || reads.load() + retries.load() < 100) {
      const uint64_t seq = reader_mirror.ReadBegin();
      std::lock_guard<std::mutex> lock(reader_mirror.user_lock);
      if (reader_mirror.ReadRetry(seq)) {
        retries.fetch_add(1);
      } else {
        reads.fetch_add(1);
      }
    }
  });
  for (std::thread& t : threads) t.join();

  ASSERT_THAT(reader_mirror.Remove(), IsOk());
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.violations, 0u) << s.ToString();
  EXPECT_EQ(a.in_progress(), 0);
  EXPECT_EQ(c.in_progress(), 0);
  EXPECT_EQ(s.open, 0) << s.ToString();
  EXPECT_EQ(a.pairing().starts, a.pairing().ends);
  EXPECT_EQ(hub.active_invalidate_ranges(), 0u);
  EXPECT_EQ(hub.invalidate_seq() % 2, 0u);
  EXPECT_GT(successes.load(), 0u);
  EXPECT_GT(eagain.load(), 0u);  // B fails every non-blockable start
  EXPECT_GT(reads.load() + retries.load(), 0u);
  ASSERT_THAT(hub.Unregister(a), IsOk());
  ASSERT_THAT(hub.Unregister(b), IsOk());
  ASSERT_THAT(hub.Unregister(c), IsOk());
}

// More threads than exclusive counter slots (thread_shard.h): the extra ones share slots
// and use read-modify-writes; windows must stay paired while a registrar closes the gate
// and runs grace periods. All threads are alive at once, so some must share.
TEST(ThreadSlotTest, ThreadsBeyondTheExclusiveSlotsStayPaired) {
  NotifierSubscriptions hub;
  KvmLikeSubscription a("A");
  ASSERT_THAT(hub.Register(a), IsOk());
  constexpr int kThreads = internal::kExclusiveSlots + 16;
  std::atomic<int> arrived{0}, shared_slots{0}, done{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      if (internal::ThreadSlot() >= internal::kExclusiveSlots) shared_slots.fetch_add(1);
      arrived.fetch_add(1);
      while (arrived.load() < kThreads) std::this_thread::yield();  // all hold a slot
      std::mt19937_64 rng(500 + t);
      // EXPECT, never ASSERT: a worker must end its windows and count itself done, or
      // the registrations below would wait for ever.
      for (int i = 0; i < 200; ++i) {
        const Range outer = RandomRange(rng, true);
        const absl::Status out = hub.InvalidateRangeStart(outer);
        EXPECT_THAT(out, IsOk());
        if (!out.ok()) continue;
        if (i % 5 == 0) {
          const Range inner = RandomRange(rng, true);
          const absl::Status in = hub.InvalidateRangeStart(inner);
          EXPECT_THAT(in, IsOk());
          if (in.ok()) hub.InvalidateRangeEnd(inner);
        }
        hub.InvalidateRangeEnd(outer);
      }
      done.fetch_add(1);
    });
  }
  int registrations = 0;
  while (done.load() < kThreads || registrations < 5) {
    KvmLikeSubscription extra("extra");
    ASSERT_THAT(hub.Register(extra), IsOk());
    std::this_thread::yield();
    ASSERT_THAT(hub.Unregister(extra), IsOk());  // release, unlink, grace period
    ++registrations;
  }
  for (std::thread& t : threads) t.join();
  EXPECT_GT(shared_slots.load(), 0) << "no thread landed on a shared slot";
  const PairingSummary s = hub.pairing_summary();
  EXPECT_EQ(s.violations, 0u) << s.ToString();
  EXPECT_EQ(s.open, 0) << s.ToString();
  EXPECT_EQ(a.in_progress(), 0);
  EXPECT_EQ(a.pairing().starts, a.pairing().ends);
  ASSERT_THAT(hub.Unregister(a), IsOk());
}

// An exclusive slot goes back to the pool when its thread exits.
TEST(ThreadSlotTest, AnExitedThreadsSlotIsReused) {
  internal::ThreadSlot();  // this thread's own slot is taken before the others
  int first = -1, second = -2;
  std::thread([&] { first = internal::ThreadSlot(); }).join();
  std::thread([&] { second = internal::ThreadSlot(); }).join();
  ASSERT_LT(first, internal::kExclusiveSlots);
  EXPECT_EQ(first, second);
}

// The membarrier registration ran at load, before main (thread_shard.h): with one thread,
// the kernel registers without waiting for an RCU grace period, so no hub construction
// pays for it later. `ready` follows the kernel's support.
TEST(AsymmetricFenceTest, MembarrierIsRegisteredAtLoad) {
  const internal::FenceRegistration r = internal::AsymmetricFenceRegistration();
  EXPECT_TRUE(r.at_load) << "registered on first use instead of at load";
  const long cmds = syscall(__NR_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
  const bool supported = cmds >= 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) != 0;
  EXPECT_EQ(r.ready, supported);
  EXPECT_EQ(internal::membarrier_ready.load(), r.ready);
  std::printf("membarrier registration at load: ready=%d, %lld ns\n", r.ready,
              static_cast<long long>(r.ns));
}

// Makes every membarrier call of this process fail with `err` (a seccomp filter; for
// death-test children only: it cannot be removed).
bool FailMembarrierWith(int err) {
  struct sock_filter filter[] = {
      BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
      BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_membarrier, 0, 1),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | static_cast<unsigned>(err)),
      BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
  };
  struct sock_fprog prog = {static_cast<unsigned short>(sizeof(filter) / sizeof(filter[0])),
                            filter};
  return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 &&
         prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0;
}

// Whether this process may install such a filter (a container may forbid seccomp): tried
// in a child, which exits at once.
bool SeccompFilterWorks() {
  const pid_t pid = fork();
  if (pid == 0) std::_Exit(FailMembarrierWith(EPERM) ? 0 : 1);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid) return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

// Once registered, the readers' compiler barrier relies on membarrier: a failing call
// must not be replaced by a fence of the writer's own (that orders nothing on the
// readers' CPUs). A transient error is retried, then both kinds abort with the errno.
TEST(AsymmetricFenceDeathTest, AFailingMembarrierAfterRegistrationAborts) {
  if (!internal::AsymmetricFenceRegistration().ready) {
    GTEST_SKIP() << "membarrier not registered: HeavyFence uses a full fence by design";
  }
  if (!SeccompFilterWorks()) GTEST_SKIP() << "no seccomp filter here: membarrier cannot be failed";
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  for (int err : {ENOMEM, EPERM}) {
    EXPECT_DEATH(
        {
          if (!FailMembarrierWith(err)) std::_Exit(2);  // no seccomp: no death message
          internal::HeavyFence();
        },
        absl::StrCat("membarrier.*failed after its registration.*errno ", err))
        << "errno " << err;
  }
}

INSTANTIATE_TEST_SUITE_P(PairedPolicies, ConcurrencyTest,
                         ::testing::Values(Policy::kUpstream, Policy::kSortedEndLast),
                         [](const ::testing::TestParamInfo<Policy>& param_info) {
                           return std::string(PolicyName(param_info.param)).substr(1);
                         });

}  // namespace
}  // namespace mmuvisor::notifier
