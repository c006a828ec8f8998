#include "vmm/host/page_range_lock.h"

#include <algorithm>
#include <cassert>

namespace mmuvisor::vmm {

bool PageRangeLock::FreeLocked(PageRange range) const {
  if (all_ || all_waiters_ > 0) return false;
  return std::none_of(held_.begin(), held_.end(),
                      [&](const PageRange& h) { return h.Overlaps(range); });
}

void PageRangeLock::Lock(PageRange range) {
  assert(range.count > 0);
  MutexLock lock(&mu_);
  mu_.Await(changed_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return FreeLocked(range); });
  held_.push_back(range);
  ++counts_.opened;
}

bool PageRangeLock::TryLock(PageRange range) {
  assert(range.count > 0);
  MutexLock lock(&mu_);
  if (!FreeLocked(range)) return false;
  held_.push_back(range);
  ++counts_.opened;
  return true;
}

void PageRangeLock::Unlock(PageRange range) {
  MutexLock lock(&mu_);
  auto it = std::find_if(held_.begin(), held_.end(), [&](const PageRange& h) {
    return h.first == range.first && h.count == range.count;
  });
  assert(it != held_.end());
  if (it != held_.end()) held_.erase(it);
  ++counts_.closed;
  changed_.notify_all();
}

void PageRangeLock::LockAll() {
  MutexLock lock(&mu_);
  ++all_waiters_;
  mu_.Await(changed_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !all_ && held_.empty(); });
  --all_waiters_;
  all_ = true;
  ++counts_.opened;
}

void PageRangeLock::UnlockAll() {
  MutexLock lock(&mu_);
  assert(all_);
  all_ = false;
  ++counts_.closed;
  changed_.notify_all();
}

bool PageRangeLock::IsLockedLocked(uint64_t page) const {
  if (all_) return true;
  return std::any_of(held_.begin(), held_.end(),
                     [&](const PageRange& h) { return h.Contains(page); });
}

void PageRangeLock::WaitUntilUnlocked(uint64_t page) const {
  MutexLock lock(&mu_);
  mu_.Await(changed_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !IsLockedLocked(page); });
}

bool PageRangeLock::WaitUntilUnlockedFor(uint64_t page, absl::Duration timeout) const {
  MutexLock lock(&mu_);
  return mu_.AwaitFor(changed_, timeout,
                      [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return !IsLockedLocked(page); });
}

bool PageRangeLock::IsLocked(uint64_t page) const {
  MutexLock lock(&mu_);
  return IsLockedLocked(page);
}

bool PageRangeLock::Overlaps(PageRange range) const {
  MutexLock lock(&mu_);
  if (all_) return true;
  return std::any_of(held_.begin(), held_.end(),
                     [&](const PageRange& h) { return h.Overlaps(range); });
}

int PageRangeLock::exclusive_waiters() const {
  MutexLock lock(&mu_);
  return all_waiters_;
}

size_t PageRangeLock::held() const {
  MutexLock lock(&mu_);
  return held_.size() + (all_ ? 1 : 0);
}

PageRangeLock::Counts PageRangeLock::counts() const {
  MutexLock lock(&mu_);
  return counts_;
}

bool PageRangeLock::WaitForClosed(uint64_t closed, absl::Duration timeout) const {
  MutexLock lock(&mu_);
  return mu_.AwaitFor(changed_, timeout, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return counts_.closed >= closed;
  });
}

}  // namespace mmuvisor::vmm
