// GuestMemory: both backings map zeroed RAM described by one slot; every access is
// bounds-checked; the memfd really backs the mapping.
#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kRam = 4ull << 20;

class GuestMemoryTest : public ::testing::TestWithParam<MemoryBacking> {};

TEST_P(GuestMemoryTest, MapsZeroedRamAsOneSlot) {
  ASSERT_OK_AND_ASSIGN(GuestMemory mem, GuestMemory::Create(ByteSize{kRam}, GetParam()));
  EXPECT_EQ(mem.ram_size().value, kRam);
  ASSERT_EQ(mem.slots().slots().size(), 1u);
  EXPECT_EQ(mem.slots().slots()[0].gpa, Gpa{0});
  EXPECT_EQ(mem.slots().slots()[0].hva, Hva::Of(mem.host_base()));
  EXPECT_EQ(mem.host_base()[kRam - 1], 0);
  EXPECT_EQ(mem.memfd() >= 0, GetParam() == MemoryBacking::kMemfd);
}

TEST_P(GuestMemoryTest, ReadWriteRoundTripAndBounds) {
  ASSERT_OK_AND_ASSIGN(GuestMemory mem, GuestMemory::Create(ByteSize{kRam}, GetParam()));
  const uint8_t data[4] = {1, 2, 3, 4};
  ASSERT_THAT(mem.Write(Gpa{kRam - 4}, data), IsOk());
  uint8_t back[4] = {};
  ASSERT_THAT(mem.Read(Gpa{kRam - 4}, absl::MakeSpan(back)), IsOk());
  EXPECT_EQ(std::memcmp(data, back, 4), 0);
  EXPECT_EQ(mem.host_base()[kRam - 1], 4);
  EXPECT_THAT(mem.Write(Gpa{kRam - 3}, data),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("guest range gpa=0x3ffffd len=0x4 is outside guest RAM")));
  EXPECT_THAT(mem.Read(Gpa{~0ull - 1}, absl::MakeSpan(back)),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("outside guest RAM")));
  EXPECT_THAT(mem.HostRange(Gpa{0}, ByteSize{kRam}), IsOk());
  EXPECT_THAT(mem.HostRange(Gpa{1}, ByteSize{kRam}),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("outside")));
}

INSTANTIATE_TEST_SUITE_P(Backings, GuestMemoryTest,
                         ::testing::Values(MemoryBacking::kMemfd, MemoryBacking::kAnonymous),
                         [](const ::testing::TestParamInfo<MemoryBacking>& p) {
                           return std::string(MemoryBackingName(p.param));
                         });

TEST(GuestMemoryMemfdTest, TheMemfdBacksTheMapping) {
  ASSERT_OK_AND_ASSIGN(GuestMemory mem, GuestMemory::Create(ByteSize{kRam}, MemoryBacking::kMemfd));
  const uint8_t data[3] = {'k', 'v', 'm'};
  ASSERT_THAT(mem.Write(Gpa{0x2000}, data), IsOk());
  char back[3] = {};
  ASSERT_EQ(::pread(mem.memfd(), back, 3, 0x2000), 3);
  EXPECT_EQ(std::string(back, 3), "kvm");
}

TEST(GuestMemoryCreateTest, RejectsBadSizes) {
  EXPECT_THAT(GuestMemory::Create(ByteSize{0}, MemoryBacking::kMemfd),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a positive multiple")));
  EXPECT_THAT(GuestMemory::Create(ByteSize{kRam + 100}, MemoryBacking::kAnonymous),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0x400064")));
}

}  // namespace
}  // namespace mmuvisor::vmm
