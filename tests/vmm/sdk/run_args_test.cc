// Run arguments (issue 17): `mmuvisor run GUEST [--seed N] [--boot-flags N] [-- ARG...]`
// parsed into RunOptions and written into mmv_boot_info (args[], nr_args, seed, flags),
// each bad value a one-line InvalidArgument naming the argument; the CPL0 default timeout;
// the guests `run` accepts.
#include <algorithm>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/strings/str_cat.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/guest_images.h"
#include "vmm/cli/flags.h"
#include "vmm/cli/guest_source.h"

namespace mmuvisor::vmm::cli {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;

constexpr absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;

absl::StatusOr<Command> Parse(std::vector<std::string> args) { return ParseCommandLine(args); }

TEST(GuestNumberTest, DecimalHexAndSizes) {
  EXPECT_EQ(*ParseGuestNumber("0"), 0u);
  EXPECT_EQ(*ParseGuestNumber("00"), 0u);
  EXPECT_EQ(*ParseGuestNumber("42"), 42u);
  EXPECT_EQ(*ParseGuestNumber("0x2a"), 42u);
  EXPECT_EQ(*ParseGuestNumber("0XFFFFFFFFFFFFFFFF"), ~0ull);
  EXPECT_EQ(*ParseGuestNumber("4K"), 4096u);
  EXPECT_EQ(*ParseGuestNumber("4M"), 4u << 20);
  EXPECT_EQ(*ParseGuestNumber("18446744073709551615"), ~0ull);
  for (const char* bad : {"", "x", "-1", "+1", "1.5", "0x", "0xg", "4Q", "ten", "0x1_0"}) {
    EXPECT_THAT(ParseGuestNumber(bad), StatusIs(kBad, HasSubstr("not a number"))) << bad;
  }
  EXPECT_THAT(ParseGuestNumber("0x10000000000000000"), StatusIs(kBad, HasSubstr("not a number"))) << "65 bits";
  EXPECT_THAT(ParseGuestNumber("18446744073709551616"), StatusIs(kBad, HasSubstr("too large")));
  EXPECT_THAT(ParseGuestNumber("17000000T"), StatusIs(kBad, HasSubstr("overflows")));
}

TEST(RunArgsTest, ArgumentsAfterTheDoubleDash) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "./g.elf", "--vcpus", "2", "--", "1",
                                         "0x10", "4K", "0"}));
  EXPECT_EQ(c.run.guest, "./g.elf");
  EXPECT_EQ(c.run.vcpus, 2u);
  EXPECT_THAT(c.run.guest_args, ElementsAre(1u, 16u, 4096u, 0u));
  // Words after "--" that look like flags are arguments too (and are then not numbers).
  EXPECT_THAT(Parse({"run", "hello64", "--", "--vcpus"}),
              StatusIs(kBad, HasSubstr("run: guest argument 0 '--vcpus': not a number")));
}

TEST(RunArgsTest, NoArgumentsByDefault) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "hello64"}));
  EXPECT_THAT(c.run.guest_args, IsEmpty());
  EXPECT_EQ(c.run.seed, 0u);
  EXPECT_EQ(c.run.boot_flags, 0u);
  ASSERT_OK_AND_ASSIGN(c, Parse({"run", "hello64", "--"}));
  EXPECT_THAT(c.run.guest_args, IsEmpty());
}

TEST(RunArgsTest, GuestAfterTheDoubleDashStillWorks) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "--", "--weird.elf", "7"}));
  EXPECT_EQ(c.run.guest, "--weird.elf");
  EXPECT_THAT(c.run.guest_args, ElementsAre(7u));
}

TEST(RunArgsTest, EightFitNineDoNot) {
  std::vector<std::string> args = {"run", "hello64", "--"};
  for (int i = 0; i < 8; ++i) args.push_back(std::to_string(i));
  ASSERT_OK_AND_ASSIGN(Command c, Parse(args));
  EXPECT_EQ(c.run.guest_args.size(), MMV_BOOT_INFO_MAX_ARGS);
  args.push_back("8");
  args.push_back("9");
  EXPECT_THAT(Parse(args), StatusIs(kBad, HasSubstr("run: too many guest arguments (10 given "
                                                    "after '--'): at most 8")));
}

TEST(RunArgsTest, NonNumericArgumentNamesItsPosition) {
  EXPECT_THAT(Parse({"run", "hello64", "--", "1", "many"}),
              StatusIs(kBad, HasSubstr("run: guest argument 1 'many': not a number (expected "
                                       "decimal, 0x hex, or a size such as 4K or 4M)")));
}

TEST(RunArgsTest, SeedAndBootFlags) {
  ASSERT_OK_AND_ASSIGN(Command c,
                       Parse({"run", "hello64", "--seed", "0xabc", "--boot-flags=5"}));
  EXPECT_EQ(c.run.seed, 0xabcu);
  EXPECT_EQ(c.run.boot_flags, 5u);
  EXPECT_THAT(Parse({"run", "hello64", "--seed", "lots"}),
              StatusIs(kBad, HasSubstr("--seed 'lots': not a number")));
  EXPECT_THAT(Parse({"run", "hello64", "--boot-flags", "0x100000000"}),
              StatusIs(kBad, HasSubstr("--boot-flags '0x100000000': more than 32 bits")));
  EXPECT_THAT(Parse({"run", "hello64", "--seed", "1", "--seed", "2"}),
              StatusIs(kBad, HasSubstr("--seed given twice")));
}

TEST(RunArgsTest, StrayWordPointsAtTheDoubleDash) {
  EXPECT_THAT(Parse({"run", "hello64", "5"}),
              StatusIs(kBad, HasSubstr("guest arguments go after '--'")));
}

TEST(RunArgsTest, DefaultTimeoutIsLongerAtCpl0) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "hello64"}));
  EXPECT_EQ(c.run.timeout, kDefaultTimeout);
  ASSERT_OK_AND_ASSIGN(c, Parse({"run", "hello64", "--cpl", "0"}));
  EXPECT_EQ(c.run.timeout, kDefaultTimeoutCpl0);
  EXPECT_GT(kDefaultTimeoutCpl0, kDefaultTimeout);
  ASSERT_OK_AND_ASSIGN(c, Parse({"run", "hello64", "--cpl", "0", "--timeout", "3s"}));
  EXPECT_EQ(c.run.timeout, absl::Seconds(3)) << "an explicit --timeout wins";
  const std::string help = RunHelp();
  EXPECT_THAT(help, HasSubstr("60s with --cpl 0"));
  for (const char* flag : {"--seed", "--boot-flags", "-- ARG..."}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
}

TEST(BootInfoArgsTest, MakeBootInfoCarriesTheRunArguments) {
  BootOptions options;
  options.seed = 7;
  options.flags = 0x5;
  options.args = {1, 2, 3};
  options.nr_args = 3;
  const BootLayout layout{.ram_size = 64u << 20, .nr_vcpus = 1, .free_start = 0x101000,
                          .free_end = (64u << 20) - MMV_STACK_SIZE};
  const mmv_boot_info info = MakeBootInfo(layout, options);
  EXPECT_EQ(info.magic, MMV_BOOT_INFO_MAGIC);
  EXPECT_EQ(info.seed, 7u);
  EXPECT_EQ(info.flags, 0x5u);
  EXPECT_EQ(info.nr_args, 3u);
  EXPECT_EQ(info.args[0], 1u);
  EXPECT_EQ(info.args[2], 3u);
  EXPECT_EQ(info.args[3], 0u);
  EXPECT_EQ(info.reserved, 0u);
}

TEST(RunGuestsTest, StressGuestsAreRefusedWithAPointerToStress) {
  for (absl::string_view name : kStressOnlyGuests) {
    ASSERT_TRUE(BuiltinGuestImage(name).ok()) << name << " is still built in (for stress)";
    EXPECT_THAT(ResolveGuest(name),
                StatusIs(kBad, HasSubstr(absl::StrCat(name, ": the guest of 'mmuvisor stress'"))));
  }
  for (absl::string_view name : kRunGuests) {
    EXPECT_TRUE(ResolveGuest(name).ok()) << name;
  }
  EXPECT_THAT(ResolveGuest("hello99"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("not a built-in guest (hello64, hello16, smp, crash)")));
}

TEST(RunGuestsTest, EveryBuiltinIsARunGuestOrAStressGuest) {
  std::vector<std::string> listed;
  for (absl::string_view n : kRunGuests) listed.emplace_back(n);
  for (absl::string_view n : kStressOnlyGuests) listed.emplace_back(n);
  std::vector<std::string> builtin;
  for (absl::string_view n : BuiltinGuestImageNames()) builtin.emplace_back(n);
  std::sort(listed.begin(), listed.end());
  std::sort(builtin.begin(), builtin.end());
  EXPECT_EQ(listed, builtin);
}

TEST(ImageErrorsTest, OnePrefixForEveryImageError) {
  EXPECT_THAT(ResolveGuest("/nonexistent/guest.elf"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/guest.elf: ELF image: No such file")));
  EXPECT_THAT(ResolveGuest("/tmp"), StatusIs(kBad, HasSubstr("/tmp: ELF image: not a regular")));
}

}  // namespace
}  // namespace mmuvisor::vmm::cli
