// The VMM's exception stubs: gate encoding, stub bytes, and decoding the frame the CPU and
// the stub leave on the ring-0 stack (with and without an error code); plus the exit
// handler's routing of the exception port.
#include "vmm/machine/exception_stubs.h"

#include <linux/kvm.h>
#include <memory>

#include <cstring>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "vmm/boot/x86_state.h"
#include "vmm/host/host_address_space.h"
#include "vmm/vcpu/exit_handler.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

class ExceptionStubsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HostAddressSpaceOptions options;
    options.ram_bytes = 4 << 20;
    ASSERT_OK_AND_ASSIGN(memory_, HostAddressSpace::Create(options));
    ASSERT_THAT(InstallExceptionStubs(*memory_), IsOk());
  }
  uint8_t* At(uint64_t gpa) { return memory_->PagePointer(0) + gpa; }
  std::unique_ptr<HostAddressSpace> memory_;
};

TEST_F(ExceptionStubsTest, GatesPointAtPushVectorStubs) {
  for (uint32_t v : {0u, 13u, 14u, 31u}) {
    const uint8_t* g = At(MMV_IDT_GPA + 16 * v);
    const uint64_t offset = g[0] | (uint64_t{g[1]} << 8) | (uint64_t{g[6]} << 16) |
                            (uint64_t{g[7]} << 24);
    EXPECT_EQ(offset, kExceptionStubGpa + 8 * v);
    EXPECT_EQ(g[2] | (g[3] << 8), kKernelCodeSelector);
    EXPECT_EQ(g[5], 0x8e);  // present, DPL 0, interrupt gate
    const uint8_t* stub = At(offset);
    EXPECT_EQ(stub[0], 0x6a);  // push imm8
    EXPECT_EQ(stub[1], v);
    EXPECT_EQ(stub[2], 0xe9);  // jmp rel32 to the common tail
    int32_t rel;
    std::memcpy(&rel, stub + 3, 4);
    const uint8_t* tail = At(offset + 7 + rel);
    EXPECT_EQ(tail[0], 0x66);  // mov $port, %dx
    EXPECT_EQ(tail[2] | (tail[3] << 8), kExceptionPort);
    EXPECT_EQ(tail[4], 0xee);  // out %al, %dx
  }
  EXPECT_EQ(At(MMV_IDT_GPA + 16 * 32)[5], 0);  // vectors >= 32 stay empty
}

TEST_F(ExceptionStubsTest, DecodesAPageFaultFrameWithErrorCode) {
  const uint64_t rsp = 0x200000;
  const uint64_t frame[] = {14, 0x6, 0x1018c0, 0x2b, 0x3002, 0x3fffff8, 0x23};
  std::memcpy(At(rsp), frame, sizeof(frame));
  ASSERT_OK_AND_ASSIGN(ExceptionFrame f, ReadExceptionFrame(*memory_, rsp));
  EXPECT_EQ(f.vector, 14u);
  EXPECT_TRUE(f.has_error_code);
  EXPECT_EQ(f.error_code, 0x6u);
  EXPECT_EQ(f.rip, 0x1018c0u);
  EXPECT_EQ(f.cs, 0x2bu);
  EXPECT_EQ(f.rsp, 0x3fffff8u);
  EXPECT_EQ(f.ss, 0x23u);
  EXPECT_EQ(f.Describe(), "guest exception: page fault (#PF), vector 14, error code 0x6");
}

TEST_F(ExceptionStubsTest, DecodesAnInvalidOpcodeFrameWithoutErrorCode) {
  const uint64_t rsp = 0x200000;
  const uint64_t frame[] = {6, 0x100010, 0x2b, 0x3002, 0x3fffff0, 0x23, 0};
  std::memcpy(At(rsp), frame, sizeof(frame));
  ASSERT_OK_AND_ASSIGN(ExceptionFrame f, ReadExceptionFrame(*memory_, rsp));
  EXPECT_FALSE(f.has_error_code);
  EXPECT_EQ(f.rip, 0x100010u);
  EXPECT_EQ(f.rsp, 0x3fffff0u);
  EXPECT_EQ(f.Describe(), "guest exception: invalid opcode (#UD), vector 6");
}

TEST_F(ExceptionStubsTest, RejectsBadFrames) {
  const uint64_t bogus[7] = {99};
  std::memcpy(At(0x200000), bogus, sizeof(bogus));
  EXPECT_THAT(ReadExceptionFrame(*memory_, 0x200000),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("names vector 99")));
  EXPECT_THAT(ReadExceptionFrame(*memory_, (4 << 20) - 16),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("outside guest RAM")));
}

TEST(ExceptionPortTest, AnOutToTheExceptionPortIsACrashWithAFrame) {
  alignas(64) uint8_t buffer[4096] = {};
  auto& run = *reinterpret_cast<kvm_run*>(buffer);
  run.exit_reason = KVM_EXIT_IO;
  run.io.direction = KVM_EXIT_IO_OUT;
  run.io.port = kGuestExceptionPort;
  run.io.size = 1;
  run.io.count = 1;
  run.io.data_offset = 1024;
  PortIoBus bus;
  ExitHandler handler(&bus);
  ExitDecision d = handler.Handle(0, run, sizeof(buffer));
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.kind, StopKind::kCrashed);
  EXPECT_TRUE(d.guest_exception);
}

}  // namespace
}  // namespace mmuvisor::vmm
