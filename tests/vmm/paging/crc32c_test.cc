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

TEST(Crc32c, HardwareAndPortablePathsAgreeOnEveryLength) {
  std::vector<unsigned char> buf(4096 + 7);
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<unsigned char>(i * 131 + 7);
  for (size_t len : {0ul, 1ul, 7ul, 8ul, 9ul, 63ul, 4096ul, 4103ul}) {
    EXPECT_EQ(Crc32c(buf.data(), len), Crc32cPortable(buf.data(), len)) << "len " << len;
  }
}

TEST(Crc32c, ASingleFlippedBitChangesTheChecksum) {
  std::vector<unsigned char> page(4096, 0xA5);
  const uint32_t before = Crc32c(page.data(), page.size());
  page[1234] ^= 0x10;
  EXPECT_NE(Crc32c(page.data(), page.size()), before);
}

}  // namespace
}  // namespace mmuvisor::vmm
