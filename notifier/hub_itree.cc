// The interval half of the hub (Linux mn_itree_*): the invalidate_seq write side, the
// deferred insert/remove list, ReadBegin's wait. The protocol is in the README.
#include <cassert>
#include <vector>

#include "absl/strings/str_format.h"
#include "notifier/hub.h"

namespace mmuvisor::notifier {
void NotifierSubscriptions::EnsureItree() {
  // acquire: pairs with the release below.
  if (has_itree_.load(std::memory_order_acquire)) return;
  // link_mu_, not reg_mu_: the wait for open windows below blocks only other closers.
  MutexLock lock(&link_mu_);
  if (has_itree_.load(std::memory_order_acquire)) return;
  // Linux sets has_itree under mm_take_all_locks: a window that began without the
  // interval part must not end with it, so flip it with no window open.
  gate_.Close();
  // release: pairs with the acquire loads in InvalidateRangeStart/End.
  has_itree_.store(true, std::memory_order_release);
  gate_.Open();
}

bool NotifierSubscriptions::ItreeStart(const Range& range, bool release_walk) {
  uint64_t cur_seq;
  // One walk: the first overlap is found under itree_mu_ (it decides whether we become
  // a writer), and the walk continues from it after the lock is dropped.
  IntervalTree::Cursor cursor;
  bool overlap;
  {
    MutexLock lock(&itree_mu_);
    ++active_invalidate_ranges_;
    // From here every interval that enters the tree missed the release walk.
    if (release_walk) itree_released_ = true;
    overlap = itree_.First(range.start, range.end - 1, &cursor);
    // An overlapping writer freezes the tree and makes ReadBegin wait: seq |= 1.
    if (overlap) invalidate_seq_ |= 1;
    cur_seq = invalidate_seq_;
  }
  if (!overlap) return true;  // "partially excluded": no end work needed

  // The tree is frozen while invalidate_seq_ is odd (inserts and removes are deferred
  // until the last end, which cannot come before our own ItreeEnd), so the cursor is
  // advanced without itree_mu_; the lock acquisition above orders every earlier mutation
  // before this walk.
  auto next = [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return itree_.Next(&cursor); };
  do {
    if (cursor.sub()->Invalidate(range, cur_seq)) continue;
    // false is legal only for a non-blockable range; Linux WARNs and goes on otherwise.
    if (!range.blockable) {
      ItreeEnd();  // undo our own accounting before reporting EAGAIN (Linux does the same)
      return false;
    }
  } while (next());
  return true;
}

void NotifierSubscriptions::ItreeEnd() {
  std::vector<IntervalSubscription*> missed;  // entered after the release walk
  uint64_t cur_seq;
  {
    MutexLock lock(&itree_mu_);
    assert(active_invalidate_ranges_ > 0 && "ItreeEnd without ItreeStart");
    if (--active_invalidate_ranges_ != 0 || (invalidate_seq_ & 1) == 0) return;
    // The last writer: seq becomes even, the tree thaws, deferred work runs, and waiters
    // in ReadBegin/Remove wake (they re-check under itree_mu_).
    ++invalidate_seq_;
    itree_wq_.notify_all();
    while (deferred_head_ != nullptr) {
      IntervalSubscription* sub = deferred_head_;
      const IntervalSubscription::Deferred what = sub->deferred_;
      UndeferLocked(*sub);
      if (what == IntervalSubscription::Deferred::kInsert) {
        TreeInsertLocked(*sub);
        if (itree_released_) missed.push_back(sub);
      } else {
        TreeRemoveLocked(*sub);
      }
    }
    if (ABSL_PREDICT_TRUE(missed.empty())) return;
    // Inserts deferred before teardown's dying mark that enter the tree after its
    // release walk (Insert refuses new ones): no interval may escape its release, so
    // they get one now. Become a writer again in the same lock hold, so nobody sees them
    // thawed in between: active 1, seq odd and new (waiters for the old seq wake).
    active_invalidate_ranges_ = 1;
    invalidate_seq_ |= 1;
    cur_seq = invalidate_seq_;
  }
  // Frozen again: a Remove of one of them is deferred and waits for the end below.
  // Blockable, whatever the caller's range: the last end may be a non-blockable caller's
  // (its own end, or the undo of its failed ItreeStart), which then runs this blockable
  // kRelease invalidation on its thread and may sleep in it. A non-blockable one could
  // fail, and the interval would escape its release. Documented in the README
  // ("Decisions where Linux does not decide for us").
  const Range release{0, UINT64_MAX, Event::kRelease, /*blockable=*/true, nullptr};
  for (IntervalSubscription* sub : missed) sub->Invalidate(release, cur_seq);
  ItreeEnd();  // nothing can be deferred for insert any more: no third round
}

void NotifierSubscriptions::TreeInsertLocked(IntervalSubscription& sub) {
  itree_.Insert(sub.start_, sub.last_, &sub);
  sub.in_tree_ = true;
}

void NotifierSubscriptions::TreeRemoveLocked(IntervalSubscription& sub) {
  itree_.Remove(sub.start_, &sub);
  sub.in_tree_ = false;
}

void NotifierSubscriptions::DeferLocked(IntervalSubscription& sub) {
  sub.deferred_prev_ = nullptr;
  sub.deferred_next_ = deferred_head_;
  if (deferred_head_ != nullptr) deferred_head_->deferred_prev_ = &sub;
  deferred_head_ = &sub;
}

void NotifierSubscriptions::UndeferLocked(IntervalSubscription& sub) {
  if (sub.deferred_prev_ != nullptr) {
    sub.deferred_prev_->deferred_next_ = sub.deferred_next_;
  } else {
    deferred_head_ = sub.deferred_next_;
  }
  if (sub.deferred_next_ != nullptr) sub.deferred_next_->deferred_prev_ = sub.deferred_prev_;
  sub.deferred_next_ = sub.deferred_prev_ = nullptr;
  sub.deferred_ = IntervalSubscription::Deferred::kNone;
}

absl::Status NotifierSubscriptions::IntervalInsert(IntervalSubscription& sub, uint64_t start,
                                                   uint64_t length) {
  // The interval's end, start + length, must be a 64-bit value, as every Range's is: an
  // interval reaching the address 2^64 - 1 would hold a byte that no invalidation, not
  // even teardown's [0, 2^64 - 1), can cover.
  if (length == 0 || length > UINT64_MAX - start) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "interval insert start=%#x length=%#x: %s", start, length,
        length == 0 ? "empty"
                    : "wraps around the address space (its end, start + length, must be "
                      "at most 2^64 - 1, as a Range's)"));
  }
  if (sub.hub_ != nullptr) {
    return absl::FailedPreconditionError(
        absl::StrFormat("interval insert start=%#x length=%#x: already inserted", start,
                        length));
  }
  if (torn_down()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "interval insert start=%#x length=%#x: the address space was torn down", start,
        length));
  }
  EnsureItree();
  MutexLock lock(&itree_mu_);
  // The dying mark is set under itree_mu_ before teardown's release walk: an insert that
  // passes this test is in the tree or deferred before the walk, which waits for deferred
  // inserts; one that comes later would never be invalidated. (Linux cannot meet this
  // case: insert needs an mmget and exit_mmap runs at mm_users == 0.)
  if (itree_dying_) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "interval insert start=%#x length=%#x: the address space is being torn down",
        start, length));
  }
  sub.start_ = start;
  sub.last_ = start + (length - 1);
  // relaxed (the stores of invalidate_seq_ below): the sub is not yet visible to
  // Invalidate; its owner reads it under itree_mu_ or after Insert returns.
  if (active_invalidate_ranges_ != 0) {
    if ((invalidate_seq_ & 1) != 0) {
      // Fully excluded: the tree is frozen; insert at the last end. ReadBegin waits
      // until then because our seq equals the hub's.
      sub.deferred_ = IntervalSubscription::Deferred::kInsert;
      DeferLocked(sub);
    } else {
      // Partially excluded: no walk is running, but an open range may cover us and we
      // were not told. Become a writer so ReadBegin waits for the last end.
      invalidate_seq_ |= 1;
      TreeInsertLocked(sub);
    }
    sub.invalidate_seq_.store(invalidate_seq_, std::memory_order_relaxed);
  } else {
    // Idle: an odd seq that differs from the hub's and will not come round soon.
    sub.invalidate_seq_.store(invalidate_seq_ - 1, std::memory_order_relaxed);
    TreeInsertLocked(sub);
  }
  sub.hub_ = this;
  return absl::OkStatus();
}

void NotifierSubscriptions::IntervalRemove(IntervalSubscription& sub) {
  uint64_t wait_from = 0;
  {
    MutexLock lock(&itree_mu_);
    if ((invalidate_seq_ & 1) != 0) {
      if (!sub.in_tree_) {
        // Its insert is still deferred: cancel it; no walk can have seen it. Wake a
        // teardown waiting for deferred inserts (ItreeRelease).
        UndeferLocked(sub);
        itree_wq_.notify_all();
      } else {
        sub.deferred_ = IntervalSubscription::Deferred::kRemove;
        DeferLocked(sub);
        wait_from = invalidate_seq_;
      }
    } else {
      TreeRemoveLocked(sub);
    }
  }
  if (wait_from != 0) {
    if (hooks_ != nullptr && hooks_->itree_waits) hooks_->itree_waits();
    // Wait for the last end: it removes us, and no walk (teardown's release walk
    // included) can be running on us after. The seq only grows, so a move between the
    // two lock holds is seen here.
    MutexLock lock(&itree_mu_);
    itree_mu_.Await(itree_wq_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return invalidate_seq_ != wait_from;  // itree_mu_ is held inside Await
    });
  }
  sub.hub_ = nullptr;
}

void NotifierSubscriptions::ItreeRelease() {
  // acquire: pairs with the release in EnsureItree. An Insert that passed the dying test
  // ran EnsureItree first, and its itree_mu_ hold came before the one that set the mark,
  // which came before this load: it sees has_itree_.
  if (!has_itree_.load(std::memory_order_acquire)) return;
  // An insert deferred before the dying mark (a window open now froze the tree) is not
  // in the tree this walk sees; it gets its own kRelease invalidation when the last end
  // puts it in (ItreeEnd). Teardown does not wait for that end: a window may never end
  // (HubOptions::unwind_interval_on_failure = false leaks one, as Linux does).
  const Range all{0, UINT64_MAX, Event::kRelease, /*blockable=*/true, nullptr};
  ItreeStart(all, /*release_walk=*/true);
  if (hooks_ != nullptr && hooks_->teardown_itree_walked) hooks_->teardown_itree_walked();
  ItreeEnd();
}

uint64_t NotifierSubscriptions::IntervalReadBegin(IntervalSubscription& sub) {
  uint64_t seq;
  {
    MutexLock lock(&itree_mu_);
    // relaxed: SetSeq runs under the driver's lock, and an invalidation that sets it began
    // under itree_mu_, which we hold: any such store we must see is ordered by the lock.
    seq = sub.invalidate_seq_.load(std::memory_order_relaxed);
    if (seq != invalidate_seq_) return seq;
  }
  // An invalidation that covers us is open (or our insert is pending): wait for the last
  // end, which moves the hub's seq past ours for good (it only grows), whether it comes
  // before or after the lock is taken again. Like Linux, ReadBegin does not wait for any
  // later writer.
  if (hooks_ != nullptr && hooks_->itree_waits) hooks_->itree_waits();
  MutexLock lock(&itree_mu_);
  itree_mu_.Await(itree_wq_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return invalidate_seq_ != seq;  // itree_mu_ is held inside Await
  });
  return seq;
}

uint64_t NotifierSubscriptions::invalidate_seq() const {
  MutexLock lock(&itree_mu_);
  return invalidate_seq_;
}

uint64_t NotifierSubscriptions::active_invalidate_ranges() const {
  MutexLock lock(&itree_mu_);
  return active_invalidate_ranges_;
}

size_t NotifierSubscriptions::interval_count() const {
  MutexLock lock(&itree_mu_);
  return itree_.size();
}

}  // namespace mmuvisor::notifier
