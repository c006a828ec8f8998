// The reclaim driver: target resident fraction, aging through the hub's young ops.
#include "vmm/host/reclaim_driver.h"

#include <cmath>
#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "host_test_support.h"
#include "support/dma_port.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::vmm::testing::DmaPort;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::FillPattern;
using ::mmuvisor::vmm::testing::FirstMismatch;

constexpr uint64_t kPages = 64;

uint64_t Resident(HostAddressSpace& space) {
  auto r = space.page_server()->Residency(0, space.num_pages());
  uint64_t n = 0;
  for (uint8_t b : *r) n += b;
  return n;
}

TEST(ReclaimDriverTest, KeepsTheResidentSetAtTheTargetAndSparesYoungPages) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 1);
  // Pages 0..7 are used by the device: young in its SecondaryMmu.
  std::vector<uint8_t> buf(kPageSize);
  for (uint64_t p = 0; p < 8; ++p) ASSERT_THAT(dma->Read(Gpa{p * kPageSize}, absl::MakeSpan(buf)), IsOk());

  ReclaimDriver driver(*space, ReclaimDriverOptions{.target_resident_fraction = 0.25,
                                                    .max_pages_per_second = 1000000,
                                                    .max_batch_pages = 1000});
  ASSERT_OK_AND_ASSIGN(uint64_t reclaimed, driver.RunOnce());
  EXPECT_EQ(reclaimed, kPages - kPages / 4);
  EXPECT_EQ(Resident(*space), kPages / 4);
  auto resident = space->page_server()->Residency(0, kPages);
  for (uint64_t p = 0; p < 8; ++p) EXPECT_EQ((*resident)[p], 1) << "young page " << p;
  ReclaimDriverStats s = driver.stats();
  EXPECT_EQ(s.reclaimed, reclaimed);
  EXPECT_EQ(s.written_back, reclaimed);
  EXPECT_GE(s.second_chances, 8u);
  // At the target: nothing more to do.
  ASSERT_OK_AND_ASSIGN(uint64_t again, driver.RunOnce());
  EXPECT_EQ(again, 0u);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 1), -1);
  EXPECT_EQ(driver.stats().swapped_in, kPages - kPages / 4);
}

TEST(ReclaimDriverTest, RateLimitsEachPass) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 1);
  ReclaimDriver driver(*space, ReclaimDriverOptions{.target_resident_fraction = 0.0,
                                                    .max_pages_per_second = 1000,
                                                    .period = absl::Milliseconds(10)});
  ASSERT_OK_AND_ASSIGN(uint64_t reclaimed, driver.RunOnce());
  EXPECT_EQ(reclaimed, 10u);  // 1000 pages/s * 10 ms
}

// non_blocking: the driver reclaims as the OOM reaper does, through non-blockable windows
// retried after EAGAIN; the refusals are counted and the data survives.
TEST(ReclaimDriverTest, NonBlockingReclaimsThroughRefusedStartsAndCountsThem) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  StartFaultSubscription injector(StartFaults{.eagain_next = 2});  // refuse the first two
  ASSERT_THAT(space->hub().Register(injector), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 1);
  ReclaimDriver driver(*space, ReclaimDriverOptions{.target_resident_fraction = 0.5,
                                                    .max_pages_per_second = 1000000,
                                                    .max_batch_pages = 1000,
                                                    .non_blocking = true});
  ASSERT_OK_AND_ASSIGN(uint64_t reclaimed, driver.RunOnce());
  EXPECT_EQ(reclaimed, kPages / 2);
  EXPECT_EQ(Resident(*space), kPages / 2);
  const ReclaimDriverStats s = driver.stats();
  EXPECT_EQ(s.eagain_retries, 2u);
  EXPECT_EQ(injector.eagains(), 2u);
  EXPECT_EQ(s.skipped, 0u);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 1), -1);
  ASSERT_THAT(space->hub().Unregister(injector), IsOk());
}

TEST(ReclaimDriverTest, ThreadReachesTheTargetAndStops) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 1);
  ReclaimDriver driver(*space, ReclaimDriverOptions{.target_resident_fraction = 0.5,
                                                    .period = absl::Milliseconds(1)});
  ASSERT_THAT(driver.Start(), IsOk());
  // A second Start while running is refused (assigning to the running std::thread would
  // terminate the process).
  EXPECT_THAT(driver.Start(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                       HasSubstr("already running")));
  const bool reached = WaitUntil([&] { return Resident(*space) <= kPages / 2; },
                                 kTestWaitLimit, absl::Milliseconds(1));
  driver.Stop();
  ASSERT_TRUE(reached) << "resident " << Resident(*space) << " of " << kPages
                       << " pages after " << kTestWaitLimit;
  EXPECT_EQ(Resident(*space), kPages / 2);
  EXPECT_THAT(driver.last_error(), IsOk());
}

TEST(ReclaimDriverTest, StartsAgainAfterStop) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ReclaimDriver driver(*space, ReclaimDriverOptions{});
  ASSERT_THAT(driver.Start(), IsOk());
  driver.Stop();
  ASSERT_THAT(driver.Start(), IsOk());
  driver.Stop();
}

TEST(ReclaimDriverTest, RejectsInvalidOptionsNamingTheField) {
  struct Case {
    ReclaimDriverOptions options;
    const char* field;
  };
  const Case cases[] = {
      {{.target_resident_fraction = -0.1}, "target_resident_fraction"},
      {{.target_resident_fraction = 1.5}, "target_resident_fraction"},
      {{.target_resident_fraction = std::nan("")}, "target_resident_fraction"},
      {{.period = absl::ZeroDuration()}, "period"},
      {{.period = -absl::Milliseconds(1)}, "period"},
      {{.period = absl::InfiniteDuration()}, "period"},
      {{.max_pages_per_second = 0}, "max_pages_per_second"},
      {{.max_batch_pages = 0}, "max_batch_pages"},
  };
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  for (const Case& c : cases) {
    SCOPED_TRACE(c.field);
    EXPECT_THAT(ValidateReclaimDriverOptions(c.options),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
    ReclaimDriver driver(*space, c.options);
    EXPECT_THAT(driver.Start(), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
    EXPECT_THAT(driver.RunOnce().status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(c.field)));
  }
  EXPECT_THAT(ValidateReclaimDriverOptions(ReclaimDriverOptions{}), IsOk());
}

// A rate times a period past 2^64 pages: the pass is capped by max_batch_pages, not an
// undefined conversion (UBSan reports one in the asan build).
TEST(ReclaimDriverTest, AHugeRateIsCappedByTheBatch) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 1);
  ReclaimDriver driver(*space,
                       ReclaimDriverOptions{.target_resident_fraction = 0.0,
                                            .max_pages_per_second = ~uint64_t{0},
                                            .period = absl::Hours(24 * 365),
                                            .max_batch_pages = ~uint64_t{0}});
  ASSERT_OK_AND_ASSIGN(uint64_t reclaimed, driver.RunOnce());
  EXPECT_EQ(reclaimed, kPages);
}

}  // namespace
}  // namespace mmuvisor::vmm
