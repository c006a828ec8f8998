#include "vmm/dma/device_mmu.h"

#include <functional>
#include <thread>

namespace mmuvisor::vmm::dma {

DeviceMmu::AccessSection::AccessSection(DeviceMmu& mmu)
    : count_(&mmu.stripes_[ThisStripe()].count) {
  for (;;) {
    count_->fetch_add(1, std::memory_order_relaxed);
    // Pairs with the seq_cst fence in WaitForAccesses (Dekker, see the header).
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // An invalidation is waiting for the stripes: step back so it cannot starve behind
    // back-to-back accesses, and enter again once it is through.
    if (mmu.waiters_.load(std::memory_order_relaxed) == 0) return;
    count_->fetch_sub(1, std::memory_order_release);
    while (mmu.waiters_.load(std::memory_order_relaxed) != 0) std::this_thread::yield();
  }
}

DeviceMmu::AccessSection::~AccessSection() {
  // Release pairs with the acquire load in WaitForAccesses: the copy happens before the
  // primary, after the wait, changes the page.
  count_->fetch_sub(1, std::memory_order_release);
}

unsigned DeviceMmu::ThisStripe() {
  thread_local const unsigned stripe = static_cast<unsigned>(
      std::hash<std::thread::id>{}(std::this_thread::get_id()) % kStripes);
  return stripe;
}

notifier::StartResult DeviceMmu::InvalidateRangeStart(const notifier::Range& range) {
  const notifier::StartResult result = mmu::SecondaryMmu::InvalidateRangeStart(range);
  if (wait_enabled_.load(std::memory_order_relaxed)) WaitForAccesses();
  return result;
}

void DeviceMmu::WaitForAccesses() {
  // relaxed + the fence below: the fence orders this store before the stripe loads, and
  // pairs with the seq_cst fence in AccessSection's constructor.
  waiters_.fetch_add(1, std::memory_order_relaxed);
  std::atomic_thread_fence(std::memory_order_seq_cst);
  bool waited = false;
  for (Stripe& stripe : stripes_) {
    // Reading 0 once suffices: every access counted before has ended, and every access
    // that starts later sees the zap. Acquire pairs with the release decrement.
    while (stripe.count.load(std::memory_order_acquire) != 0) {
      waited = true;
      std::this_thread::yield();
    }
  }
  waiters_.fetch_sub(1, std::memory_order_relaxed);  // stepped-back sections may re-enter
  if (waited) waits_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
}

}  // namespace mmuvisor::vmm::dma
