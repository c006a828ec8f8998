// HostMapping (notifier/base/host_mapping.h): AnonymousZeroed is zero on creation without
// being written; one owner across moves; an error with context when the mapping cannot
// be made.
#include "notifier/base/host_mapping.h"

#include <cstdint>
#include <cstdio>
#include <fstream>
#include <string>
#include <utility>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace mmuvisor {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

// Resident pages of this process's mapping that starts at `addr`, from /proc/self/smaps.
int64_t ResidentKib(const void* addr) {
  std::ifstream smaps("/proc/self/smaps");
  const uintptr_t want = reinterpret_cast<uintptr_t>(addr);
  std::string line;
  bool in = false;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2) {
      in = lo == want;
      continue;
    }
    long kib = 0;
    if (in && std::sscanf(line.c_str(), "Rss: %ld kB", &kib) == 1) return kib;
  }
  return -1;
}

TEST(HostMappingTest, AnonymousZeroedStartsZeroAndCostsAPageOnlyWhereWritten) {
  constexpr size_t kBytes = 64 * 4096;
  ASSERT_OK_AND_ASSIGN(HostMapping t, HostMapping::AnonymousZeroed(kBytes, "test table"));
  ASSERT_NE(t.data(), nullptr);
  EXPECT_EQ(t.size(), kBytes);
  EXPECT_EQ(ResidentKib(t.data()), 0) << "nothing resident before the first write";
  t.data()[5 * 4096 + 7] = 0xab;
  EXPECT_EQ(ResidentKib(t.data()), 4) << "one page after one write";
  for (size_t i = 0; i < kBytes; i += 512) {
    ASSERT_EQ(t.data()[i + (i == 5 * 4096 ? 7 : 0)], i == 5 * 4096 ? 0xab : 0) << i;
  }
}

TEST(HostMappingTest, MovingHandsOverTheMapping) {
  ASSERT_OK_AND_ASSIGN(HostMapping a, HostMapping::AnonymousZeroed(4096, "a"));
  a.data()[0] = 1;
  uint8_t* const mapping = a.data();
  HostMapping b(std::move(a));
  EXPECT_EQ(a.data(), nullptr);  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(a.size(), 0u);
  EXPECT_EQ(b.data(), mapping);
  EXPECT_EQ(b.data()[0], 1);
  HostMapping c;
  c = std::move(b);
  EXPECT_EQ(c.data(), mapping);
  EXPECT_EQ(b.data(), nullptr);  // NOLINT(bugprone-use-after-move)
}

TEST(HostMappingTest, BadSizesAreErrorsNamingTheTable) {
  EXPECT_THAT(HostMapping::AnonymousZeroed(0, "empty table").status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty table")));
  // More address space than x86-64 user space has: mmap fails (ENOMEM) even with
  // MAP_NORESERVE.
  absl::StatusOr<HostMapping> huge =
      HostMapping::AnonymousZeroed(size_t{1} << 62, "huge table");
  ASSERT_FALSE(huge.ok());
  EXPECT_THAT(huge.status().message(), HasSubstr("huge table"));
  EXPECT_THAT(huge.status().message(), HasSubstr("mmap"));
}

}  // namespace
}  // namespace mmuvisor
