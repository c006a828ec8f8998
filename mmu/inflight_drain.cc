#include "mmu/inflight_drain.h"

#include <functional>
#include <thread>

namespace mmuvisor::mmu {

InflightDrain::Section::Section(InflightDrain& drain)
    : count_(&drain.stripes_[ThisStripe()].count) {
  for (;;) {
    count_->fetch_add(1, std::memory_order_relaxed);
    // Pairs with the seq_cst fence in Announce (Dekker: either the start sees this count,
    // or this section sees the start's waiter and, once through, the zap before it).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // A start is waiting for the stripes: step back so it cannot starve behind
    // back-to-back sections (or, non-blockable, so it sees the stripes empty), and enter
    // again once it is through.
    if (drain.waiters_.load(std::memory_order_relaxed) == 0) return;
    count_->fetch_sub(1, std::memory_order_release);
    while (drain.waiters_.load(std::memory_order_relaxed) != 0) std::this_thread::yield();
  }
}

InflightDrain::Section::~Section() {
  // Release pairs with the acquire loads in Wait/TryWait: the copy happens before the
  // primary, after the start, changes the page.
  count_->fetch_sub(1, std::memory_order_release);
}

unsigned InflightDrain::ThisStripe() {
  thread_local const unsigned stripe = static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()) % kStripes);
  return stripe;
}

void InflightDrain::Announce() {
  // relaxed + the fence: the fence orders this store before the stripe loads, and pairs
  // with the seq_cst fence in Section's constructor.
  waiters_.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
}

bool InflightDrain::Wait() {
  Announce();
  bool waited = false;
  for (Stripe& stripe : stripes_) {
    // Reading 0 once suffices: every section counted before has ended, and every one that
    // starts later sees the zap. Acquire pairs with the release decrement.
    while (stripe.count.load(std::memory_order_acquire) != 0) {
      waited = true;
      std::this_thread::yield();
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);  // stepped-back sections may re-enter
  if (waited) waits_.fetch_add(1, std::memory_order_relaxed);
  return waited;
}

bool InflightDrain::TryWait() {
  Announce();
  bool busy = false;
  for (Stripe& stripe : stripes_) {
    // Acquire pairs with the release decrement, as in Wait.
    if (stripe.count.load(std::memory_order_acquire) != 0) {
      busy = true;
      break;
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);
  if (busy) refusals_.fetch_add(1, std::memory_order_relaxed);
  return !busy;
}

}  // namespace mmuvisor::mmu
