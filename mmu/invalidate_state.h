// InvalidateState: KVM's invalidation counters for one secondary MMU (struct kvm's
// mmu_invalidate_in_progress / mmu_invalidate_seq / mmu_invalidate_range_{start,end} and
// mn_active_invalidate_count), in our words.
//
// Invariants
//   - in_progress >= 0 always. An End() without a Begin() is a detected bug: it returns
//     kInternal and leaves the count at 0 (KVM would KVM_BUG_ON and kill the VM).
//   - seq only grows; End() bumps it *before* dropping in_progress (release), so a lockless
//     reader that sees the lower count also sees the new seq.
//   - While in_progress > 0, [range_start, range_end) is the union (min/max) of every range
//     added since in_progress last left 0; it persists until the last End (false positives
//     are allowed, false negatives are not).
//   - active_invalidations counts hub starts whose end has not run yet. Layout changes
//     (memslot updates) run only when it is 0, so start and end always see one layout.
//
// Locks
//   - The owner's MMU lock (passed to each call, checked by clang's analysis) guards every
//     write of in_progress/seq/range and the exact check RetryGfn().
//   - active_mu_ (KVM's mn_invalidate_lock) guards active_invalidations_.
//   - SnapshotSeq(), RetryUnsafe(), RetryGfnUnsafe() are lockless and callable from any
//     thread; they read atomics only.
#ifndef MMUVISOR_MMU_INVALIDATE_STATE_H_
#define MMUVISOR_MMU_INVALIDATE_STATE_H_

#include <atomic>
#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "mmu/types.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::mmu {

class InvalidateState {
 public:
  // `mmu_lock` is the lock of the MMU that owns this state; every locked call below must
  // be passed that same mutex (checked).
  explicit InvalidateState(const SharedMutex* mmu_lock) : mmu_lock_(mmu_lock) {}
  InvalidateState(const InvalidateState&) = delete;
  InvalidateState& operator=(const InvalidateState&) = delete;

  // --- Writer side: the subscription's start/end, under the MMU lock. -----------------

  // kvm_mmu_invalidate_begin: in_progress++; the first concurrent Begin resets the range
  // to "none added yet".
  void Begin(const SharedMutex& mmu_lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mmu_lock);

  // kvm_mmu_invalidate_range_add: widen the in-progress range to include [start, end).
  // Returns kFailedPrecondition (and changes nothing) if no Begin() is open or the range
  // is empty.
  absl::Status RangeAdd(const SharedMutex& mmu_lock, GfnRange range)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mmu_lock);

  // kvm_mmu_invalidate_end: seq++, then (release) in_progress--. Returns kInternal when
  // there was no open Begin (the count would go negative; it stays at 0), and kInternal
  // after ending when the window never added a range. Never silent.
  absl::Status End(const SharedMutex& mmu_lock) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mmu_lock);

  // --- Reader side: the fault path. ---------------------------------------------------

  // Snapshot of seq for a fault (fault->mmu_seq = kvm->mmu_invalidate_seq; smp_rmb()).
  // The acquire load pairs with the release increment of seq in End():
  // whatever the primary changed before an End() whose seq we read is visible to the
  // resolve that follows. Lockless.
  uint64_t SnapshotSeq() const;

  // mmu_invalidate_retry_gfn: true if a fault that snapshotted `snapshot` must not install
  // a mapping of `gfn`: an invalidation in progress covers gfn (or added no range yet), or
  // seq moved since the snapshot.
  bool RetryGfn(const SharedMutex& mmu_lock, uint64_t snapshot, Gfn gfn) const
      ABSL_SHARED_LOCKS_REQUIRED(mmu_lock);

  // mmu_invalidate_retry_gfn_unsafe: the same test without the lock. It has false
  // positives and false negatives, so it may only *add* retries: a false answer must
  // still be confirmed by RetryGfn() under the lock. Atomic loads, so a caller looping on
  // it always observes the 1 -> 0 transition of in_progress and cannot hang.
  bool RetryGfnUnsafe(uint64_t snapshot, Gfn gfn) const;

  // mmu_invalidate_retry: "in_progress != 0, or seq != snapshot", without range or lock.
  // The acquire load of in_progress pairs with the release decrement in End(): a reader
  // that sees the lowered count also sees the bumped seq. Used by lockless accessors to
  // validate a read made through a translation taken after `snapshot`; REQUIRES: the data
  // loads being validated come before this call (it issues the acquire fence that pairs
  // with the release fence in Begin()/RangeAdd()).
  bool RetryUnsafe(uint64_t snapshot) const;

  // Like RetryUnsafe, but only an in-progress range covering `gfn` counts (seq must still
  // not have moved).
  bool AccessRetry(uint64_t snapshot, Gfn gfn) const;

  int64_t in_progress() const { return in_progress_.load(std::memory_order_acquire); }
  uint64_t seq() const { return seq_.load(std::memory_order_acquire); }
  // Number of bugs End()/RangeAdd() reported (negative count, missing range, ...).
  uint64_t bugs() const { return bugs_.load(std::memory_order_relaxed); }

  // --- Active invalidations (mn_active_invalidate_count). -----------------------------

  // Called at the very top of the subscription's start, before any layout lookup.
  void ActiveInvalidationBegin() ABSL_LOCKS_EXCLUDED(active_mu_);
  // Called at the very end of the subscription's end. kInternal if there was no begin.
  absl::Status ActiveInvalidationEnd() ABSL_LOCKS_EXCLUDED(active_mu_);
  int64_t active_invalidations() const ABSL_LOCKS_EXCLUDED(active_mu_);

  // kvm_swap_active_memslots: waits until no invalidation is active, then runs `publish`
  // while holding active_mu_, so no start can begin until the new layout is in place.
  // Unlike KVM, which would wait for ever, it gives up after `timeout` (a start whose end
  // never comes: the legacy policy's leak) and returns false without publishing.
  // May sleep. REQUIRES: not called from inside a start/end callback (it would wait for
  // itself).
  bool UpdateLayout(absl::FunctionRef<void()> publish, absl::Duration timeout)
      ABSL_LOCKS_EXCLUDED(active_mu_);
  // UpdateLayout calls that found an invalidation active and had to wait (statistics;
  // also how a test knows an update is waiting).
  uint64_t layout_waits() const { return layout_waits_.load(std::memory_order_relaxed); }

 private:
  static constexpr Gfn kNoRange = ~Gfn{0};

  void CheckLock(const SharedMutex& mmu_lock) const;

  [[maybe_unused]] const SharedMutex* const mmu_lock_;  // only asserted on (NDEBUG drops it)
  // Written only under *mmu_lock_; read locklessly through atomics.
  std::atomic<int64_t> in_progress_{0};
  std::atomic<uint64_t> seq_{0};
  std::atomic<Gfn> range_start_{kNoRange};
  std::atomic<Gfn> range_end_{kNoRange};
  std::atomic<uint64_t> bugs_{0};
  std::atomic<uint64_t> layout_waits_{0};

  mutable Mutex active_mu_;
  int64_t active_invalidations_ ABSL_GUARDED_BY(active_mu_) = 0;
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_INVALIDATE_STATE_H_
