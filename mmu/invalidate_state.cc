// InvalidateState: the machinery. The protocol and its timeline are in mmu/README.md.
#include "mmu/invalidate_state.h"

#include <cassert>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::mmu {

void InvalidateState::CheckLock(const SharedMutex& mmu_lock) const {
  // Programmer bug: the caller passed some other mutex than the MMU's own.
  assert(&mmu_lock == mmu_lock_);
  (void)mmu_lock;
}

void InvalidateState::Begin(const SharedMutex& mmu_lock) {
  CheckLock(mmu_lock);
  mmu_lock.AssertHeld();
  const int64_t count = in_progress_.load(std::memory_order_relaxed) + 1;
  in_progress_.store(count, std::memory_order_relaxed);
  if (count == 1) {
    // release: pairs with the acquire loads of the range in AccessRetry() (see there).
    range_start_.store(kNoRange, std::memory_order_release);
    range_end_.store(kNoRange, std::memory_order_release);
  }
  // Pairs with the acquire fence in RetryUnsafe()/AccessRetry(): a lockless accessor that
  // reads data the primary wrote after this start returned also sees in_progress > 0.
  std::atomic_thread_fence(std::memory_order_release);
}

absl::Status InvalidateState::RangeAdd(const SharedMutex& mmu_lock, GfnRange range) {
  CheckLock(mmu_lock);
  mmu_lock.AssertHeld();
  if (in_progress_.load(std::memory_order_relaxed) <= 0) {
    bugs_.fetch_add(1, std::memory_order_relaxed);
    return absl::FailedPreconditionError(
        absl::StrCat("InvalidateState::RangeAdd [", range.start, ", ", range.end,
                     "): no invalidation in progress (missing Begin)"));
  }
  if (range.empty()) {
    bugs_.fetch_add(1, std::memory_order_relaxed);
    return absl::FailedPreconditionError(absl::StrCat(
        "InvalidateState::RangeAdd [", range.start, ", ", range.end, "): empty range"));
  }
  // release: pairs with the acquire loads of the range in AccessRetry() (see there).
  const Gfn start = range_start_.load(std::memory_order_relaxed);
  if (start == kNoRange) {
    range_start_.store(range.start, std::memory_order_release);
    range_end_.store(range.end, std::memory_order_release);
  } else {
    if (range.start < start) range_start_.store(range.start, std::memory_order_release);
    if (range.end > range_end_.load(std::memory_order_relaxed)) {
      range_end_.store(range.end, std::memory_order_release);
    }
  }
  // Pairs with the acquire fence in RetryUnsafe()/AccessRetry() (see Begin()).
  std::atomic_thread_fence(std::memory_order_release);
  return absl::OkStatus();
}

absl::Status InvalidateState::End(const SharedMutex& mmu_lock) {
  CheckLock(mmu_lock);
  mmu_lock.AssertHeld();
  const int64_t count = in_progress_.load(std::memory_order_relaxed);
  if (count <= 0) {
    bugs_.fetch_add(1, std::memory_order_relaxed);
    return absl::InternalError(absl::StrCat(
        "InvalidateState::End: in_progress would become ", count - 1,
        " (end without begin); seq=", seq_.load(std::memory_order_relaxed)));
  }
  const bool had_range = range_start_.load(std::memory_order_relaxed) != kNoRange;
  // seq++ first. Release pairs with the acquire fence in SnapshotSeq(): a fault that reads
  // the new seq also sees every primary change made before this End.
  seq_.store(seq_.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  // smp_wmb(); in_progress--. Release pairs with the acquire load of in_progress in
  // RetryUnsafe()/RetryGfnUnsafe()/AccessRetry(): whoever sees the lower count sees the
  // new seq, so a fault can never pass both checks across this End.
  in_progress_.store(count - 1, std::memory_order_release);
  if (!had_range) {
    bugs_.fetch_add(1, std::memory_order_relaxed);
    return absl::InternalError(absl::StrCat(
        "InvalidateState::End: invalidation window added no range (seq now ",
        seq_.load(std::memory_order_relaxed), ")"));
  }
  return absl::OkStatus();
}

uint64_t InvalidateState::SnapshotSeq() const {
  // smp_rmb() after the read, as an acquire load (same ordering for this one load, and
  // visible to TSan, which does not model fences). Pairs with the release store of seq
  // in End(): the resolve that follows cannot observe primary state older than the End
  // whose seq we read.
  return seq_.load(std::memory_order_acquire);
}

bool InvalidateState::RetryGfn(const SharedMutex& mmu_lock, uint64_t snapshot,
                               Gfn gfn) const {
  CheckLock(mmu_lock);
  mmu_lock.AssertReaderHeld();
  // Under the MMU lock every writer is excluded: relaxed loads see the latest values.
  if (in_progress_.load(std::memory_order_relaxed) > 0) {
    const Gfn start = range_start_.load(std::memory_order_relaxed);
    // Begin without RangeAdd is a bug in the caller (KVM: WARN_ON_ONCE); be safe: retry.
    if (start == kNoRange) return true;
    if (gfn >= start && gfn < range_end_.load(std::memory_order_relaxed)) return true;
  }
  return seq_.load(std::memory_order_relaxed) != snapshot;
}

bool InvalidateState::RetryGfnUnsafe(uint64_t snapshot, Gfn gfn) const {
  // The range bounds may be stale (a false negative); the locked RetryGfn() catches it.
  // What matters for liveness is that in_progress and seq are re-read every call.
  if (in_progress_.load(std::memory_order_acquire) > 0 &&
      gfn >= range_start_.load(std::memory_order_relaxed) &&
      gfn < range_end_.load(std::memory_order_relaxed)) {
    return true;
  }
  return seq_.load(std::memory_order_relaxed) != snapshot;
}

bool InvalidateState::RetryUnsafe(uint64_t snapshot) const {
  // Pairs with the release fences in Begin()/RangeAdd(): data loads before this fence that
  // saw a primary write made after a start imply we see that start's count below.
  std::atomic_thread_fence(std::memory_order_acquire);
  // Acquire pairs with the release decrement in End(): a lowered count implies new seq.
  if (in_progress_.load(std::memory_order_acquire) != 0) return true;
  return seq_.load(std::memory_order_relaxed) != snapshot;
}

bool InvalidateState::AccessRetry(uint64_t snapshot, Gfn gfn) const {
  // Same pairings as RetryUnsafe(), and one more for the range. The count we read may be
  // a later window's (W2) while the copy we validate was changed under an earlier one
  // (W1, covering gfn, since ended). A range bound of W2 that does not cover gfn must then
  // not be trusted next to a seq read before W1's end: acquire on the bounds (pairing
  // with their release stores, which come after W1's End under the MMU lock) makes the
  // seq load below see W1's bump. x86 orders loads anyway; ARM64 and POWER need it.
  std::atomic_thread_fence(std::memory_order_acquire);
  if (in_progress_.load(std::memory_order_acquire) != 0) {
    const Gfn start = range_start_.load(std::memory_order_acquire);
    if (start == kNoRange) return true;
    if (gfn >= start && gfn < range_end_.load(std::memory_order_acquire)) return true;
  }
  return seq_.load(std::memory_order_relaxed) != snapshot;
}

void InvalidateState::ActiveInvalidationBegin() {
  MutexLock lock(&active_mu_);
  ++active_invalidations_;
}

absl::Status InvalidateState::ActiveInvalidationEnd() {
  MutexLock lock(&active_mu_);
  if (active_invalidations_ <= 0) {
    bugs_.fetch_add(1, std::memory_order_relaxed);
    return absl::InternalError(
        absl::StrCat("InvalidateState::ActiveInvalidationEnd: active count would become ",
                     active_invalidations_ - 1, " (end without start)"));
  }
  --active_invalidations_;  // UpdateLayout() polls for 0.
  return absl::OkStatus();
}

int64_t InvalidateState::active_invalidations() const {
  MutexLock lock(&active_mu_);
  return active_invalidations_;
}

bool InvalidateState::UpdateLayout(absl::FunctionRef<void()> publish, absl::Duration timeout) {
  // KVM sleeps on an rcuwait that the last end wakes. We poll (layout changes are rare),
  // which keeps ActiveInvalidationEnd() free of wake-ups. Like KVM, a storm of starts can
  // delay the update.
  const absl::Time give_up = absl::Now() + timeout;
  for (bool waited = false;; waited = true) {
    {
      MutexLock lock(&active_mu_);
      if (active_invalidations_ == 0) {
        publish();  // under active_mu_: no start can begin until the layout is in place
        return true;
      }
    }
    if (!waited) layout_waits_.fetch_add(1, std::memory_order_relaxed);
    if (absl::Now() >= give_up) return false;
    absl::SleepFor(absl::Microseconds(20));
  }
}

}  // namespace mmuvisor::mmu
