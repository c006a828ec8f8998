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
  MutexLock lock(&mu_);
  cancelled_ = true;
  cv_.notify_all();
  // If on_expire is running, wait for it: the caller may free what it touches.
  mu_.Await(cv_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; });  // mu_ held
}

bool Watchdog::expired() const {
  MutexLock lock(&mu_);
  return expired_;
}

void Watchdog::ThreadMain() {
  pthread_setname_np(pthread_self(), "watchdog");
  {
    MutexLock lock(&mu_);
    // AwaitFor clamps the timeout to a year, so the deadline cannot overflow the clock.
    const bool cancelled =
        mu_.AwaitFor(cv_, timeout_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return cancelled_; });
    if (cancelled) {
      done_ = true;
      cv_.notify_all();
      return;
    }
    expired_ = true;
  }
  on_expire_();
  MutexLock lock(&mu_);
  done_ = true;
  cv_.notify_all();
}

}  // namespace mmuvisor::vmm
