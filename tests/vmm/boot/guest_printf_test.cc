// The guest runtime's printf-lite (guests/runtime/printf.c), compiled for the host: every
// guest message goes through it, so its conversions are checked here rather than in a VM.
#include <cstdarg>
#include <climits>
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

// Each of these used to leave its argument unread ("%#x" printed "%#" and went on), so
// every later conversion took the wrong argument.
TEST(GuestPrintfTest, FlagsLengthModifiersPrecisionAndStarWidth) {
  EXPECT_EQ(Format("%#x|%s", 0x10u, "str"), "0x10|str");
  EXPECT_EQ(Format("%#X|%#x|%#o|%#o|%#5x", 0xabu, 0u, 8u, 0u, 0x1fu), "0XAB|0|010|0| 0x1f");
  EXPECT_EQ(Format("%hu|%d", static_cast<unsigned short>(7), 42), "7|42");
  EXPECT_EQ(Format("%hd|%hhu|%hhd|%hx", 0x12345, 0x1ff, 0xff, 0x12345), "9029|255|-1|2345");
  EXPECT_EQ(Format("%.3s|%d", "abcdef", 42), "abc|42");
  const char unterminated[3] = {'x', 'y', 'z'};  // precision: never read past it (ASan)
  EXPECT_EQ(Format("%.3s|%.*s|%-4.1s|", unterminated, 2, unterminated, "ab"), "xyz|xy|a   |");
  EXPECT_EQ(Format("%*d|%s", 5, 42, "x"), "   42|x");
  EXPECT_EQ(Format("%*d|%-*d|%.*d", -4, 1, 3, 2, 3, 7), "1   |2  |007");
  EXPECT_EQ(Format("%+d % d|%+d|% 5d|%+u", 5, 6, -5, 3, 9u), "+5  6|-5|    3|9");
  EXPECT_EQ(Format("%o|%lo", 8u, 0777ul), "10|777");
  EXPECT_EQ(Format("%.5d|%.0d|%8.3x|%05.1d|%-6.3d|", 42, 0, 0xau, 7, -4),
            "00042||     00a|    7|-004  |");
  EXPECT_EQ(Format("%jd|%td|%ju", static_cast<intmax_t>(-5), static_cast<ptrdiff_t>(-6),
                   static_cast<uintmax_t>(1) << 40),
            "-5|-6|1099511627776");
  EXPECT_EQ(Format("%5%|%c|%d", 'A', 42), "%|A|42");
  EXPECT_EQ(Format("%-4c|%3c", 'a', 'b'), "a   |  b");
}

// A conversion printf-lite does not know is written as it stands and formatting stops
// there: no later argument is read (a %s taking an integer would dereference it).
TEST(GuestPrintfTest, StopsAtAnUnknownConversion) {
  EXPECT_EQ(Format("%q|%s", 0x1234, "never read"), "%q");
  EXPECT_EQ(Format("a%d %5.2f then %s", 1, 2.5, "never read"), "a1 %5.2f");
  EXPECT_EQ(Format("%ls|%s", L"wide", "never read"), "%ls");
  EXPECT_EQ(Format("%'d|%s", 1000, "never read"), "%'");
  int written = 0;
  EXPECT_EQ(Format("n%n|%s", &written, "never read"), "n%n");
  EXPECT_EQ(written, 0);
  EXPECT_EQ(Format("%lld|%llld|%s", 1ll, 2ll, "never read"), "1|%lll");
}

// Widths and precisions saturate at 10^8, as digits and as '*' arguments alike: INT_MAX
// from '*' would overflow the padding arithmetic (int) or loop 2^31 times.
TEST(GuestPrintfTest, WidthAndPrecisionSaturateAt100Million) {
  constexpr size_t kCap = 100000000;
  // '+', then 10^8 - 1 zeros and the digit 5 (the precision counts digits, not the sign).
  EXPECT_EQ(mmv_snprintf(nullptr, 0, "%+.*d", INT_MAX, 5), kCap + 1);
  EXPECT_EQ(mmv_snprintf(nullptr, 0, "%.999999999d", 5), kCap);
  EXPECT_EQ(mmv_snprintf(nullptr, 0, "%*d", INT_MAX, 5), kCap);
  EXPECT_EQ(mmv_snprintf(nullptr, 0, "%*d", INT_MIN, 5), kCap);
  // A precision bounds a %s, it does not pad it: the cap changes nothing here.
  EXPECT_EQ(Format("%.*s|", INT_MAX, "abc"), "abc|");
  // Truncated output still ends in a NUL within the buffer.
  char buf[8];
  EXPECT_EQ(mmv_snprintf(buf, sizeof(buf), "%+.*d", INT_MAX, 5), kCap + 1);
  EXPECT_EQ(std::string(buf), "+000000");
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
