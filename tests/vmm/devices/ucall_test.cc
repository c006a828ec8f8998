// ucall decoding and the ucall device: every command, and every malformed call (bad
// address, width, alignment, magic, command, balloon range, unterminated text).
#include "vmm/devices/ucall.h"

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

class RecordingHandler : public UcallHandler {
 public:
  void OnPrint(uint32_t vcpu, absl::string_view text) override {
    events.push_back(absl::StrCat("print ", vcpu, " ", text));
  }
  void OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) override {
    events.push_back(absl::StrCat("sync ", vcpu, " ", stage, " ", values.size(), " ", values[0]));
  }
  void OnAssert(uint32_t vcpu, const GuestAssertion& a) override {
    events.push_back(absl::StrCat("assert ", vcpu, " ", a.ToString()));
  }
  void OnDone(uint32_t vcpu, uint64_t code) override {
    events.push_back(absl::StrCat("done ", vcpu, " ", code));
  }
  void OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) override {
    events.push_back(absl::StrCat("balloon ", vcpu, " ", gpa.value, " ", len.value));
  }
  void OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) override {
    events.push_back(absl::StrCat("report ", vcpu, " ", kind, " ", values.size()));
  }
  void OnSerial(uint32_t vcpu, absl::string_view bytes) override {
    events.push_back(absl::StrCat("serial ", vcpu, " ", absl::CHexEscape(bytes)));
  }
  void OnProtocolError(uint32_t vcpu, absl::string_view what) override {
    events.push_back(absl::StrCat("error ", vcpu, " ", what));
  }
  std::vector<std::string> events;
};

mmv_ucall Block(uint32_t cmd, std::vector<uint64_t> args = {}, const std::string& text = "") {
  mmv_ucall b{};
  b.magic = MMV_UCALL_MAGIC;
  b.cmd = cmd;
  for (size_t i = 0; i < args.size(); ++i) b.args[i] = args[i];
  std::memcpy(b.text, text.data(), std::min<size_t>(text.size(), MMV_UCALL_TEXT_MAX));
  return b;
}

class UcallDeviceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    HostAddressSpaceOptions options;
    options.ram_bytes = 1 << 20;
    ASSERT_OK_AND_ASSIGN(memory_, HostAddressSpace::Create(options));
    device_.emplace(memory_.get(), &handler_);
  }
  IoAction Call(uint32_t vcpu, const mmv_ucall& block, uint32_t gpa = MMV_UCALL_GPA) {
    EXPECT_TRUE(memory_->WriteGuest(Gpa{gpa}, absl::Span<const uint8_t>(
                                             reinterpret_cast<const uint8_t*>(&block),
                                             sizeof(block))).ok());
    return Out(vcpu, gpa);
  }
  IoAction Out(uint32_t vcpu, uint32_t gpa) {
    uint8_t data[4];
    std::memcpy(data, &gpa, 4);
    return device_->Write(vcpu, 0, data);
  }
  std::unique_ptr<HostAddressSpace> memory_;
  RecordingHandler handler_;
  std::optional<UcallDevice> device_;
};

TEST_F(UcallDeviceTest, RoutesEveryCommand) {
  EXPECT_EQ(Call(0, Block(MMV_UCALL_PRINT, {}, "hello")), IoAction::kContinue);
  EXPECT_EQ(Call(1, Block(MMV_UCALL_SYNC, {7, 8, 9})), IoAction::kContinue);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_BALLOON, {0x10000, 0x2000})), IoAction::kContinue);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_REPORT, {3, 1})), IoAction::kContinue);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_ASSERT, {42, 1, 2}, "guests/x.c:42: a == b")),
            IoAction::kStopVcpu);
  EXPECT_EQ(Call(2, Block(MMV_UCALL_DONE, {3})), IoAction::kStopVcpu);
  // SERIAL bytes are counted, not terminated: a NUL inside is data, bytes past the count
  // are not.
  EXPECT_EQ(Call(1, Block(MMV_UCALL_SERIAL, {4}, std::string("h\0i\nXX", 6))),
            IoAction::kContinue);
  EXPECT_THAT(handler_.events,
              ElementsAre("print 0 hello", "sync 1 7 5 8", "balloon 0 65536 8192",
                          "report 0 3 5", "assert 0 guests/x.c:42: a == b (values 0x1, 0x2)",
                          "done 2 3", "serial 1 h\\x00i\\n"));
}

TEST_F(UcallDeviceTest, AcceptsAnyAlignedBlockInsideRam) {
  EXPECT_EQ(Call(0, Block(MMV_UCALL_DONE, {0}), 0x80000), IoAction::kStopVcpu);
  EXPECT_THAT(handler_.events, ElementsAre("done 0 0"));
}

TEST_F(UcallDeviceTest, RejectsBlocksOutsideRamOrMisaligned) {
  EXPECT_EQ(Out(0, (1u << 20) - 16), IoAction::kStopVcpu);  // block straddles the end of RAM
  EXPECT_EQ(Out(0, 0xfff00000), IoAction::kStopVcpu);
  EXPECT_EQ(Out(0, MMV_UCALL_GPA + 4), IoAction::kStopVcpu);
  ASSERT_EQ(handler_.events.size(), 3u);
  EXPECT_THAT(handler_.events[0], HasSubstr("error 0 ucall: block: guest range gpa=0xffff0"));
  EXPECT_THAT(handler_.events[0], HasSubstr("outside guest RAM"));
  EXPECT_THAT(handler_.events[1], HasSubstr("gpa=0xfff00000"));
  EXPECT_THAT(handler_.events[2], HasSubstr("block address 0x4004 is not 8-byte aligned"));
}

TEST_F(UcallDeviceTest, RejectsWrongWidthMagicAndCommand) {
  const uint8_t one[1] = {0};
  EXPECT_EQ(device_->Write(0, 0, one), IoAction::kStopVcpu);
  mmv_ucall bad_magic = Block(MMV_UCALL_DONE);
  bad_magic.magic = 0x1234;
  EXPECT_EQ(Call(0, bad_magic), IoAction::kStopVcpu);
  EXPECT_EQ(Call(0, Block(99)), IoAction::kStopVcpu);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_BALLOON, {0x10001, 0x1000})), IoAction::kStopVcpu);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_BALLOON, {0xff000, 0x2000})), IoAction::kStopVcpu);
  EXPECT_EQ(Call(0, Block(MMV_UCALL_BALLOON, {0x10000, 0})), IoAction::kStopVcpu);
  ASSERT_EQ(handler_.events.size(), 6u);
  EXPECT_THAT(handler_.events[0], HasSubstr("1-byte OUT to port 0xe00"));
  EXPECT_THAT(handler_.events[1], HasSubstr("bad magic 0x1234 (expected 0x55434c4c)"));
  EXPECT_THAT(handler_.events[2], HasSubstr("unknown command 99"));
  for (int i = 3; i < 6; ++i) {
    EXPECT_THAT(handler_.events[i], HasSubstr("BALLOON range"));
  }
}

TEST(DecodeUcallTest, UnterminatedTextIsCutAtTheField) {
  mmv_ucall b = Block(MMV_UCALL_PRINT);
  std::memset(b.text, 'a', sizeof(b.text));
  ASSERT_OK_AND_ASSIGN(Ucall call, DecodeUcall(b));
  EXPECT_EQ(call.text, std::string(MMV_UCALL_TEXT_MAX, 'a'));
}

TEST(DecodeUcallTest, ErrorsNameTheField) {
  mmv_ucall b = Block(0);
  EXPECT_THAT(DecodeUcall(b),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("unknown command 0")));
  EXPECT_THAT(DecodeUcall(Block(MMV_UCALL_SERIAL, {MMV_UCALL_TEXT_MAX + 1})),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("SERIAL of 193 bytes (at most 192 fit the text field)")));
  ASSERT_OK_AND_ASSIGN(Ucall full, DecodeUcall(Block(MMV_UCALL_SERIAL, {MMV_UCALL_TEXT_MAX})));
  EXPECT_EQ(full.text.size(), MMV_UCALL_TEXT_MAX);
}

TEST(ParseGuestAssertionTest, SplitsFileLineExpression) {
  Ucall call;
  call.cmd = MMV_UCALL_ASSERT;
  call.args = {0, 5, 6};
  call.text = "guests/smp/smp.c:31: sum == n * (n + 1) / 2";
  GuestAssertion a = ParseGuestAssertion(call);
  EXPECT_EQ(a.file, "guests/smp/smp.c");
  EXPECT_EQ(a.line, 31u);  // from the text when args[0] is 0
  EXPECT_EQ(a.expression, "sum == n * (n + 1) / 2");
  EXPECT_EQ(a.ToString(), "guests/smp/smp.c:31: sum == n * (n + 1) / 2 (values 0x5, 0x6)");
  call.text = "no location here";
  call.args[0] = 9;
  a = ParseGuestAssertion(call);
  EXPECT_EQ(a.file, "?");
  EXPECT_EQ(a.line, 9u);
  EXPECT_EQ(a.expression, "no location here");
}

}  // namespace
}  // namespace mmuvisor::vmm
