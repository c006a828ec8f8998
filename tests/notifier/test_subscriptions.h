// tests/notifier/test_subscriptions.h: subscriptions used by the notifier tests.
//
// KvmLikeSubscription models KVM's notifier: start raises in_progress, end bumps seq and
// lowers it (release order, as kvm_mmu_invalidate_end). FailingSubscription is the seed's
// B: start fails when non-blockable and it has no end. Recorder logs who was called, in
// order, for ordering tests.
#ifndef MMUVISOR_TESTS_NOTIFIER_TEST_SUBSCRIPTIONS_H_
#define MMUVISOR_TESTS_NOTIFIER_TEST_SUBSCRIPTIONS_H_

#include <atomic>
#include <string>
#include <utility>
#include <vector>

#include <mutex>
#include "absl/strings/str_cat.h"
#include "notifier/hub.h"
#include "notifier/interval_subscription.h"
#include "notifier/subscription.h"

namespace mmuvisor::notifier::testing {

// Thread-safe call log shared by several subscriptions.
class CallLog {
 public:
  void Add(std::string entry) {
    std::lock_guard<std::mutex> lock(mu_);
    entries_.push_back(std::move(entry));
  }
  std::vector<std::string> Take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(entries_, {});
  }

 private:
  std::mutex mu_;
  std::vector<std::string> entries_;  // guarded by mu_
};

class KvmLikeSubscription : public Subscription {
 public:
  explicit KvmLikeSubscription(std::string name, CallLog* log = nullptr)
      : Subscription(OpSet::KvmLike(), std::move(name)), log_(log) {}

  StartResult InvalidateRangeStart(const Range&) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name(), ".start"));
    // relaxed: the tests read these after joining threads.
    in_progress_.fetch_add(1, std::memory_order_relaxed);
    return StartResult::kOk;
  }
  void InvalidateRangeEnd(const Range&) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name(), ".end"));
    seq_.fetch_add(1, std::memory_order_relaxed);
    // release: pairs with the acquire in in_progress() (as KVM's wmb before the drop).
    in_progress_.fetch_sub(1, std::memory_order_release);
  }
  void Release(NotifierSubscriptions&) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name(), ".release"));
    releases_.fetch_add(1, std::memory_order_relaxed);
  }
  bool ClearFlushYoung(uint64_t, uint64_t) override { return young_.exchange(false); }
  bool ClearYoung(uint64_t, uint64_t) override { return young_.exchange(false); }
  bool TestYoung(uint64_t) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name(), ".test_young"));
    return young_.load();
  }

  void set_young(bool young) { young_.store(young); }
  int64_t in_progress() const { return in_progress_.load(std::memory_order_acquire); }
  uint64_t seq() const { return seq_.load(std::memory_order_relaxed); }
  int releases() const { return releases_.load(std::memory_order_relaxed); }

 private:
  CallLog* log_;
  std::atomic<int64_t> in_progress_{0};
  std::atomic<uint64_t> seq_{0};
  std::atomic<int> releases_{0};
  std::atomic<bool> young_{false};
};

// The seed's B: start fails (EAGAIN) whenever the range is non-blockable; no end.
class FailingSubscription : public Subscription {
 public:
  explicit FailingSubscription(std::string name, CallLog* log = nullptr)
      : Subscription({Op::kInvalidateRangeStart, Op::kStartMayFail, Op::kRelease},
                     std::move(name)),
        log_(log) {}
  StartResult InvalidateRangeStart(const Range& range) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name(), ".start"));
    starts_.fetch_add(1, std::memory_order_relaxed);
    return range.blockable ? StartResult::kOk : StartResult::kAgain;
  }
  int starts() const { return starts_.load(std::memory_order_relaxed); }

 private:
  CallLog* log_;
  std::atomic<int> starts_{0};
};

// An HMM-style mirror: Invalidate takes the user lock (trylock when non-blockable) and
// calls SetSeq under it.
class MirrorInterval : public IntervalSubscription {
 public:
  explicit MirrorInterval(CallLog* log = nullptr, std::string name = "mirror")
      : log_(log), name_(std::move(name)) {}
  bool Invalidate(const Range& range, uint64_t cur_seq) override {
    if (log_ != nullptr) log_->Add(absl::StrCat(name_, ".invalidate"));
    if (fail_nonblock_.load() && !range.blockable) return false;
    if (range.blockable) {
      user_lock.lock();
    } else if (!user_lock.try_lock()) {
      return false;
    }
    SetSeq(cur_seq);
    invalidations_.fetch_add(1, std::memory_order_relaxed);
    last_event_.store(static_cast<int>(range.event), std::memory_order_relaxed);
    user_lock.unlock();
    return true;
  }
  void set_fail_nonblock(bool fail) { fail_nonblock_.store(fail); }
  int invalidations() const { return invalidations_.load(std::memory_order_relaxed); }
  Event last_event() const {
    return static_cast<Event>(last_event_.load(std::memory_order_relaxed));
  }

  std::mutex user_lock;  // the driver's "user lock" (std::mutex: visible to TSan)

 private:
  CallLog* log_;
  std::string name_;
  std::atomic<bool> fail_nonblock_{false};
  std::atomic<int> invalidations_{0};
  std::atomic<int> last_event_{-1};
};

inline Range MakeRange(uint64_t start, uint64_t end, bool blockable = true,
                       Event event = Event::kUnmap) {
  return Range{start, end, event, blockable, nullptr};
}

}  // namespace mmuvisor::notifier::testing

#endif  // MMUVISOR_TESTS_NOTIFIER_TEST_SUBSCRIPTIONS_H_
