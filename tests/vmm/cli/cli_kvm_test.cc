// The mmuvisor CLI end to end on /dev/kvm (in-process through cli::Main): exit codes for a
// clean guest, a crash and a timeout, and the one report line on stderr.
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/cli_run.h"
#include "support/kvm_test_support.h"
#include "vmm/cli/exit_codes.h"
#include "vmm/cli/run_command.h"

namespace mmuvisor::vmm::cli {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

// The spinning guest (it never ends by itself) as an ELF file under /tmp; "" (and a test
// failure naming the error) on failure, with nothing left behind.
std::string WriteSpinningGuest() {
  char path[] = "/tmp/mmuvisor-spin-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) {
    const int err = errno;
    ADD_FAILURE() << "mkstemp " << path << ": " << std::strerror(err);
    return "";
  }
  const std::vector<uint8_t> elf = vmm::testing::SpinningGuestElf();
  const ssize_t n = write(fd, elf.data(), elf.size());
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(elf.size())) {
    ADD_FAILURE() << "write " << path << ": "
                  << (n < 0 ? std::strerror(err) : "short write");
    unlink(path);
    return "";
  }
  return path;
}

TEST(CliKvmTest, RunHello64PrintsTheGreeting) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunCli({"run", "hello64"});
  EXPECT_EQ(r.code, kExitClean) << r.err;
  EXPECT_EQ(r.out, "hello64: Hello from vCPU 0 at CPL3!\nhello64: serial says hi\n");
  EXPECT_EQ(r.err, "mmuvisor: hello64: guest finished: exit code 0\n");
}

TEST(CliKvmTest, TheBinarysExitLeavesTheMachineToTheKernel) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  // main.cc's path in non-sanitizer builds: the run is reported, the Machine is left as it
  // is (VM, RAM, page-server thread) and the process _exits with the run's code once every
  // stream is flushed; the kernel's exit must then end it cleanly, with the report out.
  auto run_then_exit = [] {
    char arg0[] = "mmuvisor", arg1[] = "run", arg2[] = "hello64";
    char* argv[] = {arg0, arg1, arg2, nullptr};
    const int code = Main(3, argv, stdout, stderr, Teardown::kLeftToProcessExit);
    std::fflush(nullptr);
    _exit(code == kExitClean ? 42 : code);
  };
  EXPECT_EXIT(run_then_exit(), ::testing::ExitedWithCode(42),
              "mmuvisor: hello64: guest finished: exit code 0");
}

// The counts on the report line: passes, pages out, written back, back in.
struct ReclaimCounts {
  bool found = false;
  uint64_t passes = 0, out = 0, written = 0, in = 0;
};
ReclaimCounts ParseReclaim(const std::string& err) {
  ReclaimCounts c;
  const size_t at = err.find("; reclaim: ");
  if (at == std::string::npos) return c;
  unsigned long long p = 0, o = 0, w = 0, i = 0;
  c.found = std::sscanf(err.c_str() + at,
                        "; reclaim: %llu passes, %llu pages out (%llu written back), %llu back in",
                        &p, &o, &w, &i) == 4;
  c.passes = p, c.out = o, c.written = w, c.in = i;
  return c;
}

// --resident starts the reclaim driver and the report line carries its counts. Only what
// every schedule gives is checked: how many passes fit into the run is up to the scheduler
// (that the driver reclaims under a running guest is MachineHostTest's
// TheReclaimDriverTakesPagesOutUnderARunningGuest, with a bounded wait), and that the line
// is consistent: the CLI stops the driver before it reads the counts, so no pass is
// counted halfway (written back <= pages out).
TEST(CliKvmTest, ResidentRunsTheReclaimDriverUnderTheGuest) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  const std::string path = WriteSpinningGuest();
  ASSERT_FALSE(path.empty());
  CliRun r = RunCli({"run", path, "--mem", "2M", "--resident", "1%", "--timeout", "1s"});
  unlink(path.c_str());
  EXPECT_EQ(r.code, kExitTimedOut) << r.err;
  EXPECT_THAT(r.err, HasSubstr(": guest timed out after 1s; reclaim: "));
  const ReclaimCounts c = ParseReclaim(r.err);
  EXPECT_TRUE(c.found) << r.err;
  EXPECT_LE(c.written, c.out) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one report line: " << r.err;
}

TEST(CliKvmTest, ResidentGuestFinishesCleanAndTheLineSaysWhatReclaimDid) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunCli({"run", "smp", "--vcpus", "2", "--resident", "10%", "--timeout", "60s"});
  EXPECT_EQ(r.code, kExitClean) << r.err;
  EXPECT_THAT(r.err, StartsWith("mmuvisor: smp: guest finished: exit code 0; reclaim: "));
  EXPECT_TRUE(ParseReclaim(r.err).found) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << "one report line: " << r.err;
}

TEST(CliKvmTest, CrashExitsWithTheCrashCodeAndRegisters) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunCli({"run", "crash"});
  EXPECT_EQ(r.code, kExitCrashed);
  EXPECT_THAT(r.err, StartsWith("mmuvisor: crash: guest crashed on vcpu 0: "));
  EXPECT_THAT(r.err, HasSubstr(" rip=0x"));
  EXPECT_THAT(r.err, HasSubstr(" rsp=0x"));
  EXPECT_THAT(r.err, HasSubstr(" cr2=0 "));
}

TEST(CliKvmTest, TimeoutExitsWithTheTimeoutCode) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  const std::string path = WriteSpinningGuest();
  ASSERT_FALSE(path.empty());
  CliRun r = RunCli({"run", path, "--timeout", "300ms"});
  unlink(path.c_str());
  EXPECT_EQ(r.code, kExitTimedOut);
  EXPECT_THAT(r.err, HasSubstr(": guest timed out after 300ms\n"));
}

}  // namespace
}  // namespace mmuvisor::vmm::cli
