// Watchdog: calls on_expire once if `timeout` passes before Cancel(). Runs its own thread
// ("watchdog"). The Machine uses it to kick every vCPU of a guest that runs too long, so a
// spinning guest ends with "timed out after D" instead of a hang.
//
// Thread-safety: Cancel() from any thread; on_expire runs on the watchdog thread, without
// mu_ held (it may call back into whoever owns the watchdog). The destructor cancels and
// joins, so on_expire never runs after the destructor returns.
#ifndef MMUVISOR_VMM_VCPU_WATCHDOG_H_
#define MMUVISOR_VMM_VCPU_WATCHDOG_H_

#include <condition_variable>
#include <functional>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm {

class Watchdog {
 public:
  Watchdog(absl::Duration timeout, std::function<void()> on_expire);
  ~Watchdog();
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

  // Idempotent. After it returns, on_expire has either finished or will never start.
  void Cancel() ABSL_LOCKS_EXCLUDED(mu_);
  // True once on_expire has started. Any thread.
  bool expired() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void ThreadMain() ABSL_LOCKS_EXCLUDED(mu_);

  const absl::Duration timeout_;
  std::function<void()> on_expire_;
  mutable Mutex mu_;
  std::condition_variable cv_;  // signalled on cancelled_ and done_
  bool cancelled_ ABSL_GUARDED_BY(mu_) = false;
  bool expired_ ABSL_GUARDED_BY(mu_) = false;
  bool done_ ABSL_GUARDED_BY(mu_) = false;  // on_expire finished, or will never run
  std::thread thread_;  // last: starts after the fields above are initialised
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_WATCHDOG_H_
