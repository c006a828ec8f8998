// tests/notifier/poisoning_arena.h: memory for subscriptions whose late use must be caught
// deterministically, not survived by luck.
//
// PoisoningArena::New<T>(args...) builds a subscription in a block the arena owns.
// Free(sub) runs its destructor and builds a Tombstone in the same block (the kernel's
// slab poisoning, made callable): the block's vtable now points at the tombstone, which
// declares every op, starts with released_ = false (so a teardown that still reaches it
// calls ->Release instead of skipping it) and records every call as a late call. The
// memory stays allocated until the arena dies, so a late call is a recorded failure with
// the subscription's old name, never a crash or a silent read of reused memory. Under
// TSan a late call also races with Free's construction of the tombstone, which TSan
// reports on its own.
//
// PoisoningAllocator is a SubscriptionAllocator (Get/Put) whose subscriptions live in an
// arena: FreeNotifier poisons instead of deleting.
//
// Threads: every method is thread-safe. The arena must outlive every hub that may still
// reach one of its blocks.
#ifndef MMUVISOR_TESTS_NOTIFIER_POISONING_ARENA_H_
#define MMUVISOR_TESTS_NOTIFIER_POISONING_ARENA_H_

#include <atomic>
#include <cstddef>
#include <cstdlib>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "notifier/hub.h"
#include "notifier/subscription.h"

namespace mmuvisor::notifier::testing {

class PoisoningArena {
 public:
  static constexpr size_t kBlockSize = 512;

  PoisoningArena() = default;
  PoisoningArena(const PoisoningArena&) = delete;
  PoisoningArena& operator=(const PoisoningArena&) = delete;
  ~PoisoningArena() {
    for (Block& block : blocks_) {
      std::launder(reinterpret_cast<Subscription*>(block.storage.get()))->~Subscription();
    }
  }

  template <typename T, typename... Args>
  T* New(Args&&... args) {
    static_assert(sizeof(T) <= kBlockSize, "grow PoisoningArena::kBlockSize");
    static_assert(alignof(T) <= alignof(std::max_align_t));
    auto storage = std::make_unique<Storage[]>(1);
    T* sub = new (storage.get()) T(std::forward<Args>(args)...);
    // Free builds the tombstone at the Subscription's address: it must be the block's.
    if (static_cast<void*>(static_cast<Subscription*>(sub)) != storage.get()) std::abort();
    std::lock_guard<std::mutex> lock(mu_);
    blocks_.push_back(Block{std::move(storage)});
    return sub;
  }

  // Destroys `sub` (built by New) and leaves a Tombstone in its block.
  void Free(Subscription* sub) {
    const std::string was = sub->name();
    sub->~Subscription();
    new (static_cast<void*>(sub)) Tombstone(this, was);
    frees_.fetch_add(1);
  }

  int frees() const { return frees_.load(); }
  int late_calls() const { return late_calls_.load(); }
  std::string LateCallLog() const {
    std::lock_guard<std::mutex> lock(mu_);
    return absl::StrJoin(late_log_, ", ");
  }

 private:
  struct alignas(std::max_align_t) Storage {
    unsigned char bytes[kBlockSize];
  };
  struct Block {
    std::unique_ptr<Storage[]> storage;
  };

  // Every op declared, every call recorded. ->Release is reachable because released_
  // starts false in the freshly built base.
  class Tombstone final : public Subscription {
   public:
    Tombstone(PoisoningArena* arena, const std::string& was)
        : Subscription({Op::kRelease, Op::kClearFlushYoung, Op::kClearYoung, Op::kTestYoung,
                        Op::kInvalidateRangeStart, Op::kInvalidateRangeEnd,
                        Op::kArchInvalidateSecondaryTlbs},
                       "freed:" + was),
          arena_(arena) {}
    void Release(NotifierSubscriptions&) override { Late("release"); }
    bool ClearFlushYoung(uint64_t, uint64_t) override { return Late("clear_flush_young"); }
    bool ClearYoung(uint64_t, uint64_t) override { return Late("clear_young"); }
    bool TestYoung(uint64_t) override { return Late("test_young"); }
    StartResult InvalidateRangeStart(const Range&) override {
      Late("invalidate_range_start");
      return StartResult::kOk;
    }
    void InvalidateRangeEnd(const Range&) override { Late("invalidate_range_end"); }
    void ArchInvalidateSecondaryTlbs(uint64_t, uint64_t) override {
      Late("arch_invalidate_secondary_tlbs");
    }

   private:
    bool Late(const char* op) {
      arena_->RecordLate(absl::StrCat(name(), ".", op));
      return false;
    }
    PoisoningArena* arena_;
  };
  static_assert(sizeof(Tombstone) <= kBlockSize);

  void RecordLate(std::string call) {
    late_calls_.fetch_add(1);
    std::lock_guard<std::mutex> lock(mu_);
    if (late_log_.size() < 16) late_log_.push_back(std::move(call));
  }

  mutable std::mutex mu_;
  std::vector<Block> blocks_;          // guarded by mu_
  std::vector<std::string> late_log_;  // guarded by mu_
  std::atomic<int> frees_{0};
  std::atomic<int> late_calls_{0};
};

// Get/Put subscriptions in an arena. `make` builds the subscription (in the arena).
class PoisoningAllocator : public SubscriptionAllocator {
 public:
  PoisoningAllocator(PoisoningArena* arena, std::function<Subscription*(PoisoningArena&)> make)
      : arena_(arena), make_(std::move(make)) {}
  absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(
      NotifierSubscriptions&) override {
    allocs_.fetch_add(1);
    return std::unique_ptr<Subscription>(make_(*arena_));
  }
  void FreeNotifier(std::unique_ptr<Subscription> sub) override {
    frees_.fetch_add(1);
    arena_->Free(sub.release());  // the block belongs to the arena, never deleted
  }
  int allocs() const { return allocs_.load(); }
  int frees() const { return frees_.load(); }

 private:
  PoisoningArena* arena_;
  std::function<Subscription*(PoisoningArena&)> make_;
  std::atomic<int> allocs_{0};
  std::atomic<int> frees_{0};
};

}  // namespace mmuvisor::notifier::testing

#endif  // MMUVISOR_TESTS_NOTIFIER_POISONING_ARENA_H_
