// The guest runtime's printf-lite (guests/runtime/printf.c), compiled for the host: every
// guest message goes through it, so its conversions are checked here rather than in a VM.
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <string>

#include "gtest/gtest.h"

extern "C" size_t mmv_snprintf(char* buf, size_t size, const char* fmt, ...);

namespace {

template <typename... Args>
std::string Format(const char* fmt, Args... args) {
  char buf[256];
  const size_t n = mmv_snprintf(buf, sizeof(buf), fmt, args...);
  EXPECT_EQ(n, std::string(buf).size()) << fmt;
  return buf;
}

TEST(GuestPrintfTest, Conversions) {
  EXPECT_EQ(Format("plain"), "plain");
  EXPECT_EQ(Format("%u|%d|%d", 42u, -7, 0), "42|-7|0");
  EXPECT_EQ(Format("%x|%X", 0xbeefu, 0xbeefu), "beef|BEEF");
  EXPECT_EQ(Format("%lu|%ld", 18446744073709551615ul, -9223372036854775807l - 1),
            "18446744073709551615|-9223372036854775808");
  EXPECT_EQ(Format("%llx|%zu", 0x123456789abcdefull, size_t{77}), "123456789abcdef|77");
  EXPECT_EQ(Format("%016lx", 0x1234ul), "0000000000001234");
  EXPECT_EQ(Format("%5d|%-5d|%05d", 42, 42, -42), "   42|42   |-0042");
  EXPECT_EQ(Format("%s|%6s|%-6s|%s", "ab", "ab", "ab", static_cast<const char*>(nullptr)),
            "ab|    ab|ab    |(null)");
  EXPECT_EQ(Format("%c%c", 'o', 'k'), "ok");
  EXPECT_EQ(Format("%p", reinterpret_cast<void*>(0x100ba0)), "0x100ba0");
  EXPECT_EQ(Format("100%%"), "100%");
  EXPECT_EQ(Format("%q"), "%q");
  EXPECT_EQ(Format("end%"), "end");
}

TEST(GuestPrintfTest, TruncatesAndReportsTheFullLength) {
  char buf[8];
  EXPECT_EQ(mmv_snprintf(buf, sizeof(buf), "%s", "0123456789"), 10u);
  EXPECT_EQ(std::string(buf), "0123456");
  char one[1] = {'x'};
  EXPECT_EQ(mmv_snprintf(one, 1, "abc"), 3u);
  EXPECT_EQ(one[0], '\0');
  EXPECT_EQ(mmv_snprintf(nullptr, 0, "abc%d", 12), 5u);
}

}  // namespace
