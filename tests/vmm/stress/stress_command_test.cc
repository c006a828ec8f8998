// `mmuvisor stress` as the CLI runs it (RunStressCommand): exit codes, the auto fallback
// to host threads with its notice, the report on stdout, and bad flags.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <future>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/stress/stress_command.h"
#include "vmm/stress/stress_kvm.h"

namespace mmuvisor::vmm::stress {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

struct Captured {
  int code = -1;
  std::string out, err;
};

Captured RunCli(std::vector<std::string> args) {
  char *out_buf = nullptr, *err_buf = nullptr;
  size_t out_len = 0, err_len = 0;
  std::FILE* out = open_memstream(&out_buf, &out_len);
  std::FILE* err = open_memstream(&err_buf, &err_len);
  Captured c;
  c.code = RunStressCommand(args, out, err, /*out_is_tty=*/false);
  std::fclose(out);
  std::fclose(err);
  c.out.assign(out_buf, out_len);
  c.err.assign(err_buf, err_len);
  std::free(out_buf);
  std::free(err_buf);
  return c;
}

const std::vector<std::string> kShort = {"--mem", "6M", "--duration", "1s"};

std::vector<std::string> With(std::vector<std::string> extra) {
  std::vector<std::string> args = kShort;
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

// For runs that must pass: one round per vCPU, bounded by 20 s. (With kShort's 1 s a
// loaded machine could end the run before a round finished: a vacuous run, FAIL.)
std::vector<std::string> Passing(std::vector<std::string> extra) {
  std::vector<std::string> args = {"--mem", "6M", "--rounds", "1", "--duration", "20s"};
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

TEST(StressCommandTest, HostThreadRunPrintsProgressAndAPassingReport) {
  const Captured c = RunCli(Passing({"--mode", "host-threads"}));
  EXPECT_EQ(c.code, kStressExitPass) << c.out << c.err;
  EXPECT_THAT(c.out, HasSubstr("verdict: PASS"));
  EXPECT_THAT(c.out, HasSubstr("] verified "));  // a plain progress line (not a tty)
}

TEST(StressCommandTest, AutoFallsBackToHostThreadsAndSaysWhy) {
  const Captured c = RunCli(Passing({"--kvm", "/nonexistent/kvm"}));
  EXPECT_EQ(c.code, kStressExitPass) << c.out << c.err;
  EXPECT_THAT(c.out, HasSubstr("KVM run not possible here (needs /nonexistent/kvm"));
  EXPECT_THAT(c.out, HasSubstr("verdict: PASS"));
}

// A flag only KVM has a use for: without KVM, auto mode says KVM cannot run here (exit 5),
// instead of falling back to host threads and refusing the flag there as bad input.
TEST(StressCommandTest, AutoWithAKvmOnlyFlagWithoutKvmIsAHostErrorNotAFallback) {
  const Captured c = RunCli(With({"--kvm", "/nonexistent/kvm", "--slots", "2"}));
  EXPECT_EQ(c.code, kStressExitHostError) << c.out << c.err;
  EXPECT_THAT(c.err, HasSubstr("needs /nonexistent/kvm"));
  EXPECT_THAT(c.err, HasSubstr("--slots 2: host-thread runs have no memslots"));
  EXPECT_THAT(c.out, Not(HasSubstr("running the memstress workload on host threads")));
}

TEST(StressCommandTest, ForcedKvmModeWithoutKvmIsAHostError) {
  const Captured c = RunCli(With({"--mode", "kvm", "--kvm", "/nonexistent/kvm"}));
  EXPECT_EQ(c.code, kStressExitHostError);
  EXPECT_THAT(c.err, HasSubstr("needs /nonexistent/kvm: "));
}

TEST(StressCommandTest, FailingRunExitsOne) {
  const Captured c = RunCli(With({"--mode", "host-threads", "--policy", "legacy", "--eagain",
                               "1", "--oom-reap-rate", "200", "--fault-timeout", "300ms"}));
  EXPECT_EQ(c.code, kStressExitFail) << c.out;
  EXPECT_THAT(c.out, HasSubstr("verdict: FAIL"));
  EXPECT_THAT(c.out, HasSubstr("in_progress="));
}

// A report file that cannot be written is refused before the run, not found out after it
// (which would lose the run's verdict).
TEST(StressCommandTest, AnUnwritableReportPathExitsTwoBeforeTheRun) {
  for (const char* flag : {"--json", "--trace"}) {
    const Captured c = RunCli(With({"--mode", "host-threads", flag, "/nonexistent-dir/r.json"}));
    EXPECT_EQ(c.code, kStressExitBadInput) << flag;
    EXPECT_THAT(c.err, HasSubstr(std::string(flag) + " '/nonexistent-dir/r.json': cannot write"))
        << flag;
    EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << "the run started: " << c.out;
  }
}

// --hostile-log is a report file too: checked before the run with the others (and not
// the same file as one of them), so a bad path costs no run.
TEST(StressCommandTest, AnUnwritableHostileLogExitsTwoBeforeTheRun) {
  const Captured c = RunCli(With({"--mode", "kvm", "--guest", "hostile", "--hostile-log",
                                  "/nonexistent-dir/h.log"}));
  EXPECT_EQ(c.code, kStressExitBadInput) << c.out << c.err;
  EXPECT_THAT(c.err, HasSubstr("--hostile-log '/nonexistent-dir/h.log': cannot write"));
  EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << "the run started: " << c.out;
  const Captured same = RunCli(
      With({"--guest", "hostile", "--json", "h.json", "--hostile-log", "h.json"}));
  EXPECT_EQ(same.code, kStressExitBadInput) << same.out << same.err;
  EXPECT_THAT(same.err, HasSubstr("--hostile-log 'h.json': the same file as --json"));
}

// Two report flags naming one file by different spellings: the trace would overwrite the
// JSON report. Refused before the run (exit 2), the file the check created removed again.
TEST(StressCommandTest, OneReportFileUnderTwoSpellingsIsRefused) {
  char dir_template[] = "/tmp/stress-same-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const Captured c = RunCli(With({"--mode", "host-threads", "--json", dir + "/a.json",
                                  "--trace", dir + "/./a.json"}));
  EXPECT_EQ(c.code, kStressExitBadInput) << c.out << c.err;
  EXPECT_THAT(c.err, HasSubstr("--trace '" + dir + "/./a.json': the same file as --json '" +
                               dir + "/a.json'"));
  EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << "the run started: " << c.out;
  EXPECT_NE(access((dir + "/a.json").c_str(), F_OK), 0) << "left behind";
  std::remove((dir + "/a.json").c_str());
  rmdir(dir.c_str());
}

// A FIFO with no reader as a report file: refused at once (exit 2, one line naming it),
// not waited for (an open for writing would block until a reader came: for ever, before
// anything was printed). Run on a thread so that a hang fails the test instead of
// hanging it: after a generous bound the test opens the reader itself, which lets the
// run go on, and drains what it writes until it ends.
TEST(StressCommandTest, AFifoWithNoReaderIsRefusedNotWaitedFor) {
  char dir_template[] = "/tmp/stress-fifo-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string fifo = dir + "/report.fifo";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << std::strerror(errno);
  for (const char* flag : {"--json", "--trace"}) {
    std::future<Captured> run = std::async(std::launch::async, [&] {
      return RunCli(With({"--mode", "host-threads", flag, fifo}));
    });
    if (run.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
      ADD_FAILURE() << flag << ": still waiting for the FIFO's reader after 60 s";
      const int reader = open(fifo.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
      char buf[4096];
      while (run.wait_for(std::chrono::milliseconds(10)) != std::future_status::ready) {
        if (reader >= 0) (void)!read(reader, buf, sizeof buf);
      }
      if (reader >= 0) close(reader);
    }
    const Captured c = run.get();
    EXPECT_EQ(c.code, kStressExitBadInput) << flag << c.out << c.err;
    EXPECT_EQ(c.err, std::string("mmuvisor stress: ") + flag + " '" + fifo +
                         "': cannot write " + fifo + ": No such device or address\n");
    EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << flag;
  }
  std::remove(fifo.c_str());
  rmdir(dir.c_str());
}

// A report file that still cannot be written after the run (a full device) loses nothing
// of the run: the report, verdict first, then the error naming the file. A FAIL stays
// exit 1; a PASS whose file is missing is a host error (exit 5), not "bad flags".
TEST(StressCommandTest, AReportWriteThatFailsAfterTheRunKeepsTheVerdict) {
  if (access("/dev/full", W_OK) != 0) GTEST_SKIP() << "needs /dev/full";
  const Captured pass = RunCli(Passing({"--mode", "host-threads", "--json", "/dev/full"}));
  EXPECT_EQ(pass.code, kStressExitHostError) << pass.out << pass.err;
  EXPECT_THAT(pass.out, HasSubstr("verdict: PASS"));
  EXPECT_THAT(pass.out, Not(HasSubstr("json report:")));
  EXPECT_THAT(pass.err, HasSubstr("writing /dev/full failed: No space left on device"));

  const Captured fail =
      RunCli(With({"--mode", "host-threads", "--policy", "legacy", "--eagain", "1",
                   "--oom-reap-rate", "200", "--fault-timeout", "300ms", "--trace", "/dev/full"}));
  EXPECT_EQ(fail.code, kStressExitFail) << fail.out << fail.err;
  EXPECT_THAT(fail.out, HasSubstr("verdict: FAIL"));
  EXPECT_THAT(fail.err, HasSubstr("writing /dev/full failed"));
}

// The check before the run neither truncates an existing report nor leaves an empty file
// behind when the run cannot start; a run that finishes writes its report.
TEST(StressCommandTest, ARunThatCannotStartLeavesTheReportFilesAsTheyWere) {
  char dir_template[] = "/tmp/stress-report-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr);
  const std::string dir = dir_template;
  const std::string fresh = dir + "/fresh.json", old = dir + "/old.json";
  const std::string trace = dir + "/trace.json";
  {
    std::FILE* f = std::fopen(old.c_str(), "w");
    ASSERT_NE(f, nullptr);
    std::fputs("an earlier report", f);
    std::fclose(f);
  }
  auto contents = [](const std::string& path) -> std::string {
    std::FILE* f = std::fopen(path.c_str(), "r");
    if (f == nullptr) return "<missing>";
    std::string text;
    char buf[256];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
    std::fclose(f);
    return text;
  };
  for (const std::string& json : {fresh, old}) {
    const Captured c = RunCli(
        With({"--mode", "kvm", "--kvm", "/nonexistent/kvm", "--json", json, "--trace", trace}));
    EXPECT_EQ(c.code, kStressExitHostError) << c.out << c.err;
  }
  EXPECT_EQ(contents(fresh), "<missing>");
  EXPECT_EQ(contents(trace), "<missing>");
  EXPECT_EQ(contents(old), "an earlier report");

  const Captured ran = RunCli(Passing({"--mode", "host-threads", "--json", old}));
  EXPECT_EQ(ran.code, kStressExitPass) << ran.out << ran.err;
  EXPECT_THAT(contents(old), HasSubstr("\"verdict\""));
  std::remove(old.c_str());
  std::remove(fresh.c_str());
  std::remove(trace.c_str());
  rmdir(dir.c_str());
}

// Under KVM without --mem (2 MiB) an --op-pages above the workload's pages is refused
// naming --op-pages, not as a --mem too small for the vCPUs.
TEST(StressCommandTest, KvmRefusesTooManyOpPagesNamingTheFlag) {
  if (absl::Status kvm = ProbeKvm("/dev/kvm"); !kvm.ok()) GTEST_SKIP() << kvm.message();
  const Captured c =
      RunCli({"--mode", "kvm", "--op-pages", "600", "--duration", "1s", "--no-progress"});
  EXPECT_EQ(c.code, kStressExitBadInput) << c.out << c.err;
  EXPECT_THAT(c.err, HasSubstr("mmuvisor stress: --op-pages 600: not below the "));
  EXPECT_THAT(c.err, Not(HasSubstr("too small for 2 vCPUs")));
  EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << c.out;
}

// Host threads without --mem (32 MiB, 8192 pages): a larger --op-pages is refused, also
// when --mode auto falls back to host threads, not silently clamped.
TEST(StressCommandTest, HostThreadsRefuseMoreOpPagesThanTheDefaultGuestHas) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--host-threads", "--op-pages", "100000", "--duration", "1s"},
        std::vector<std::string>{"--kvm", "/nonexistent/kvm", "--op-pages", "100000",
                                 "--duration", "1s"}}) {
    const Captured c = RunCli(args);
    EXPECT_EQ(c.code, kStressExitBadInput) << args[0] << c.out << c.err;
    EXPECT_THAT(c.err, HasSubstr("--op-pages")) << args[0];
    EXPECT_THAT(c.err, HasSubstr("more than the guest's 8192 pages")) << args[0];
    EXPECT_THAT(c.out, Not(HasSubstr("verdict"))) << args[0] << c.out;
  }
}

TEST(StressCommandTest, BadFlagsExitTwo) {
  const Captured c = RunCli({"--policy", "newest"});
  EXPECT_EQ(c.code, kStressExitBadInput);
  EXPECT_THAT(c.err, HasSubstr("--policy 'newest'"));
  const Captured churn = RunCli({"--memslot-churn", "-3"});
  EXPECT_EQ(churn.code, kStressExitBadInput);
  EXPECT_THAT(churn.err, HasSubstr("--memslot-churn '-3'"));
  const Captured mirror = RunCli({"--aliases", "2", "--dma-path", "mirror"});
  EXPECT_EQ(mirror.code, kStressExitBadInput);
  EXPECT_THAT(mirror.err, HasSubstr("not with --dma-path mirror"));
}

}  // namespace
}  // namespace mmuvisor::vmm::stress
