#include "notifier/thread_shard.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

namespace mmuvisor::notifier::internal {

int ThreadShard(int shards) {
  // relaxed: only distinctness matters, not ordering.
  static std::atomic<unsigned> next{0};
  thread_local const unsigned mine = next.fetch_add(1, std::memory_order_relaxed);
  return static_cast<int>(mine & static_cast<unsigned>(shards - 1));
}

void WaitStep(int round) {
  if (round < 64) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(std::min(100, round - 63)));
}

}  // namespace mmuvisor::notifier::internal
