#include "vmm/vcpu/watchdog.h"

#include <pthread.h>

#include <algorithm>
#include <chrono>

namespace mmuvisor::vmm {

Watchdog::Watchdog(absl::Duration timeout, std::function<void()> on_expire)
    : timeout_(timeout), on_expire_(std::move(on_expire)), thread_([this] { ThreadMain(); }) {}

Watchdog::~Watchdog() {
  Cancel();
  thread_.join();
}

void Watchdog::Cancel() {
  VmmLock lock(&mu_);
  cancelled_ = true;
  cv_.notify_all();
  // If on_expire is running, wait for it: the caller may free what it touches.
  while (!done_) cv_.wait(mu_);
}

bool Watchdog::expired() const {
  VmmLock lock(&mu_);
  return expired_;
}

void Watchdog::ThreadMain() {
  pthread_setname_np(pthread_self(), "watchdog");
  {
    VmmLock lock(&mu_);
    // Clamped so now() + timeout cannot overflow the clock's 64-bit nanoseconds.
    const absl::Duration timeout = std::min(timeout_, absl::Hours(24 * 365));
    const auto deadline =
        std::chrono::steady_clock::now() + absl::ToChronoNanoseconds(timeout);
    while (!cancelled_ && std::chrono::steady_clock::now() < deadline) {
      cv_.wait_until(mu_, deadline);
    }
    if (cancelled_) {
      done_ = true;
      cv_.notify_all();
      return;
    }
    expired_ = true;
  }
  on_expire_();
  VmmLock lock(&mu_);
  done_ = true;
  cv_.notify_all();
}

}  // namespace mmuvisor::vmm
