// MutexLock: a scoped absl::Mutex lock for mmu/ that ThreadSanitizer can see through.
//
// Why: the Abseil this project builds against is Debian's shared library, compiled
// without -fsanitize=thread, so TSan observes none of absl::Mutex's internal
// synchronisation and reports every pair of accesses made under the same lock on two
// threads as a race. In TSan builds this wrapper tells TSan what the lock means: an
// acquire on the mutex's address after locking, a release before unlocking. In other
// builds it is exactly absl::MutexLock. (absl::Mutex::Await and absl::CondVar stay
// invisible to TSan: mmu/ does not use them.)
//
// Threads: any; same rules as absl::Mutex (non-recursive).
#ifndef MMUVISOR_MMU_MUTEX_LOCK_H_
#define MMUVISOR_MMU_MUTEX_LOCK_H_

#include "absl/base/config.h"
#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

#ifdef ABSL_HAVE_THREAD_SANITIZER
#include <sanitizer/tsan_interface.h>
#endif

namespace mmuvisor::mmu {

// Call right after acquiring (Lock, successful TryLock) / right before releasing `mu`.
inline void TsanAcquired(const absl::Mutex* mu) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_acquire(const_cast<absl::Mutex*>(mu));
#else
  (void)mu;
#endif
}
inline void TsanReleasing(const absl::Mutex* mu) {
#ifdef ABSL_HAVE_THREAD_SANITIZER
  __tsan_release(const_cast<absl::Mutex*>(mu));
#else
  (void)mu;
#endif
}

class ABSL_SCOPED_LOCKABLE MutexLock {
 public:
  explicit MutexLock(absl::Mutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
    TsanAcquired(mu_);
  }
  ~MutexLock() ABSL_UNLOCK_FUNCTION() {
    TsanReleasing(mu_);
    mu_->Unlock();
  }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

// Shared hold. TSan is told acquire/release as for an exclusive hold (it then also
// orders readers among themselves, which only hides nothing that matters here).
class ABSL_SCOPED_LOCKABLE ReaderMutexLock {
 public:
  explicit ReaderMutexLock(absl::Mutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
    TsanAcquired(mu_);
  }
  ~ReaderMutexLock() ABSL_UNLOCK_FUNCTION() {
    TsanReleasing(mu_);
    mu_->ReaderUnlock();
  }
  ReaderMutexLock(const ReaderMutexLock&) = delete;
  ReaderMutexLock& operator=(const ReaderMutexLock&) = delete;

 private:
  absl::Mutex* const mu_;
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_MUTEX_LOCK_H_
