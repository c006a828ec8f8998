// Input checks that need no KVM: opening a KVM device path that is missing or is not KVM,
// the human messages for each open() errno, and guest image files (missing, empty,
// oversized, not regular, built-in names).
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <future>
#include <string>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "absl/time/time.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/cli/guest_source.h"
#include "notifier/base/errno_status.h"
#include "vmm/kvm/system.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

TEST(KvmOpenTest, MissingDeviceIsNotFoundWithAHumanMessage) {
  EXPECT_THAT(KvmSystem::Open("/nonexistent/kvm"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("cannot open /nonexistent/kvm: it does not exist (KVM is not "
                                 "available on this host")));
}

TEST(KvmOpenTest, ADeviceThatIsNotKvmFailsTheApiVersionIoctl) {
  EXPECT_THAT(KvmSystem::Open("/dev/null"),
              StatusIs(absl::StatusCode::kInternal,
                       HasSubstr("KVM_GET_API_VERSION: Inappropriate ioctl for device")));
}

TEST(KvmOpenTest, EachOpenErrnoHasItsOwnMessage) {
  EXPECT_THAT(KvmOpenErrorMessage("/dev/kvm", EACCES),
              HasSubstr("/dev/kvm: permission denied (add your user to the 'kvm' group"));
  EXPECT_THAT(KvmOpenErrorMessage("/dev/kvm", ENODEV),
              HasSubstr("/dev/kvm: no KVM driver is bound to it"));
  EXPECT_THAT(KvmOpenErrorMessage("/dev/kvm", EBUSY), HasSubstr("/dev/kvm: Device or resource busy"));
  EXPECT_EQ(ErrnoToCode(EACCES), absl::StatusCode::kPermissionDenied);
  EXPECT_EQ(ErrnoToCode(ENODEV), absl::StatusCode::kNotFound);
  EXPECT_EQ(ErrnoToStatus(EINVAL, "KVM_SET_USER_MEMORY_REGION slot=3 gpa=0x100000 size=0x200000")
                .ToString(),
            "INVALID_ARGUMENT: KVM_SET_USER_MEMORY_REGION slot=3 gpa=0x100000 size=0x200000: "
            "Invalid argument");
}

class ImageFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/mmuvisor-image-XXXXXX";
    int fd = mkstemp(tmpl);
    ASSERT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
  }
  void TearDown() override { unlink(path_.c_str()); }
  std::string path_;
};

TEST_F(ImageFileTest, EmptyFile) {
  EXPECT_THAT(cli::ReadImageFile(path_),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr(": ELF image: file is empty")));
}

// OutOfRange, the code LoadElf gives for the same limit (elf_loader.h).
TEST_F(ImageFileTest, OversizedFileIsRejectedBeforeReading) {
  ASSERT_EQ(truncate(path_.c_str(), 65ll << 20), 0);  // sparse: nothing is written
  EXPECT_THAT(cli::ReadImageFile(path_),
              StatusIs(absl::StatusCode::kOutOfRange,
                       HasSubstr("68157440 bytes, larger than the 67108864-byte limit")));
}

TEST_F(ImageFileTest, ReadsAWholeFile) {
  int fd = open(path_.c_str(), O_WRONLY);
  ASSERT_EQ(write(fd, "\x7f" "ELF", 4), 4);
  close(fd);
  ASSERT_OK_AND_ASSIGN(std::vector<uint8_t> bytes, cli::ReadImageFile(path_));
  EXPECT_EQ(bytes, (std::vector<uint8_t>{0x7f, 'E', 'L', 'F'}));
}

TEST(ResolveGuestTest, MissingDirectoryAndUnknownName) {
  EXPECT_THAT(cli::ResolveGuest("/nonexistent/guest.elf"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("/nonexistent/guest.elf: ELF image: No such file or directory")));
  EXPECT_THAT(cli::ResolveGuest("/tmp"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a regular file")));
  EXPECT_THAT(cli::ResolveGuest("no-such-guest"),
              StatusIs(absl::StatusCode::kNotFound,
                       HasSubstr("unknown guest 'no-such-guest': not a built-in guest (")));
}

// A FIFO is refused as not a regular file, at once: opening it for reading must not wait
// for a writer first. Bounded: if the call is still waiting after kTestWaitLimit, the test
// opens the FIFO for writing itself (which lets the open return) and fails.
TEST(ResolveGuestTest, AFifoIsRefusedWithoutWaitingForAWriter) {
  char dir_template[] = "/tmp/mmuvisor-fifo-XXXXXX";
  ASSERT_NE(mkdtemp(dir_template), nullptr) << ErrnoText(errno);
  const std::string dir = dir_template;
  const std::string fifo = dir + "/guest";
  ASSERT_EQ(mkfifo(fifo.c_str(), 0600), 0) << ErrnoText(errno);
  std::future<absl::StatusOr<cli::GuestSource>> resolved =
      std::async(std::launch::async, [&] { return cli::ResolveGuest(fifo); });
  const bool returned = resolved.wait_for(absl::ToChronoMilliseconds(kTestWaitLimit)) ==
                        std::future_status::ready;
  if (!returned) {
    const int unblock = open(fifo.c_str(), O_WRONLY | O_NONBLOCK);
    if (unblock >= 0) close(unblock);
  }
  const absl::StatusOr<cli::GuestSource> result = resolved.get();
  unlink(fifo.c_str());
  rmdir(dir.c_str());
  EXPECT_TRUE(returned) << "ResolveGuest waited for a writer on a FIFO";
  EXPECT_THAT(result, StatusIs(absl::StatusCode::kInvalidArgument,
                               HasSubstr(fifo + ": ELF image: not a regular file")));
}

TEST(ResolveGuestTest, BuiltinNamesResolveToEmbeddedElf) {
  ASSERT_OK_AND_ASSIGN(cli::GuestSource g, cli::ResolveGuest("hello64"));
  EXPECT_TRUE(g.builtin);
  ASSERT_GE(g.bytes.size(), 4u);
  EXPECT_EQ(g.bytes[0], 0x7f);
  EXPECT_EQ(g.bytes[1], 'E');
}

}  // namespace
}  // namespace mmuvisor::vmm

// Machine::Create checks the user's input before it opens the KVM device, and marks which
// errors are the user's (exit 2) and which the host's (exit 5).
#include "vmm/boot/guest_images.h"
#include "vmm/machine/machine.h"

namespace mmuvisor::vmm {
namespace {

TEST(MachineCreateTest, BadImageIsAnInputErrorEvenWithoutKvm) {
  MachineConfig config;
  config.kvm_path = "/nonexistent/kvm";
  const uint8_t garbage[] = {'n', 'o', 't', ' ', 'e', 'l', 'f'};
  absl::StatusOr<std::unique_ptr<Machine>> m = Machine::Create(config, garbage);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("ELF")));
  EXPECT_TRUE(IsInputError(m.status()));
}

TEST(MachineCreateTest, MissingKvmIsAHostErrorAfterTheImageChecksOut) {
  MachineConfig config;
  config.kvm_path = "/nonexistent/kvm";
  ASSERT_OK_AND_ASSIGN(absl::Span<const uint8_t> elf, BuiltinGuestImage("hello64"));
  absl::StatusOr<std::unique_ptr<Machine>> m = Machine::Create(config, elf);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kNotFound,
                          HasSubstr("cannot open /nonexistent/kvm: it does not exist")));
  EXPECT_FALSE(IsInputError(m.status()));
}

TEST(MachineCreateTest, SizesAndVcpuCountsAreInputErrors) {
  ASSERT_OK_AND_ASSIGN(absl::Span<const uint8_t> elf, BuiltinGuestImage("hello64"));
  MachineConfig config;
  config.kvm_path = "/nonexistent/kvm";
  config.vcpus = 0;
  absl::StatusOr<std::unique_ptr<Machine>> m = Machine::Create(config, elf);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("0 vCPUs requested")));
  EXPECT_TRUE(IsInputError(m.status()));
  config.vcpus = 1;
  config.ram_size = ByteSize{(2ull << 20) + 100};
  m = Machine::Create(config, elf);
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not a positive multiple")));
  EXPECT_TRUE(IsInputError(m.status()));
  config.ram_size = ByteSize{1ull << 20};  // the image at 1 MiB cannot fit
  m = Machine::Create(config, elf);
  // hello64's first PT_LOAD starts at MMV_IMAGE_GPA, the first byte past this RAM.
  EXPECT_THAT(m, StatusIs(absl::StatusCode::kOutOfRange,
                          AllOf(HasSubstr("ELF image: PT_LOAD [0x100000, 0x"),
                                HasSubstr(") lies outside guest RAM [0, 0x100000)"))));
  EXPECT_TRUE(IsInputError(m.status())) << m.status();
}

}  // namespace
}  // namespace mmuvisor::vmm
