// notifier/mutex.h: the mutex notifier/ uses, a std::mutex with Abseil's thread-safety
// annotations.
//
// Why not absl::Mutex: Debian's prebuilt Abseil is not built with -fsanitize=thread, so
// its lock/unlock are invisible to ThreadSanitizer and every access it guards is reported
// as a race. std::mutex goes through pthread, which TSan intercepts. Clang's
// -Wthread-safety still checks every ABSL_GUARDED_BY through the annotations below.
// Waits use a std::condition_variable owned by the caller.
#ifndef MMUVISOR_NOTIFIER_MUTEX_H_
#define MMUVISOR_NOTIFIER_MUTEX_H_

#include <condition_variable>
#include <mutex>

#include "absl/base/thread_annotations.h"

namespace mmuvisor::notifier {

class ABSL_LOCKABLE Mutex {
 public:
  Mutex() = default;
  Mutex(const Mutex&) = delete;
  Mutex& operator=(const Mutex&) = delete;

  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  bool TryLock() ABSL_EXCLUSIVE_TRYLOCK_FUNCTION(true) { return mu_.try_lock(); }

  // Blocks on `cv` until pred() is true; pred runs with the lock held.
  // REQUIRES: this mutex is held by the caller; it is held again on return.
  template <typename Pred>
  void Await(std::condition_variable& cv, Pred pred) ABSL_EXCLUSIVE_LOCKS_REQUIRED(this) {
    std::unique_lock<std::mutex> lock(mu_, std::adopt_lock);
    cv.wait(lock, pred);
    lock.release();  // still held: ownership goes back to the caller
  }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  Mutex* const mu_;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_MUTEX_H_
