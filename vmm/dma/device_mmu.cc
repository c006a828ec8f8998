#include "vmm/dma/device_mmu.h"

namespace mmuvisor::vmm::dma {

notifier::StartResult DeviceMmu::InvalidateRangeStart(const notifier::Range& range) {
  // The zap first (the base class, under the MMU lock), then the wait: the drain's REQUIRES.
  const notifier::StartResult result = mmu::SecondaryMmu::InvalidateRangeStart(range);
  if (wait_enabled_.load(std::memory_order_relaxed)) drain_.Wait();
  return result;
}

void DeviceMmu::AfterLayoutZap() {
  if (wait_enabled_.load(std::memory_order_relaxed)) drain_.Wait();
}

}  // namespace mmuvisor::vmm::dma
