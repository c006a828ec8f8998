#include "vmm/devices/ucall.h"

#include <cstring>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {

absl::string_view UcallCommandName(uint32_t cmd) {
  switch (cmd) {
    case MMV_UCALL_PRINT:
      return "PRINT";
    case MMV_UCALL_SYNC:
      return "SYNC";
    case MMV_UCALL_ASSERT:
      return "ASSERT";
    case MMV_UCALL_DONE:
      return "DONE";
    case MMV_UCALL_BALLOON:
      return "BALLOON";
    case MMV_UCALL_REPORT:
      return "REPORT";
    case MMV_UCALL_SERIAL:
      return "SERIAL";
  }
  return "UNKNOWN";
}

absl::StatusOr<Ucall> DecodeUcall(const mmv_ucall& block) {
  if (block.magic != MMV_UCALL_MAGIC) {
    return absl::InvalidArgumentError(
        absl::StrFormat("bad magic %#x (expected %#x)", block.magic, MMV_UCALL_MAGIC));
  }
  if (block.cmd < MMV_UCALL_PRINT || block.cmd > MMV_UCALL_SERIAL) {
    return absl::InvalidArgumentError(absl::StrFormat("unknown command %u", block.cmd));
  }
  Ucall call;
  call.cmd = static_cast<mmv_ucall_cmd>(block.cmd);
  for (size_t i = 0; i < call.args.size(); ++i) call.args[i] = block.args[i];
  if (call.cmd == MMV_UCALL_SERIAL) {
    // Counted bytes, NULs included.
    if (call.args[0] > MMV_UCALL_TEXT_MAX) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "SERIAL of %u bytes (at most %u fit the text field)", call.args[0],
          MMV_UCALL_TEXT_MAX));
    }
    call.text.assign(block.text, call.args[0]);
    return call;
  }
  // Never read past the end of the text field, terminated or not.
  call.text.assign(block.text, strnlen(block.text, MMV_UCALL_TEXT_MAX));
  return call;
}

GuestAssertion ParseGuestAssertion(const Ucall& call) {
  GuestAssertion a;
  a.line = call.args[0];
  a.values = {call.args[1], call.args[2]};
  // Expected text: "file:line: expression". Find the first ":<digits>:" and split there.
  absl::string_view text = call.text;
  for (size_t colon = text.find(':'); colon != absl::string_view::npos;
       colon = text.find(':', colon + 1)) {
    size_t end = colon + 1;
    while (end < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[end]))) ++end;
    if (end > colon + 1 && end < text.size() && text[end] == ':') {
      a.file = std::string(text.substr(0, colon));
      uint64_t line = 0;
      if (absl::SimpleAtoi(text.substr(colon + 1, end - colon - 1), &line) && a.line == 0) {
        a.line = line;
      }
      a.expression = std::string(absl::StripLeadingAsciiWhitespace(text.substr(end + 1)));
      return a;
    }
  }
  a.file = "?";
  a.expression = std::string(text);
  return a;
}

std::string GuestAssertion::ToString() const {
  return absl::StrFormat("%s:%u: %s (values %#x, %#x)", file, line, expression, values[0],
                         values[1]);
}

IoAction UcallDevice::Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) {
  if (offset != 0 || data.size() != 4) {
    handler_->OnProtocolError(
        vcpu, absl::StrFormat("ucall: %u-byte OUT to port %#x (expected a 4-byte OUT to %#x)",
                              data.size(), MMV_PORT_UCALL + offset, MMV_PORT_UCALL));
    return IoAction::kStopVcpu;
  }
  uint32_t gpa32;
  std::memcpy(&gpa32, data.data(), sizeof(gpa32));
  const Gpa gpa{gpa32};
  if (gpa.value % 8 != 0) {
    handler_->OnProtocolError(
        vcpu, absl::StrFormat("ucall: block address %#x is not 8-byte aligned", gpa.value));
    return IoAction::kStopVcpu;
  }
  // Copy first, validate the copy: the guest (or another vCPU) may rewrite the block.
  mmv_ucall block;
  if (absl::Status st = memory_->ReadGuest(
          gpa, absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&block), sizeof(block)));
      !st.ok()) {
    handler_->OnProtocolError(vcpu, absl::StrCat("ucall: block: ", st.message()));
    return IoAction::kStopVcpu;
  }
  absl::StatusOr<Ucall> call = DecodeUcall(block);
  if (!call.ok()) {
    handler_->OnProtocolError(
        vcpu, absl::StrFormat("ucall at gpa %#x: %s", gpa.value, call.status().message()));
    return IoAction::kStopVcpu;
  }
  return Dispatch(vcpu, *call);
}

IoAction UcallDevice::Dispatch(uint32_t vcpu, const Ucall& call) {
  const absl::Span<const uint64_t> args(call.args);
  switch (call.cmd) {
    case MMV_UCALL_PRINT:
      handler_->OnPrint(vcpu, call.text);
      return IoAction::kContinue;
    case MMV_UCALL_SYNC:
      handler_->OnSync(vcpu, args[0], args.subspan(1));
      return IoAction::kContinue;
    case MMV_UCALL_ASSERT:
      handler_->OnAssert(vcpu, ParseGuestAssertion(call));
      return IoAction::kStopVcpu;
    case MMV_UCALL_DONE:
      handler_->OnDone(vcpu, args[0]);
      return IoAction::kStopVcpu;
    case MMV_UCALL_BALLOON: {
      const Gpa gpa{args[0]};
      const ByteSize len{args[1]};
      if (len.value == 0 || !IsPageAligned(gpa.value) || !IsPageAligned(len.value) ||
          !memory_->ContainsGuestRange(gpa, len)) {
        handler_->OnProtocolError(
            vcpu, absl::StrFormat("ucall BALLOON range gpa=%#x len=%#x is empty, unaligned "
                                  "or outside guest RAM",
                                  gpa.value, len.value));
        return IoAction::kStopVcpu;
      }
      handler_->OnBalloon(vcpu, gpa, len);
      return IoAction::kContinue;
    }
    case MMV_UCALL_REPORT:
      handler_->OnReport(vcpu, args[0], args.subspan(1));
      return IoAction::kContinue;
    case MMV_UCALL_SERIAL:
      handler_->OnSerial(vcpu, call.text);
      return IoAction::kContinue;
  }
  return IoAction::kContinue;  // unreachable: DecodeUcall rejects unknown commands
}

void UcallDevice::Read(uint32_t /*vcpu*/, uint16_t /*offset*/, absl::Span<uint8_t> data) {
  std::memset(data.data(), 0, data.size());
}

}  // namespace mmuvisor::vmm
