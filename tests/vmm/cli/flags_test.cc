// The mmuvisor flag parser: every flag, both value forms, and each kind of
// bad input with its exact message.
#include "vmm/cli/flags.h"
#include "vmm/cli/run_command.h"

#include <functional>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "vmm/stress/stress_options.h"

namespace mmuvisor::vmm::cli {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

absl::StatusOr<Command> Parse(std::vector<std::string> args) { return ParseCommandLine(args); }

TEST(ParseSizeTest, UnitsAndErrors) {
  EXPECT_EQ(*ParseSize("4096"), 4096u);
  EXPECT_EQ(*ParseSize("64K"), 64u << 10);
  EXPECT_EQ(*ParseSize("64M"), 64u << 20);
  EXPECT_EQ(*ParseSize("64m"), 64u << 20);
  EXPECT_EQ(*ParseSize("1G"), 1ull << 30);
  EXPECT_EQ(*ParseSize("1GiB"), 1ull << 30);
  EXPECT_EQ(*ParseSize("2T"), 2ull << 40);
  EXPECT_THAT(ParseSize(""), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a size")));
  EXPECT_THAT(ParseSize("M"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a size")));
  EXPECT_THAT(ParseSize("-1M"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a size")));
  EXPECT_THAT(ParseSize("64X"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown unit 'X'")));
  EXPECT_THAT(ParseSize("0M"), StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("zero")));
  EXPECT_THAT(ParseSize("99999999999999999999"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("too large")));
  EXPECT_THAT(ParseSize("17000000T"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("overflows 64 bits")));
}

TEST(ParseTimeoutTest, FormsAndErrors) {
  EXPECT_EQ(*ParseTimeout("10s"), absl::Seconds(10));
  EXPECT_EQ(*ParseTimeout("500ms"), absl::Milliseconds(500));
  EXPECT_EQ(*ParseTimeout("3"), absl::Seconds(3));
  EXPECT_EQ(*ParseTimeout("none"), absl::InfiniteDuration());
  EXPECT_THAT(ParseTimeout("soon"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a duration")));
  EXPECT_THAT(ParseTimeout("0"), StatusIs(absl::StatusCode::kInvalidArgument,
                                          HasSubstr("positive, finite")));
  EXPECT_THAT(ParseTimeout("-5s"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("positive, finite")));
  EXPECT_THAT(ParseTimeout("inf"), StatusIs(absl::StatusCode::kInvalidArgument,
                                            HasSubstr("positive, finite")));
}

TEST(ParseCommandLineTest, NoArgumentsRunsTheDefaultStressScenario) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({}));
  EXPECT_EQ(c.kind, CommandKind::kStress);
  EXPECT_TRUE(c.stress_args.empty());
}

TEST(ParseCommandLineTest, RunDefaults) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "hello64"}));
  EXPECT_EQ(c.kind, CommandKind::kRun);
  EXPECT_EQ(c.run.guest, "hello64");
  EXPECT_EQ(c.run.mem_bytes, kDefaultMemBytes);
  EXPECT_EQ(c.run.vcpus, 1u);
  EXPECT_EQ(c.run.timeout, kDefaultTimeout);
  EXPECT_EQ(c.run.backing, MemoryBacking::kMemfd);
  EXPECT_EQ(c.run.privilege, GuestPrivilege::kUser);
  EXPECT_EQ(c.run.kvm_path, "/dev/kvm");
}

TEST(ParseCommandLineTest, RunWithEveryFlagInBothForms) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "--mem", "128M", "smp", "--vcpus=4",
                                         "--timeout", "2s", "--memory=anon", "--cpl", "0",
                                         "--kvm", "/tmp/kvm"}));
  EXPECT_EQ(c.kind, CommandKind::kRun);
  EXPECT_EQ(c.run.guest, "smp");
  EXPECT_EQ(c.run.mem_bytes, 128u << 20);
  EXPECT_EQ(c.run.vcpus, 4u);
  EXPECT_EQ(c.run.timeout, absl::Seconds(2));
  EXPECT_EQ(c.run.backing, MemoryBacking::kAnonymous);
  EXPECT_EQ(c.run.privilege, GuestPrivilege::kKernel);
  EXPECT_EQ(c.run.kvm_path, "/tmp/kvm");
}

TEST(ParseCommandLineTest, ResidentTakesAPercentageOrAFraction) {
  ASSERT_OK_AND_ASSIGN(Command none, Parse({"run", "hello64"}));
  EXPECT_FALSE(none.run.resident_fraction.has_value());
  ASSERT_OK_AND_ASSIGN(Command pct, Parse({"run", "hello64", "--resident", "25%"}));
  EXPECT_EQ(pct.run.resident_fraction, 0.25);
  ASSERT_OK_AND_ASSIGN(Command frac, Parse({"run", "hello64", "--resident=0.5"}));
  EXPECT_EQ(frac.run.resident_fraction, 0.5);
  for (const char* bad : {"0%", "150%", "-1", "lots", "%"}) {
    EXPECT_THAT(Parse({"run", "hello64", "--resident", bad}),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("--resident")))
        << bad;
  }
}

TEST(ParseCommandLineTest, DoubleDashEndsFlags) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "--", "--weird-name.elf"}));
  EXPECT_EQ(c.run.guest, "--weird-name.elf");
}

TEST(ParseCommandLineTest, Help) {
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"--help"}));
  EXPECT_EQ(c.kind, CommandKind::kHelp);
  EXPECT_EQ(c.help_topic, "");
  ASSERT_OK_AND_ASSIGN(c, Parse({"run", "hello64", "-h"}));
  EXPECT_EQ(c.kind, CommandKind::kHelp);
  EXPECT_EQ(c.help_topic, "run");
  ASSERT_OK_AND_ASSIGN(c, Parse({"help", "run"}));
  EXPECT_EQ(c.help_topic, "run");
  EXPECT_THAT(Parse({"help", "fly"}), StatusIs(absl::StatusCode::kInvalidArgument,
                                               HasSubstr("help: unknown command 'fly'")));
}

TEST(ParseCommandLineTest, HelpTextExplainsEveryFlag) {
  const std::string help = RunHelp();
  for (const char* flag : {"--mem", "--vcpus", "--timeout", "--memory", "--cpl", "--kvm",
                           "--help", "GUEST"}) {
    EXPECT_THAT(help, HasSubstr(flag));
  }
  EXPECT_THAT(GeneralHelp(), HasSubstr("Exit status"));
}

TEST(ParseCommandLineTest, BadInputNamesTheProblem) {
  const absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;
  EXPECT_THAT(Parse({"fly"}), StatusIs(kBad, HasSubstr("unknown command 'fly'")));
  EXPECT_THAT(Parse({"--mem", "1G"}), StatusIs(kBad, HasSubstr("unknown flag '--mem' before")));
  EXPECT_THAT(Parse({"run"}), StatusIs(kBad, HasSubstr("run: missing GUEST")));
  EXPECT_THAT(Parse({"run", "a", "b"}),
              StatusIs(kBad, HasSubstr("unexpected argument 'b' (GUEST is already 'a')")));
  EXPECT_THAT(Parse({"run", "hello64", "--bogus"}),
              StatusIs(kBad, HasSubstr("run: unknown flag '--bogus'")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem"}), StatusIs(kBad, HasSubstr("--mem needs a value")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem="}), StatusIs(kBad, HasSubstr("--mem needs a value")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem", "3000"}),
              StatusIs(kBad, HasSubstr("--mem '3000': not a multiple of the 4096-byte page")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem", "64K"}),
              StatusIs(kBad, HasSubstr("--mem '64K': below the 2M minimum")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem", "lots"}),
              StatusIs(kBad, HasSubstr("--mem 'lots': not a size")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem", "1G", "--mem", "2G"}),
              StatusIs(kBad, HasSubstr("--mem given twice")));
  EXPECT_THAT(Parse({"run", "hello64", "--vcpus", "0"}),
              StatusIs(kBad, HasSubstr("--vcpus '0': must be 1 to 32")));
  EXPECT_THAT(Parse({"run", "hello64", "--vcpus", "33"}),
              StatusIs(kBad, HasSubstr("--vcpus '33': must be 1 to 32")));
  EXPECT_THAT(Parse({"run", "hello64", "--vcpus", "two"}),
              StatusIs(kBad, HasSubstr("--vcpus 'two': not a whole number")));
  EXPECT_THAT(Parse({"run", "hello64", "--vcpus", "-1"}),
              StatusIs(kBad, HasSubstr("--vcpus '-1': not a whole number")));
  EXPECT_THAT(Parse({"run", "hello64", "--timeout", "soon"}),
              StatusIs(kBad, HasSubstr("--timeout 'soon': not a duration")));
  EXPECT_THAT(Parse({"run", "hello64", "--memory", "thp"}),
              StatusIs(kBad, HasSubstr("--memory 'thp': must be 'memfd' or 'anon'")));
  EXPECT_THAT(Parse({"run", "hello64", "--cpl", "1"}),
              StatusIs(kBad, HasSubstr("--cpl '1': must be 0 or 3")));
}

// CLI11 reads the words; these are the places where the project's rule differs from its
// default, kept as before.
TEST(ParseCommandLineTest, ValuesAndHelpAsBefore) {
  const absl::StatusCode kBad = absl::StatusCode::kInvalidArgument;
  // "--mem=" does not take the next word as its value; a flag takes the next word even
  // when it looks like a flag.
  EXPECT_THAT(Parse({"run", "hello64", "--mem=", "64M"}),
              StatusIs(kBad, HasSubstr("--mem needs a value")));
  EXPECT_THAT(Parse({"run", "hello64", "--kvm", "--vcpus"}), ::mmuvisor::testing::IsOk());
  EXPECT_THAT(Parse({"run", "hello64", "--help=1"}),
              StatusIs(kBad, HasSubstr("--help '1': takes no value")));
  EXPECT_THAT(Parse({"run", "hello64", "--mem", "1G", "--mem=1G"}),
              StatusIs(kBad, HasSubstr("--mem given twice")));
  // -h/--help and a bad flag: whichever comes first.
  ASSERT_OK_AND_ASSIGN(Command c, Parse({"run", "-h", "--mem", "lots"}));
  EXPECT_EQ(c.help_topic, "run");
  EXPECT_THAT(Parse({"run", "--mem", "lots", "-h"}), StatusIs(kBad, HasSubstr("--mem 'lots'")));
  // A command name after the command is a word of that command.
  ASSERT_OK_AND_ASSIGN(c, Parse({"run", "stress"}));
  EXPECT_EQ(c.run.guest, "stress");
  ASSERT_OK_AND_ASSIGN(c, Parse({"stress", "--json", "run"}));
  EXPECT_EQ(c.kind, CommandKind::kStress);
  EXPECT_THAT(c.stress_args, ::testing::ElementsAre("--json", "run"));
  ASSERT_OK_AND_ASSIGN(c, Parse({"stress", "--mem", "6M", "--", "x"}));
  EXPECT_THAT(c.stress_args, ::testing::ElementsAre("--mem", "6M", "--", "x"));
  EXPECT_THAT(Parse({"--", "run"}), StatusIs(kBad, HasSubstr("unknown flag '--' before")));
  EXPECT_THAT(Parse({"help", "run", "x"}),
              StatusIs(kBad, HasSubstr("help: unexpected argument 'x'")));
}

TEST(ParseCommandLineTest, GeneralHelpListsTheCommands) {
  const std::string help = GeneralHelp();
  for (const char* command : {"run", "stress", "help", "-h, --help", "Exit status"}) {
    EXPECT_THAT(help, HasSubstr(command));
  }
  EXPECT_THAT(stress::StressHelp(), HasSubstr("--test-hostile-hits-verifier"));
}

// `run FLAG text` (after `guest`) and `stress FLAG text` for each text: both accept it with
// equal values (`same` compares the two parses) or refuse it with the same status.
void ExpectRunAndStressAnswerTheSame(
    const std::string& guest, const std::string& flag, const std::vector<std::string>& texts,
    const std::function<void(const RunOptions&, const stress::StressOptions&,
                             const std::string&)>& same) {
  for (const std::string& text : texts) {
    absl::StatusOr<Command> run = Parse({"run", guest, flag, text});
    absl::StatusOr<stress::StressOptions> stress =
        stress::ParseStressFlags(std::vector<std::string>{flag, text});
    ASSERT_EQ(run.ok(), stress.ok()) << flag << " " << text << ": run " << run.status()
                                     << ", stress " << stress.status();
    if (run.ok()) {
      same(run->run, *stress, text);
    } else {
      EXPECT_EQ(run.status(), stress.status()) << flag << " " << text;
    }
  }
}

// `run --mem X` and `stress --mem X` go through one parser (vmm/memory/guest_mem_size.h):
// the same text gets the same answer, accepted or refused with the same message.
TEST(MemFlagTest, RunAndStressAnswerTheSame) {
  ExpectRunAndStressAnswerTheSame(
      "hello64", "--mem",
      {"1t", "1T", "64M", "2MiB", "3000", "64K", "1M", "lots", "12Q", "0", "0M",
       "99999999999999999999", "17000000T"},
      [](const RunOptions& run, const stress::StressOptions& stress, const std::string& text) {
        EXPECT_EQ(run.mem_bytes, stress.mem_bytes) << text;
      });
}

// `--vcpus` too: one parser (vmm/stress/command_line.h ParseVcpus) for both commands.
TEST(VcpusFlagTest, RunAndStressAnswerTheSame) {
  ExpectRunAndStressAnswerTheSame(
      "smp", "--vcpus", {"1", "2", "32", "0", "33", "-1", "+3", "two", "4294967297"},
      [](const RunOptions& run, const stress::StressOptions& stress, const std::string& text) {
        EXPECT_EQ(run.vcpus, stress.vcpus) << text;
      });
}

// `--slots`: one parser (cmdline::ParseSlots) for both commands; KVM's own limit is checked
// when the VM is made.
TEST(SlotsFlagTest, RunAndStressAnswerTheSame) {
  ExpectRunAndStressAnswerTheSame(
      "hello64", "--slots", {"1", "64", "4096", "0", "4097", "+2", "-1", "many", ""},
      [](const RunOptions& run, const stress::StressOptions& stress, const std::string& text) {
        EXPECT_EQ(run.ram_slots, stress.ram_slots) << text;
      });
  EXPECT_THAT(Parse({"run", "hello64", "--slots", "0"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--slots '0': must be 1 to 4096")));
}

// `--aliases`: one parser (cmdline::ParseAliases) for both commands.
TEST(AliasesFlagTest, RunAndStressAnswerTheSame) {
  ExpectRunAndStressAnswerTheSame(
      "hello64", "--aliases", {"0", "3", "8", "9", "-1", "+2", "three", ""},
      [](const RunOptions& run, const stress::StressOptions& stress, const std::string& text) {
        EXPECT_EQ(run.ram_aliases, stress.aliases) << text;
      });
  EXPECT_THAT(Parse({"run", "hello64", "--aliases", "9"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--aliases '9': must be 0 to 8")));
}

// `run`'s dirty log when --dirty is not given: auto with --resident (reclaim reads a log
// where one does not cost KVM's fault prefetch), none without (nothing reclaims; the log
// would only cost the boot and first writes). The page server likewise runs only with
// --resident.
TEST(DirtyFlagTest, RunDefaultsToNoLogAndNoPageServerUnlessSomethingReclaims) {
  ASSERT_OK_AND_ASSIGN(Command plain, Parse({"run", "hello64"}));
  EXPECT_EQ(RunMachineConfig(plain.run, nullptr).dirty_log, DirtyLogSource::kNone);
  EXPECT_FALSE(RunMachineConfig(plain.run, nullptr).page_server);
  ASSERT_OK_AND_ASSIGN(Command resident, Parse({"run", "hello64", "--resident", "0.5"}));
  EXPECT_EQ(RunMachineConfig(resident.run, nullptr).dirty_log, DirtyLogSource::kAuto);
  EXPECT_TRUE(RunMachineConfig(resident.run, nullptr).page_server);
  ASSERT_OK_AND_ASSIGN(Command asked, Parse({"run", "hello64", "--dirty", "ring"}));
  EXPECT_EQ(RunMachineConfig(asked.run, nullptr).dirty_log, DirtyLogSource::kRing);
}

// With --resident the page server has one handler per vCPU, as in `stress`.
TEST(ResidentFlagTest, RunGivesThePageServerOneHandlerPerVcpu) {
  ASSERT_OK_AND_ASSIGN(Command three,
                       Parse({"run", "smp", "--vcpus", "3", "--resident", "0.5"}));
  EXPECT_EQ(RunMachineConfig(three.run, nullptr).host.page_server_threads, 3);
  ASSERT_OK_AND_ASSIGN(Command one, Parse({"run", "hello64", "--resident", "0.5"}));
  EXPECT_EQ(RunMachineConfig(one.run, nullptr).host.page_server_threads, 1);
}

// `--dirty`: the same words and the same refusal in both commands; the default is the bitmap.
TEST(DirtyFlagTest, RunAndStressAnswerTheSame) {
  ASSERT_OK_AND_ASSIGN(Command plain, Parse({"run", "hello64"}));
  EXPECT_EQ(plain.run.dirty_log, std::nullopt);  // run_command: bitmap with --resident, else none
  ExpectRunAndStressAnswerTheSame(
      "hello64", "--dirty", {"bitmap", "ring", "auto", "none", "Ring", "pml", ""},
      [](const RunOptions& run, const stress::StressOptions& stress, const std::string& text) {
        ASSERT_TRUE(run.dirty_log.has_value()) << text;
        EXPECT_EQ(*run.dirty_log, stress.dirty_log) << text;
        EXPECT_STREQ(DirtyLogSourceName(*run.dirty_log), text.c_str());
      });
  EXPECT_THAT(Parse({"run", "hello64", "--dirty", "pml"}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("--dirty 'pml': must be bitmap, ring, auto or none")));
}

}  // namespace
}  // namespace mmuvisor::vmm::cli
