#include "vmm/vcpu/watchdog.h"

#include <pthread.h>

namespace mmuvisor::vmm {

Watchdog::Watchdog(absl::Duration timeout, std::function<void()> on_expire)
    : timeout_(timeout), on_expire_(std::move(on_expire)), thread_([this] { ThreadMain(); }) {}

Watchdog::~Watchdog() {
  Cancel();
  thread_.join();
}

void Watchdog::Cancel() {
  absl::MutexLock lock(&mu_);
  cancelled_ = true;
  // If on_expire is running, wait for it: the caller may free what it touches.
  mu_.Await(absl::Condition(&done_));
}

bool Watchdog::expired() const {
  absl::MutexLock lock(&mu_);
  return expired_;
}

void Watchdog::ThreadMain() {
  pthread_setname_np(pthread_self(), "watchdog");
  {
    absl::MutexLock lock(&mu_);
    mu_.AwaitWithTimeout(absl::Condition(&cancelled_), timeout_);
    if (cancelled_) {
      done_ = true;
      return;
    }
    expired_ = true;
  }
  on_expire_();
  absl::MutexLock lock(&mu_);
  done_ = true;
}

}  // namespace mmuvisor::vmm
