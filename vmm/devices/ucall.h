// The ucall port (MMV_PORT_UCALL): guest -> VMM calls. The guest fills a struct mmv_ucall
// (guests/include/mmuvisor/guest_abi.h) and writes its guest-physical address with a 32-bit
// OUT. The device copies the block out of guest memory first (through GuestMemoryAccess:
// the host address space, which waits out a reclaim window on the block's page), then validates the copy
// (the guest may keep writing), decodes it and routes it to a UcallHandler.
//
// Validation (any failure -> UcallHandler::OnProtocolError and the vCPU stops):
//   the OUT is 4 bytes wide; the block lies wholly inside guest RAM and is 8-byte aligned;
//   magic == MMV_UCALL_MAGIC; cmd is known; text is read only up to MMV_UCALL_TEXT_MAX
//   (an unterminated text is cut there); a SERIAL count is at most MMV_UCALL_TEXT_MAX (its
//   bytes are counted, not terminated); a BALLOON range is page aligned, non-empty and
//   inside guest RAM.
// PRINT, SYNC, BALLOON, REPORT and SERIAL continue the vCPU; DONE and ASSERT stop it.
// Reads of the port return 0.
// Thread-safety: stateless apart from the handler; the handler is called on the vCPU's own
// thread and must synchronise itself (several vCPUs call it at once).
#ifndef MMUVISOR_VMM_DEVICES_UCALL_H_
#define MMUVISOR_VMM_DEVICES_UCALL_H_

#include <array>
#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/devices/port_io_bus.h"
#include "vmm/memory/address.h"
#include "vmm/memory/guest_memory_access.h"

namespace mmuvisor::vmm {

// A guest assertion, from text "file:line: expression" and args[0] = line.
struct GuestAssertion {
  std::string file;        // "?" when the text does not start with "file:line:"
  uint64_t line = 0;
  std::string expression;  // the rest of the text
  std::array<uint64_t, 2> values{};  // args[1..2]
  // "file:line: expression (values 0x1, 0x2)"
  std::string ToString() const;
};

// A decoded, validated ucall.
struct Ucall {
  mmv_ucall_cmd cmd = MMV_UCALL_PRINT;
  std::array<uint64_t, 6> args{};
  std::string text;
};

absl::string_view UcallCommandName(uint32_t cmd);

// Decodes a copied block. Errors (InvalidArgument): bad magic, unknown cmd, a SERIAL count
// past the text field.
absl::StatusOr<Ucall> DecodeUcall(const mmv_ucall& block);
GuestAssertion ParseGuestAssertion(const Ucall& call);

class UcallHandler {
 public:
  virtual ~UcallHandler() = default;
  virtual void OnPrint(uint32_t vcpu, absl::string_view text) = 0;
  // args[0] = stage, args[1..5] = values.
  virtual void OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) = 0;
  virtual void OnAssert(uint32_t vcpu, const GuestAssertion& assertion) = 0;
  virtual void OnDone(uint32_t vcpu, uint64_t exit_code) = 0;
  // [gpa, gpa + len) is validated (page aligned, inside RAM). Later issues discard it.
  virtual void OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) = 0;
  virtual void OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) = 0;
  // SERIAL: bytes for the serial console, in order (at most MMV_UCALL_TEXT_MAX).
  virtual void OnSerial(uint32_t vcpu, absl::string_view bytes) = 0;
  // A malformed call: the message names the vCPU-visible cause (address, magic, cmd).
  virtual void OnProtocolError(uint32_t vcpu, absl::string_view what) = 0;
};

class UcallDevice : public PortIoDevice {
 public:
  // Neither is owned; both must outlive the device.
  UcallDevice(GuestMemoryAccess* memory, UcallHandler* handler)
      : memory_(memory), handler_(handler) {}

  IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) override;
  void Read(uint32_t vcpu, uint16_t offset, absl::Span<uint8_t> data) override;

 private:
  IoAction Dispatch(uint32_t vcpu, const Ucall& call);

  GuestMemoryAccess* const memory_;
  UcallHandler* const handler_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_DEVICES_UCALL_H_
