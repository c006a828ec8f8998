// notifier/base/mutex.h: the project's one set of locks, for every layer (notifier, mmu, vmm):
// Mutex (std::mutex), SharedMutex (std::shared_mutex), their scoped guards MutexLock and
// ReaderMutexLock, and condition-variable waits on a Mutex (Await, AwaitFor).
//
// Why not absl::Mutex: Debian's prebuilt Abseil is not built with -fsanitize=thread, so its
// lock/unlock (and Await, CondVar) are invisible to ThreadSanitizer and every access they
// guard is reported as a race. std::mutex / std::shared_mutex go through pthread, which
// TSan intercepts. The Abseil thread-safety annotations below keep every ABSL_GUARDED_BY,
// ABSL_EXCLUSIVE_LOCKS_REQUIRED, ... checked by the clang build (-DMMUVISOR_THREAD_SAFETY=ON,
// -Wthread-safety -Werror). Do not use absl::Mutex / absl::MutexLock / absl::CondVar.
//
// Differences from absl::Mutex a user must know:
//   - SharedMutex is glibc's default pthread_rwlock (reader-preferring): a writer waits
//     until no reader holds the lock; it does not stop new readers from entering.
//   - Waits use a std::condition_variable owned by the caller, which must notify it after
//     changing (under the lock) anything a waiter's predicate reads.
//   - AssertHeld()/AssertReaderHeld() check, like absl's, that *some* thread holds the lock
//     in that mode (not that the caller does); they abort otherwise.
//
// Threads: any. Nothing is recursive. None of these types is copyable or movable.
#ifndef MMUVISOR_NOTIFIER_BASE_MUTEX_H_
#define MMUVISOR_NOTIFIER_BASE_MUTEX_H_

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"

namespace mmuvisor {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

  // Blocks on `cv` until pred() is true; pred runs with the lock held (the analysis cannot
  // see that: annotate the lambda ABSL_NO_THREAD_SAFETY_ANALYSIS).
  // REQUIRES: held by the caller; held again on return.
  template <typename Pred>
  void Await(std::condition_variable& cv, Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv.wait(lock, pred);
    lock.release();  // still held: ownership goes back to the caller
  }

  // As Await, but gives up once `timeout` has passed (steady clock); returns pred().
  // A timeout over a year (InfiniteDuration included) is clamped to a year, so the
  // deadline cannot overflow the clock.
  // REQUIRES: held by the caller; held again on return.
  template <typename Pred>
  bool AwaitFor(std::condition_variable& cv, absl::Duration timeout, Pred pred)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    const absl::Duration clamped = std::min(timeout, absl::Hours(24 * 365));
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    const bool ok = cv.wait_for(lock, absl::ToChronoNanoseconds(clamped), pred);
    lock.release();
    return ok;
  }

 private:
  std::mutex mu_;
};

class ABSL_LOCKABLE SharedMutex {
 public:
  SharedMutex() = default;
  SharedMutex(const SharedMutex&) = delete;
  SharedMutex& operator=(const SharedMutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() {
    mu_.lock();
    writer_.store(true, std::memory_order_relaxed);
  }
  void Unlock() ABSL_UNLOCK_FUNCTION() {
    writer_.store(false, std::memory_order_relaxed);
    mu_.unlock();
  }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) {
    if (!mu_.try_lock()) return false;
    writer_.store(true, std::memory_order_relaxed);
    return true;
  }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

  // Aborts unless some thread holds the lock exclusively.
  void AssertHeld() const ABSL_ASSERT_EXCLUSIVE_LOCK() {
    if (!writer_.load(std::memory_order_relaxed)) Die("SharedMutex::AssertHeld: not held");
  }
  // Aborts unless some thread holds the lock, in either mode. (try_lock fails while any
  // holder exists; it is only taken when nobody holds it, i.e. on the way to aborting.)
  void AssertReaderHeld() const ABSL_ASSERT_SHARED_LOCK() {
    if (writer_.load(std::memory_order_relaxed)) return;
    if (mu_.try_lock()) {
      mu_.unlock();
      Die("SharedMutex::AssertReaderHeld: not held");
    }
  }

 private:
  [[noreturn]] static void Die(const char* what) {
    std::fprintf(stderr, "%s\n", what);
    std::abort();
  }

  mutable std::shared_mutex mu_;
  // True while a writer holds mu_ (set after lock, cleared before unlock). Relaxed: it
  // is only read by AssertHeld, whose caller claims to be ordered after the Lock.
  std::atomic<bool> writer_{false};
};

// Exclusive hold of a Mutex or a SharedMutex for the guard's scope.
class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  explicit MutexLock(SharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : shared_(mu) {
    shared_->Lock();
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {
    if (mu_ != nullptr) {
      mu_->Unlock();
    } else {
      shared_->Unlock();
    }
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_ = nullptr;
  SharedMutex* const shared_ = nullptr;
};

// Shared (reader) hold of a SharedMutex for the guard's scope.
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(SharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  SharedMutex* const mu_;
};

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_MUTEX_H_
