// StopAndJoin: on destruction sets `stop` and joins every joinable thread of `threads`, so
// that a test's early return (a failed ASSERT) neither leaves its workers running nor
// destroys a joinable std::thread, which would abort the whole test binary. Declare it
// right after the vector the workers go into.
#ifndef MMUVISOR_TESTS_SUPPORT_STOP_AND_JOIN_H_
#define MMUVISOR_TESTS_SUPPORT_STOP_AND_JOIN_H_

#include <atomic>
#include <thread>
#include <vector>

namespace mmuvisor::testing {

class StopAndJoin {
 public:
  StopAndJoin(std::atomic<bool>& stop, std::vector<std::thread>& threads)
      : stop_(stop), threads_(threads) {}
  StopAndJoin(const StopAndJoin&) = delete;
  StopAndJoin& operator=(const StopAndJoin&) = delete;
  ~StopAndJoin() {
    stop_.store(true);
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::atomic<bool>& stop_;
  std::vector<std::thread>& threads_;
};

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_STOP_AND_JOIN_H_
