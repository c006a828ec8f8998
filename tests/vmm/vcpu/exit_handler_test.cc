// ExitHandler on a plain kvm_run buffer: one test per exit reason it handles, plus the
// exit-reason name table and the vCPU state machine's edges.
#include "vmm/vcpu/exit_handler.h"

#include <linux/kvm.h>

#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/kvm/kvm_constants.h"
#include "vmm/vcpu/exit_reason.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace mmuvisor::vmm {
namespace {

using ::testing::HasSubstr;

constexpr size_t kRunSize = 4096;

class Recorder : public PortIoDevice {
 public:
  IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) override {
    writes.push_back({vcpu, offset, std::vector<uint8_t>(data.begin(), data.end())});
    return stop_after && writes.size() >= stop_after ? IoAction::kStopVcpu : IoAction::kContinue;
  }
  void Read(uint32_t, uint16_t, absl::Span<uint8_t> data) override {
    for (size_t i = 0; i < data.size(); ++i) data[i] = static_cast<uint8_t>(0xa0 + i);
  }
  struct Access {
    uint32_t vcpu;
    uint16_t offset;
    std::vector<uint8_t> data;
  };
  std::vector<Access> writes;
  size_t stop_after = 0;
};

class ExitHandlerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(bus_.Register(0x3f8, 8, &dev_, "rec").ok());
    std::memset(buffer_, 0, sizeof(buffer_));
  }
  kvm_run& run() { return *reinterpret_cast<kvm_run*>(buffer_); }
  void SetIo(uint8_t direction, uint16_t port, uint8_t size, uint32_t count,
             const std::vector<uint8_t>& data, uint64_t offset = 1024) {
    run().exit_reason = KVM_EXIT_IO;
    run().io.direction = direction;
    run().io.port = port;
    run().io.size = size;
    run().io.count = count;
    run().io.data_offset = offset;
    if (!data.empty() && offset + data.size() <= kRunSize) std::memcpy(buffer_ + offset, data.data(), data.size());
  }

  alignas(64) uint8_t buffer_[kRunSize];
  PortIoBus bus_;
  Recorder dev_;
  ExitHandler handler_{&bus_};
};

TEST_F(ExitHandlerTest, OutGoesToTheDeviceAndContinues) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 1, 1, {'A'});
  ExitDecision d = handler_.Handle(2, run(), kRunSize);
  EXPECT_FALSE(d.stop);
  ASSERT_EQ(dev_.writes.size(), 1u);
  EXPECT_EQ(dev_.writes[0].vcpu, 2u);
  EXPECT_EQ(dev_.writes[0].data, std::vector<uint8_t>{'A'});
}

TEST_F(ExitHandlerTest, StringOutIsSplitIntoElements) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f9, 2, 3, {1, 2, 3, 4, 5, 6});
  EXPECT_FALSE(handler_.Handle(0, run(), kRunSize).stop);
  ASSERT_EQ(dev_.writes.size(), 3u);
  EXPECT_EQ(dev_.writes[2].offset, 1);
  EXPECT_EQ(dev_.writes[2].data, (std::vector<uint8_t>{5, 6}));
}

TEST_F(ExitHandlerTest, DeviceStopEndsTheRunMidString) {
  dev_.stop_after = 2;
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 1, 5, {1, 2, 3, 4, 5});
  ExitDecision d = handler_.Handle(0, run(), kRunSize);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.kind, StopKind::kGuestStop);
  EXPECT_EQ(dev_.writes.size(), 2u);
}

TEST_F(ExitHandlerTest, InFillsTheKvmRunBuffer) {
  SetIo(KVM_EXIT_IO_IN, 0x3fd, 4, 1, {0, 0, 0, 0});
  EXPECT_FALSE(handler_.Handle(0, run(), kRunSize).stop);
  EXPECT_EQ(buffer_[1024], 0xa0);
  EXPECT_EQ(buffer_[1027], 0xa3);
  SetIo(KVM_EXIT_IO_IN, 0x80, 1, 1, {0});  // unclaimed: all ones
  EXPECT_FALSE(handler_.Handle(0, run(), kRunSize).stop);
  EXPECT_EQ(buffer_[1024], 0xff);
}

TEST_F(ExitHandlerTest, ImpossibleIoDataIsAHostError) {
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 4, 2000, {}, 1024);
  ExitDecision d = handler_.Handle(0, run(), kRunSize);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.kind, StopKind::kHostError);
  EXPECT_THAT(d.detail, HasSubstr("impossible data"));
  SetIo(KVM_EXIT_IO_OUT, 0x3f8, 3, 1, {}, 1024);
  EXPECT_EQ(handler_.Handle(0, run(), kRunSize).kind, StopKind::kHostError);
  EXPECT_TRUE(dev_.writes.empty());
}

TEST_F(ExitHandlerTest, ShutdownIsATripleFaultCrash) {
  run().exit_reason = KVM_EXIT_SHUTDOWN;
  ExitDecision d = handler_.Handle(0, run(), kRunSize);
  EXPECT_TRUE(d.stop);
  EXPECT_EQ(d.kind, StopKind::kCrashed);
  EXPECT_THAT(d.detail, HasSubstr("triple fault (KVM_EXIT_SHUTDOWN)"));
}

TEST_F(ExitHandlerTest, InternalErrorNamesSuberrorAndData) {
  run().exit_reason = KVM_EXIT_INTERNAL_ERROR;
  run().internal.suberror = KVM_INTERNAL_ERROR_EMULATION;
  run().internal.ndata = 2;
  run().internal.data[0] = 0x11;
  run().internal.data[1] = 0x22;
  ExitDecision d = handler_.Handle(0, run(), kRunSize);
  EXPECT_EQ(d.kind, StopKind::kCrashed);
  EXPECT_EQ(d.detail,
            "KVM internal error (KVM_EXIT_INTERNAL_ERROR): emulation failure, suberror 1, "
            "data 0x11 0x22");
}

TEST_F(ExitHandlerTest, FailEntryMmioSystemEventAndUnknownAreCrashes) {
  run().exit_reason = KVM_EXIT_FAIL_ENTRY;
  run().fail_entry.hardware_entry_failure_reason = 0x21;
  EXPECT_THAT(handler_.Handle(0, run(), kRunSize).detail, HasSubstr("hardware reason 0x21"));
  run().exit_reason = KVM_EXIT_MMIO;
  run().mmio.phys_addr = 0xfee00000;
  run().mmio.len = 4;
  run().mmio.is_write = 1;
  EXPECT_THAT(handler_.Handle(0, run(), kRunSize).detail,
              HasSubstr("write of 4 bytes at guest-physical 0xfee00000, outside guest RAM"));
  run().exit_reason = KVM_EXIT_SYSTEM_EVENT;
  run().system_event.type = KVM_SYSTEM_EVENT_RESET;
  EXPECT_THAT(handler_.Handle(0, run(), kRunSize).detail, HasSubstr("system event reset"));
  run().exit_reason = KVM_EXIT_DEBUG;
  ExitDecision d = handler_.Handle(0, run(), kRunSize);
  EXPECT_EQ(d.kind, StopKind::kCrashed);
  EXPECT_THAT(d.detail, HasSubstr("unexpected exit KVM_EXIT_DEBUG (4)"));
}

TEST_F(ExitHandlerTest, HltStopsAndIntrContinues) {
  run().exit_reason = KVM_EXIT_HLT;
  EXPECT_EQ(handler_.Handle(0, run(), kRunSize).kind, StopKind::kHalted);
  run().exit_reason = KVM_EXIT_INTR;
  EXPECT_FALSE(handler_.Handle(0, run(), kRunSize).stop);
}

TEST(ExitReasonNameTest, CoversOldAndNewReasons) {
  EXPECT_EQ(ExitReasonName(KVM_EXIT_IO), "KVM_EXIT_IO");
  EXPECT_EQ(ExitReasonName(KVM_EXIT_SHUTDOWN), "KVM_EXIT_SHUTDOWN");
  EXPECT_EQ(ExitReasonName(KVM_EXIT_NOTIFY), "KVM_EXIT_NOTIFY");
  EXPECT_EQ(ExitReasonName(kvm_abi::kExitMemoryFault), "KVM_EXIT_MEMORY_FAULT");
  EXPECT_EQ(ExitReasonName(1000), "KVM_EXIT_1000");
}

TEST(VcpuStateTest, OnlyTheDocumentedEdgesAreAllowed) {
  using S = VcpuState;
  EXPECT_TRUE(IsValidTransition(S::kCreated, S::kInGuest));
  EXPECT_TRUE(IsValidTransition(S::kInGuest, S::kHandlingExit));
  EXPECT_TRUE(IsValidTransition(S::kHandlingExit, S::kInGuest));
  EXPECT_TRUE(IsValidTransition(S::kHandlingExit, S::kStopped));
  EXPECT_TRUE(IsValidTransition(S::kCreated, S::kStopped));  // kicked before the first run
  EXPECT_FALSE(IsValidTransition(S::kCreated, S::kHandlingExit));
  EXPECT_FALSE(IsValidTransition(S::kStopped, S::kInGuest));
  EXPECT_FALSE(IsValidTransition(S::kInGuest, S::kInGuest));
}

}  // namespace
}  // namespace mmuvisor::vmm

namespace mmuvisor::vmm {
namespace {

// The CPUID ioctls must carry the kernel's struct size (8), not the 12 that C++ computes
// from the 6.1 header (kvm_constants.h); values as the C compiler spells them.
TEST(KvmAbiTest, CpuidIoctlNumbersUseTheKernelLayout) {
  EXPECT_EQ(kvm_abi::kGetSupportedCpuid, 0xc008ae05ul);
  EXPECT_EQ(kvm_abi::kSetCpuid2, 0x4008ae90ul);
  EXPECT_EQ(kvm_abi::kCpuid2HeaderBytes, 8u);
}

}  // namespace
}  // namespace mmuvisor::vmm
