// SupportedCpuidPrefetch without KVM: where it starts a thread (only with a CPU to spare
// beside the caller's), and that a device that cannot be opened costs nothing but the
// thread. The prefetched answer on a real device: kvm_layer_test.
#include "vmm/kvm/cpuid_prefetch.h"

#include <sched.h>

#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

// Restricts the calling thread to `set` for the scope; restores the old mask after.
class ScopedAffinity {
 public:
  explicit ScopedAffinity(const cpu_set_t& set) {
    ok_ = sched_getaffinity(0, sizeof(old_), &old_) == 0 &&
          sched_setaffinity(0, sizeof(set), &set) == 0;
  }
  ~ScopedAffinity() {
    if (ok_) sched_setaffinity(0, sizeof(old_), &old_);
  }
  bool ok() const { return ok_; }

 private:
  cpu_set_t old_;
  bool ok_ = false;
};

TEST(SupportedCpuidPrefetchTest, OneUsableCpuStartsNoThread) {
  cpu_set_t one;
  CPU_ZERO(&one);
  const int cpu = sched_getcpu();
  ASSERT_GE(cpu, 0);
  CPU_SET(cpu, &one);
  ScopedAffinity pin(one);
  ASSERT_TRUE(pin.ok());
  // A path nothing has cached, so that only the CPU count can keep the thread away.
  EXPECT_FALSE(SupportedCpuidPrefetch::Begin("/nonexistent/kvm")->started());
}

TEST(SupportedCpuidPrefetchTest, ASpareCpuGetsTheThreadEvenForADeviceThatCannotOpen) {
  cpu_set_t all;
  ASSERT_EQ(sched_getaffinity(0, sizeof(all), &all), 0);
  if (CPU_COUNT(&all) < 2) GTEST_SKIP() << "one usable CPU: nothing to overlap";
  // The open fails on the thread; the error is left for SupportedCpuid's caller, and the
  // destructor joins.
  std::unique_ptr<SupportedCpuidPrefetch> prefetch =
      SupportedCpuidPrefetch::Begin("/nonexistent/kvm");
  EXPECT_TRUE(prefetch->started());
  prefetch.reset();
}

TEST(SupportedCpuidPrefetchTest, NothingHandedOverFinishesAtOnceAndStopIsIdempotent) {
  // The thread's query fails (no such device); with no vCPU handed over, Finish has
  // nothing to set and nothing to ask, and Stop ends the thread (twice is harmless).
  std::unique_ptr<SupportedCpuidPrefetch> prefetch =
      SupportedCpuidPrefetch::Begin("/nonexistent/kvm");
  prefetch->SetOn({}, nullptr);
  EXPECT_TRUE(prefetch->Finish().ok());
  prefetch->Stop();
  prefetch->Stop();
}

}  // namespace
}  // namespace mmuvisor::vmm
