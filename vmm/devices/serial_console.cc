#include "vmm/devices/serial_console.h"

#include <cstring>

namespace mmuvisor::vmm {

IoAction SerialConsole::Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) {
  if (data.empty() || offset >= kPortCount) return IoAction::kContinue;
  // A wider OUT to a byte register writes its low byte (what an ISA UART sees).
  const uint8_t value = data[0];
  MutexLock lock(&mu_);
  switch (offset) {
    case 0:
      if (dlab()) {
        divisor_[0] = value;
      } else {
        sink_->SerialByte(vcpu, value);
      }
      break;
    case 1:
      if (dlab()) {
        divisor_[1] = value;
      } else {
        regs_[1] = value;
      }
      break;
    case 2:  // FCR: FIFOs need no emulation for output only
    case 5:  // LSR and MSR are read-only
    case 6:
      break;
    default:
      regs_[offset] = value;
  }
  return IoAction::kContinue;
}

void SerialConsole::WriteBytes(uint32_t vcpu, absl::string_view bytes) {
  MutexLock lock(&mu_);
  for (char c : bytes) sink_->SerialByte(vcpu, static_cast<uint8_t>(c));
}

void SerialConsole::Read(uint32_t /*vcpu*/, uint16_t offset, absl::Span<uint8_t> data) {
  if (data.empty()) return;
  std::memset(data.data(), 0, data.size());
  if (offset >= kPortCount) return;
  MutexLock lock(&mu_);
  switch (offset) {
    case 0:
      data[0] = dlab() ? divisor_[0] : 0;  // RBR: nothing ever received
      break;
    case 1:
      data[0] = dlab() ? divisor_[1] : regs_[1];
      break;
    case 2:
      data[0] = 0x01;  // IIR: no interrupt pending
      break;
    case 5:
      data[0] = kLsrReady;
      break;
    case 6:
      data[0] = 0xb0;  // MSR: DCD | DSR | CTS
      break;
    default:
      data[0] = regs_[offset];
  }
}

}  // namespace mmuvisor::vmm
