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
  absl::MutexLock lock(&mu_);
  while (!FreeLocked(range)) changed_.Wait(&mu_);
  held_.push_back(range);
}

bool PageRangeLock::TryLock(PageRange range) {
  assert(range.count > 0);
  absl::MutexLock lock(&mu_);
  if (!FreeLocked(range)) return false;
  held_.push_back(range);
  return true;
}

void PageRangeLock::Unlock(PageRange range) {
  absl::MutexLock lock(&mu_);
  auto it = std::find_if(held_.begin(), held_.end(), [&](const PageRange& h) {
    return h.first == range.first && h.count == range.count;
  });
  assert(it != held_.end());
  if (it != held_.end()) held_.erase(it);
  changed_.SignalAll();
}

void PageRangeLock::LockAll() {
  absl::MutexLock lock(&mu_);
  ++all_waiters_;
  while (all_ || !held_.empty()) changed_.Wait(&mu_);
  --all_waiters_;
  all_ = true;
}

void PageRangeLock::UnlockAll() {
  absl::MutexLock lock(&mu_);
  assert(all_);
  all_ = false;
  changed_.SignalAll();
}

bool PageRangeLock::IsLockedLocked(uint64_t page) const {
  if (all_) return true;
  return std::any_of(held_.begin(), held_.end(),
                     [&](const PageRange& h) { return h.Contains(page); });
}

void PageRangeLock::WaitUntilUnlocked(uint64_t page) {
  absl::MutexLock lock(&mu_);
  while (IsLockedLocked(page)) changed_.Wait(&mu_);
}

bool PageRangeLock::IsLocked(uint64_t page) const {
  absl::MutexLock lock(&mu_);
  return IsLockedLocked(page);
}

size_t PageRangeLock::held() const {
  absl::MutexLock lock(&mu_);
  return held_.size() + (all_ ? 1 : 0);
}

}  // namespace mmuvisor::vmm
