// The guest SDK example (guests/sdk-example), built OUT OF TREE against the installed
// package at build time (tests/vmm/sdk/build-sdk-example) and embedded here, booted on
// /dev/kvm through the CLI (cli::Main, as `mmuvisor run FILE [flags] -- ARG...`): the guest
// sees its run arguments, seed and vCPU count, verifies memory, and asserts or crashes on
// request with the reports guests/README.md promises.
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

extern "C" const uint8_t mmv_sdk_example_begin[];
extern "C" const uint8_t mmv_sdk_example_end[];

namespace mmuvisor::vmm::cli {
namespace {

using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// Writes the embedded image to a temporary file and runs `mmuvisor run FILE args...`.
CliRun RunExample(std::vector<std::string> args) {
  char path[] = "/tmp/mmuvisor-sdk-example-XXXXXX";
  const int fd = mkstemp(path);
  const size_t size = static_cast<size_t>(mmv_sdk_example_end - mmv_sdk_example_begin);
  CliRun r;
  if (fd < 0) {
    const int err = errno;
    ADD_FAILURE() << "mkstemp " << path << ": " << std::strerror(err);
    return r;
  }
  const ssize_t n = write(fd, mmv_sdk_example_begin, size);
  const int err = errno;
  close(fd);
  if (n != static_cast<ssize_t>(size)) {
    ADD_FAILURE() << "cannot write the image to " << path << ": "
                  << (n < 0 ? std::strerror(err) : "short write");
    unlink(path);  // nothing left behind
    return r;
  }
  args.insert(args.begin(), {"run", path});
  r = RunCli(std::move(args));
  unlink(path);
  return r;
}

// The first line of `text` that starts with `prefix`, without its newline; "" if none.
std::string LineStartingWith(const std::string& text, const std::string& prefix) {
  for (size_t at = 0; at < text.size();) {
    const size_t eol = std::min(text.find('\n', at), text.size());
    if (text.compare(at, prefix.size(), prefix) == 0) return text.substr(at, eol - at);
    at = eol + 1;
  }
  return "";
}

TEST(SdkExampleKvmTest, GuestSeesItsRunArguments) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunExample({"--vcpus", "2", "--seed", "7", "--boot-flags", "0x5", "--timeout",
                         "120s", "--", "0", "256", "42"});
  EXPECT_EQ(r.code, kExitClean) << r.err;
  for (int vcpu = 0; vcpu < 2; ++vcpu) {
    const std::string v = std::to_string(vcpu);
    EXPECT_THAT(r.out, HasSubstr("sdk-example: vCPU " + v +
                                 " of 2: 3 args [0x0 0x100 0x2a] seed 0x7 flags 0x5\n"));
    // "sdk-example: vCPU i verified 256 KiB at [0x..., 0x...): 0 mismatches", each vCPU.
    EXPECT_THAT(LineStartingWith(r.out, "sdk-example: vCPU " + v + " verified 256 KiB at ["),
                EndsWith("): 0 mismatches"))
        << r.out;
    EXPECT_THAT(r.out, HasSubstr("sdk-example: vCPU " + v + " done\n"));
  }
  EXPECT_THAT(r.err, StartsWith("mmuvisor: /tmp/mmuvisor-sdk-example-"));
  EXPECT_THAT(r.err, HasSubstr(": guest finished: exit code 0\n"));
}

TEST(SdkExampleKvmTest, DefaultsWithoutArguments) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunExample({"--timeout", "120s"});
  EXPECT_EQ(r.code, kExitClean) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sdk-example: vCPU 0 of 1: 0 args [] seed 0x0 flags 0x0\n"));
  EXPECT_THAT(LineStartingWith(r.out, "sdk-example: vCPU 0 verified 4096 KiB at ["),
              EndsWith("): 0 mismatches"))
      << r.out;
}

TEST(SdkExampleKvmTest, FailedAssertionNamesFileLineAndValues) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunExample({"--timeout", "120s", "--", "1", "16", "41"});
  EXPECT_EQ(r.code, kExitGuestFailed) << r.err;
  EXPECT_THAT(r.err, StartsWith("mmuvisor: /tmp/mmuvisor-sdk-example-"));
  EXPECT_THAT(r.err, HasSubstr("guest assertion failed on vcpu 0 at sdk_example.c:"));
  EXPECT_THAT(r.err, HasSubstr(": value == 42 (values 0x29, 0x2a)\n"));
}

TEST(SdkExampleKvmTest, CrashIsReportedAsAPageFaultInsideTheImage) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  CliRun r = RunExample({"--timeout", "120s", "--", "2", "16"});
  EXPECT_EQ(r.code, kExitCrashed) << r.err;
  EXPECT_THAT(r.out, HasSubstr("sdk-example: vCPU 0 stores to address 0\n"));
  EXPECT_THAT(r.err, HasSubstr("guest crashed on vcpu 0: guest exception: page fault (#PF)"));
  EXPECT_THAT(r.err, HasSubstr(", rip inside the image [0x100000, 0x"));
  EXPECT_THAT(r.err, HasSubstr(" cr2=0 "));
}

}  // namespace
}  // namespace mmuvisor::vmm::cli
