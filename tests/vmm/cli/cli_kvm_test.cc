// The mmuvisor CLI end to end on /dev/kvm (in-process through cli::Main): exit codes for a
// clean guest, a crash and a timeout, and the one report line on stderr.
#include <unistd.h>

#include <cstdio>
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

TEST(CliKvmTest, ResidentRunsTheReclaimDriverUnderTheGuest) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunCli({"run", "smp", "--vcpus", "2", "--resident", "10%", "--timeout", "60s"});
  EXPECT_EQ(r.code, kExitClean) << r.err;
  EXPECT_EQ(r.err, "mmuvisor: smp: guest finished: exit code 0\n");
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
  char path[] = "/tmp/mmuvisor-spin-XXXXXX";
  int fd = mkstemp(path);
  ASSERT_GE(fd, 0);
  const std::vector<uint8_t> elf = vmm::testing::SpinningGuestElf();
  ASSERT_EQ(write(fd, elf.data(), elf.size()), static_cast<ssize_t>(elf.size()));
  close(fd);
  CliRun r = RunCli({"run", path, "--timeout", "300ms"});
  unlink(path);
  EXPECT_EQ(r.code, kExitTimedOut);
  EXPECT_THAT(r.err, HasSubstr(": guest timed out after 300ms\n"));
}

}  // namespace
}  // namespace mmuvisor::vmm::cli
