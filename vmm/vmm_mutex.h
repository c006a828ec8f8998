// DEPRECATED: use mmuvisor::Mutex / MutexLock from notifier/mutex.h (the project's one lock
// set; it has Await/AwaitFor on a std::condition_variable). The vmm core no longer uses this
// file; vmm/dma and vmm/stress still do, and it goes away once they are converted.
//
// VmmMutex / VmmLock: std::mutex with clang thread-safety annotations, for the vmm core.
//
// Why not absl::Mutex: the Abseil on these machines is Debian's shared library, built
// without ThreadSanitizer, so TSan cannot see its lock/unlock edges and would report every
// access it guards as a race. std::mutex sits on pthread_mutex, which TSan intercepts.
// lock()/unlock() make it usable with std::condition_variable_any.
// Threads: any. Not recursive.
#ifndef MMUVISOR_VMM_VMM_MUTEX_H_
#define MMUVISOR_VMM_VMM_MUTEX_H_

#include <mutex>

#include "absl/base/thread_annotations.h"

namespace mmuvisor::vmm {

class ABSL_LOCKABLE VmmMutex {
 public:
  void lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_SCOPED_LOCKABLE VmmLock {
 public:
  explicit VmmLock(VmmMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->lock(); }
  ~VmmLock() ABSL_UNLOCK_FUNCTION() { mu_->unlock(); }
  VmmLock(const VmmLock&) = delete;
  VmmLock& operator=(const VmmLock&) = delete;

 private:
  VmmMutex* const mu_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VMM_MUTEX_H_
