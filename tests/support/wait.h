// Bounded waiting for tests. Every wait in a test ends: a condition that never comes makes
// the test fail and say what it waited for, instead of hanging until ctest kills it (a guest
// that crashed early never reaches the round a callback waits for).
//
//   ASSERT_TRUE(WaitUntil([&] { return m->host().windows().held() > 0; }))
//       << "no reclaim window opened within " << kTestWaitLimit;
#ifndef MMUVISOR_TESTS_SUPPORT_WAIT_H_
#define MMUVISOR_TESTS_SUPPORT_WAIT_H_

#include "absl/functional/function_ref.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"

namespace mmuvisor::testing {

// Longer than any healthy wait in the suite, also under nested KVM where guest code is
// emulated (a round of the test guests there takes well under a second).
inline constexpr absl::Duration kTestWaitLimit = absl::Seconds(60);

// Polls `done` every `poll` until it returns true (returns true) or `limit` has passed
// (returns false).
inline bool WaitUntil(absl::FunctionRef<bool()> done, absl::Duration limit = kTestWaitLimit,
                      absl::Duration poll = absl::Microseconds(100)) {
  const absl::Time deadline = absl::Now() + limit;
  while (!done()) {
    if (absl::Now() >= deadline) return false;
    absl::SleepFor(poll);
  }
  return true;
}

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_WAIT_H_
