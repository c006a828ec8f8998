#include "vmm/paging/crc32c.h"

#include <cstring>
#include <vector>

#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

TEST(Crc32c, MatchesTheStandardCheckValue) {
  const char kCheck[] = "123456789";
  EXPECT_EQ(Crc32c(kCheck, 9), 0xE3069283u);
  EXPECT_EQ(Crc32cPortable(kCheck, 9), 0xE3069283u);
}

// Without SSE4.2 Crc32c is the portable path itself: comparing them would prove nothing.
#define SKIP_WITHOUT_SSE42()                                                       \
  if (!__builtin_cpu_supports("sse4.2")) GTEST_SKIP() << "no SSE4.2 on this CPU: " \
                                                         "Crc32c is the portable path"

TEST(Crc32c, HardwareAndPortablePathsAgreeOnEveryLength) {
  SKIP_WITHOUT_SSE42();
  std::vector<unsigned char> buf(4096 + 7);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131 + 7);
  for (size_t len : {0ul, 1ul, 7ul, 8ul, 9ul, 63ul, 4096ul, 4103ul}) {
    EXPECT_EQ(Crc32c(buf.data(), len), Crc32cPortable(buf.data(), len)) << "len " << len;
  }
}

// Lengths around the three-stream runs (3 * 1360 bytes) and their multiples, at every
// alignment of the start, random contents: the joined streams must equal one stream.
TEST(Crc32c, ThreeStreamRunsAgreeWithThePortablePathAtEveryLengthAndAlignment) {
  SKIP_WITHOUT_SSE42();
  std::vector<unsigned char> buf(3 * 4080 + 64);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (unsigned char& b : buf) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<unsigned char>(x);
  }
  for (size_t align = 0; align < 8; ++align) {
    for (size_t len : {4079ul, 4080ul, 4081ul, 4087ul, 4088ul, 4095ul, 4096ul, 8159ul, 8160ul,
                       8167ul, 12240ul, 12247ul}) {
      ASSERT_EQ(Crc32c(buf.data() + align, len), Crc32cPortable(buf.data() + align, len))
          << "len " << len << " align " << align;
    }
  }
  std::vector<unsigned char> zeros(4096, 0);
  EXPECT_EQ(Crc32c(zeros.data(), zeros.size()), Crc32cPortable(zeros.data(), zeros.size()));
  std::vector<unsigned char> ones(4096, 0xFF);
  EXPECT_EQ(Crc32c(ones.data(), ones.size()), Crc32cPortable(ones.data(), ones.size()));
}

TEST(Crc32c, ASingleFlippedBitChangesTheChecksum) {
  std::vector<unsigned char> page(4096, 0xA5);
  const uint32_t before = Crc32c(page.data(), page.size());
  page[1234] ^= 0x10;
  EXPECT_NE(Crc32c(page.data(), page.size()), before);
}

}  // namespace
}  // namespace mmuvisor::vmm
