// PagingMutex / PagingSharedMutex: std::mutex and std::shared_mutex with clang
// thread-safety annotations, plus their scoped guards.
//
// Why not absl::Mutex: the Abseil on these machines is Debian's shared library, built
// without ThreadSanitizer, so TSan cannot see its lock/unlock edges and reports every access
// it guards as a race. The pthread primitives under std::mutex / std::shared_mutex are
// intercepted by TSan, so the concurrency tests of this library stay meaningful.
// Threads: any. Not recursive.
#ifndef MMUVISOR_VMM_PAGING_PAGING_MUTEX_H_
#define MMUVISOR_VMM_PAGING_PAGING_MUTEX_H_

#include <mutex>
#include <shared_mutex>

#include "absl/base/thread_annotations.h"

namespace mmuvisor::vmm {

class ABSL_LOCKABLE PagingMutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }

 private:
  std::mutex mu_;
};

class ABSL_LOCKABLE PagingSharedMutex {
 public:
  void Lock() ABSL_EXCLUSIVE_LOCK_FUNCTION() { mu_.lock(); }
  void Unlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock(); }
  void ReaderLock() ABSL_SHARED_LOCK_FUNCTION() { mu_.lock_shared(); }
  void ReaderUnlock() ABSL_UNLOCK_FUNCTION() { mu_.unlock_shared(); }

 private:
  std::shared_mutex mu_;
};

class ABSL_SCOPED_LOCKABLE PagingLock {
 public:
  explicit PagingLock(PagingMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) { mu_->Lock(); }
  ~PagingLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  PagingLock(const PagingLock&) = delete;
  PagingLock& operator=(const PagingLock&) = delete;

 private:
  PagingMutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE PagingWriterLock {
 public:
  explicit PagingWriterLock(PagingSharedMutex* mu) ABSL_EXCLUSIVE_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->Lock();
  }
  ~PagingWriterLock() ABSL_UNLOCK_FUNCTION() { mu_->Unlock(); }
  PagingWriterLock(const PagingWriterLock&) = delete;
  PagingWriterLock& operator=(const PagingWriterLock&) = delete;

 private:
  PagingSharedMutex* const mu_;
};

class ABSL_SCOPED_LOCKABLE PagingReaderLock {
 public:
  explicit PagingReaderLock(PagingSharedMutex* mu) ABSL_SHARED_LOCK_FUNCTION(mu) : mu_(mu) {
    mu_->ReaderLock();
  }
  ~PagingReaderLock() ABSL_UNLOCK_FUNCTION() { mu_->ReaderUnlock(); }
  PagingReaderLock(const PagingReaderLock&) = delete;
  PagingReaderLock& operator=(const PagingReaderLock&) = delete;

 private:
  PagingSharedMutex* const mu_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_PAGING_PAGING_MUTEX_H_
