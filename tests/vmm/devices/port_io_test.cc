// The port bus (routing, overlap, unclaimed ports) and the 8250 serial console.
#include <cstdint>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "vmm/devices/port_io_bus.h"
#include "vmm/devices/serial_console.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

class RecordingSink : public SerialSink {
 public:
  void SerialByte(uint32_t vcpu, uint8_t byte) override {
    text.push_back(static_cast<char>(byte));
    vcpus.push_back(vcpu);
  }
  std::string text;
  std::vector<uint32_t> vcpus;
};

class FixedDevice : public PortIoDevice {
 public:
  IoAction Write(uint32_t, uint16_t offset, absl::Span<const uint8_t> data) override {
    last_offset = offset;
    last_width = data.size();
    return IoAction::kStopVcpu;
  }
  void Read(uint32_t, uint16_t offset, absl::Span<uint8_t> data) override {
    for (uint8_t& b : data) b = static_cast<uint8_t>(0x40 + offset);
  }
  uint16_t last_offset = 0xffff;
  size_t last_width = 0;
};

TEST(PortIoBusTest, RoutesByRangeWithOffsets) {
  PortIoBus bus;
  FixedDevice dev;
  ASSERT_THAT(bus.Register(0x100, 4, &dev, "fixed"), IsOk());
  const uint8_t word[2] = {1, 2};
  EXPECT_EQ(bus.Write(0, 0x102, word), IoAction::kStopVcpu);
  EXPECT_EQ(dev.last_offset, 2);
  EXPECT_EQ(dev.last_width, 2u);
  uint8_t in[1];
  bus.Read(0, 0x103, absl::MakeSpan(in));
  EXPECT_EQ(in[0], 0x43);
  EXPECT_EQ(bus.unclaimed_accesses(), 0u);
}

TEST(PortIoBusTest, UnclaimedPortsReadAllOnesAndDropWrites) {
  PortIoBus bus;
  FixedDevice dev;
  ASSERT_THAT(bus.Register(0x100, 4, &dev, "fixed"), IsOk());
  uint8_t in[4] = {};
  bus.Read(0, 0x104, absl::MakeSpan(in));
  EXPECT_THAT(in, ::testing::Each(0xff));
  const uint8_t byte[1] = {7};
  EXPECT_EQ(bus.Write(0, 0x80, byte), IoAction::kContinue);
  EXPECT_EQ(dev.last_width, 0u);
  EXPECT_EQ(bus.unclaimed_accesses(), 2u);
}

TEST(PortIoBusTest, RejectsOverlapAndBadRanges) {
  PortIoBus bus;
  FixedDevice a, b;
  ASSERT_THAT(bus.Register(0x3f8, 8, &a, "serial"), IsOk());
  EXPECT_THAT(bus.Register(0x3ff, 1, &b, "other"),
              StatusIs(absl::StatusCode::kAlreadyExists,
                       HasSubstr("[0x3ff, 0x400) for other overlaps [0x3f8, 0x400) of serial")));
  EXPECT_THAT(bus.Register(0x10, 0, &b, "empty"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("empty")));
  EXPECT_THAT(bus.Register(0xfffe, 4, &b, "wrap"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past port 0xffff")));
  // A count whose end would wrap 32 bits back below 0x10000.
  EXPECT_THAT(bus.Register(0x10, 0xfffffff0u, &b, "huge"),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("past port 0xffff")));
  EXPECT_THAT(bus.Register(0x3f0, 8, &b, "below"), IsOk());  // [0x3f0, 0x3f8) touches only
}

TEST(SerialConsoleTest, ThrBytesReachTheSinkAndLsrIsAlwaysReady) {
  RecordingSink sink;
  SerialConsole serial(&sink);
  PortIoBus bus;
  ASSERT_THAT(bus.Register(MMV_PORT_SERIAL, SerialConsole::kPortCount, &serial, "serial"),
              IsOk());
  uint8_t lsr[1];
  bus.Read(0, MMV_PORT_SERIAL + 5, absl::MakeSpan(lsr));
  EXPECT_EQ(lsr[0], 0x60);
  for (char c : std::string("hi\n")) {
    const uint8_t b[1] = {static_cast<uint8_t>(c)};
    EXPECT_EQ(bus.Write(1, MMV_PORT_SERIAL, b), IoAction::kContinue);
  }
  EXPECT_EQ(sink.text, "hi\n");
  EXPECT_THAT(sink.vcpus, ::testing::Each(1u));
}

// The SERIAL ucall's bytes (MMV_UCALL_SERIAL): all of them, in order, whatever the divisor
// latch says (they are not a register write).
TEST(SerialConsoleTest, UcallBytesPrintWholeEvenWithTheDivisorLatchSet) {
  RecordingSink sink;
  SerialConsole serial(&sink);
  const uint8_t dlab[1] = {0x83};
  serial.Write(0, 3, dlab);
  serial.WriteBytes(2, std::string("a\0b\n", 4));
  EXPECT_EQ(sink.text, std::string("a\0b\n", 4));
  EXPECT_THAT(sink.vcpus, ::testing::ElementsAre(2u, 2u, 2u, 2u));
}

TEST(SerialConsoleTest, DivisorLatchWritesDoNotPrint) {
  RecordingSink sink;
  SerialConsole serial(&sink);
  const uint8_t dlab[1] = {0x83}, div_lo[1] = {0x01}, lcr8n1[1] = {0x03}, x[1] = {'x'};
  serial.Write(0, 3, dlab);
  serial.Write(0, 0, div_lo);  // DLL, not THR
  uint8_t read[1];
  serial.Read(0, 0, absl::MakeSpan(read));
  EXPECT_EQ(read[0], 0x01);
  serial.Write(0, 3, lcr8n1);
  serial.Read(0, 3, absl::MakeSpan(read));
  EXPECT_EQ(read[0], 0x03);
  serial.Write(0, 0, x);
  EXPECT_EQ(sink.text, "x");
  serial.Read(0, 2, absl::MakeSpan(read));
  EXPECT_EQ(read[0], 0x01);  // IIR: no interrupt pending
}

}  // namespace
}  // namespace mmuvisor::vmm
