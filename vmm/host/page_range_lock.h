// PageRangeLock: which pages of guest RAM are inside an open HostAddressSpace operation
// (an invalidation window), and the gate memslot changes and teardown wait on.
//
// A holder owns a half-open page range [first, first + count). Two holders never own
// overlapping ranges: Lock() waits until its range overlaps no held range. LockAll() is
// the exclusive mode (memslot update, teardown): it waits until no range is held (KVM's
// rule: memslot changes wait while any invalidation window is open) and keeps new
// holders out until UnlockAll(). A waiting LockAll() takes precedence over new Lock()s,
// so a stream of reclaims cannot starve a memslot update.
//
// Every successful Lock/TryLock/LockAll opens a window and every Unlock/UnlockAll closes
// one; counts() reports both totals (a vCPU that took an address-less EFAULT compares the
// counts from before its entry with the ones after: if no window opened and none was open,
// no window caused the fault).
//
// The const members are the facts and waits anyone may use (HostAddressSpace::windows());
// taking and releasing ranges is the operations' (host_window.h).
//
// Locks: mu_ guards everything; nothing else is taken under it. Threads: any.
#ifndef MMUVISOR_VMM_HOST_PAGE_RANGE_LOCK_H_
#define MMUVISOR_VMM_HOST_PAGE_RANGE_LOCK_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include <condition_variable>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm {

// Half-open range of guest RAM pages, [first, first + count). Page p is the host page at
// GuestRam::base() + p * page size.
struct PageRange {
  uint64_t first = 0;
  uint64_t count = 0;
  uint64_t end() const { return first + count; }
  bool Contains(uint64_t page) const { return page >= first && page < first + count; }
  bool Overlaps(const PageRange& o) const { return first < o.end() && o.first < end(); }
};

class PageRangeLock {
 public:
  PageRangeLock() = default;
  PageRangeLock(const PageRangeLock&) = delete;
  PageRangeLock& operator=(const PageRangeLock&) = delete;

  // Waits until `range` overlaps no held range and no exclusive holder (or waiter).
  // REQUIRES: range.count > 0; the caller holds no range (no nesting).
  void Lock(PageRange range) ABSL_LOCKS_EXCLUDED(mu_);
  // Lock() without waiting; false if it would wait (the OOM reaper's trylock).
  bool TryLock(PageRange range) ABSL_LOCKS_EXCLUDED(mu_);
  // REQUIRES: `range` was locked by this holder.
  void Unlock(PageRange range) ABSL_LOCKS_EXCLUDED(mu_);

  // Waits until no range is held, then holds everything.
  void LockAll() ABSL_LOCKS_EXCLUDED(mu_);
  void UnlockAll() ABSL_LOCKS_EXCLUDED(mu_);

  // Waits while `page` lies in a held range (or everything is held).
  void WaitUntilUnlocked(uint64_t page) const ABSL_LOCKS_EXCLUDED(mu_);
  // The same for at most `timeout`; returns whether `page` is unlocked.
  bool WaitUntilUnlockedFor(uint64_t page, absl::Duration timeout) const
      ABSL_LOCKS_EXCLUDED(mu_);
  bool IsLocked(uint64_t page) const ABSL_LOCKS_EXCLUDED(mu_);
  // Whether any page of `range` lies in a held range (or everything is held).
  bool Overlaps(PageRange range) const ABSL_LOCKS_EXCLUDED(mu_);
  // Open windows right now (held ranges, plus one for an exclusive holder).
  size_t held() const ABSL_LOCKS_EXCLUDED(mu_);
  // LockAll() calls waiting right now (a memslot change or teardown waiting for windows).
  int exclusive_waiters() const ABSL_LOCKS_EXCLUDED(mu_);

  struct Counts {
    uint64_t opened = 0;
    uint64_t closed = 0;
  };
  Counts counts() const ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until at least `closed` windows have closed in total, at most `timeout`;
  // returns whether they have.
  bool WaitForClosed(uint64_t closed, absl::Duration timeout) const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  bool FreeLocked(PageRange range) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  bool IsLockedLocked(uint64_t page) const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  mutable Mutex mu_;
  mutable std::condition_variable changed_;  // waited on by the const waits
  std::vector<PageRange> held_ ABSL_GUARDED_BY(mu_);
  bool all_ ABSL_GUARDED_BY(mu_) = false;
  int all_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  Counts counts_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_PAGE_RANGE_LOCK_H_
