// Locks for vmm/host that ThreadSanitizer can see: HostMutex (std::mutex) and
// HostSharedMutex (std::shared_mutex), with Abseil's thread-safety annotations so clang's
// -Wthread-safety still checks every ABSL_GUARDED_BY.
//
// Why not absl::Mutex: Debian's prebuilt Abseil is not built with -fsanitize=thread, so
// its lock/unlock (and CondVar) are invisible to TSan and every access they guard is
// reported as a race (notifier/mutex.h and mmu/mutex_lock.h work around the same thing).
// pthread-based locks are intercepted by TSan. Waits use a std::condition_variable owned
// by the caller.
//
// Threads: any; same rules as the std types (non-recursive).
#ifndef MMUVISOR_VMM_HOST_HOST_MUTEX_H_
#define MMUVISOR_VMM_HOST_HOST_MUTEX_H_

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace mmuvisor::vmm {

class ABSL_LOCKABLE HostMutex {
 public:
  HostMutex() = default;
  HostMutex(const HostMutex&) = delete;
  HostMutex& operator=(const HostMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

  // Blocks on `cv` until pred() is true (pred runs with the lock held).
  // REQUIRES: held by the caller; held again on return.
  template <typename Pred>
  void Await(std::condition_variable& cv, Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv.wait(lock, pred);
    lock.release();  // still held: ownership goes back to the caller
  }
  // As Await, but gives up after `timeout`; returns pred().
  template <typename Pred>
  bool AwaitFor(std::condition_variable& cv, absl::Duration timeout, Pred pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    const bool ok = cv.wait_for(lock, absl::ToChronoNanoseconds(timeout), pred);
    lock.release();
    return ok;
  }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE HostMutexLock {
 public:
  explicit HostMutexLock(HostMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~HostMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  HostMutexLock(const HostMutexLock&) = delete;
  HostMutexLock& operator=(const HostMutexLock&) = delete;

 private:
  HostMutex* const mu_;
};

class ABSL_LOCKABLE HostSharedMutex {
 public:
  HostSharedMutex() = default;
  HostSharedMutex(const HostSharedMutex&) = delete;
  HostSharedMutex& operator=(const HostSharedMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class ABSL_SCOPED_LOCKABLE HostReaderLock {
 public:
  explicit HostReaderLock(HostSharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~HostReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  HostReaderLock(const HostReaderLock&) = delete;
  HostReaderLock& operator=(const HostReaderLock&) = delete;

 private:
  HostSharedMutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE HostWriterLock {
 public:
  explicit HostWriterLock(HostSharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~HostWriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  HostWriterLock(const HostWriterLock&) = delete;
  HostWriterLock& operator=(const HostWriterLock&) = delete;

 private:
  HostSharedMutex* const mu_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_MUTEX_H_
