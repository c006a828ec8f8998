// SerialConsole: an 8250/16550-compatible UART at MMV_PORT_SERIAL, enough for output.
// Registers (offset from the base; DLAB = LCR bit 7):
//   +0 THR (write, DLAB=0): the byte goes to the sink; DLL when DLAB=1 (stored, ignored)
//   +1 IER / DLM: stored, no interrupts are ever raised
//   +2 IIR (read): 0x01, "no interrupt pending"; FCR (write): ignored
//   +3 LCR, +4 MCR, +7 SCR: stored and read back
//   +5 LSR (read): THRE | TEMT (0x60): the transmitter is always ready, so a guest's
//      "wait until THR empty" loop never spins; no receive data (DR clear)
//   +6 MSR (read): DCD | DSR | CTS (0xb0)
// Thread-safety: register state is guarded by mu_; the sink is called under mu_, so bytes
// from concurrent vCPUs arrive whole and in some order, never interleaved mid-call.
#ifndef MMUVISOR_VMM_DEVICES_SERIAL_CONSOLE_H_
#define MMUVISOR_VMM_DEVICES_SERIAL_CONSOLE_H_

#include <cstdint>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "notifier/base/mutex.h"
#include "vmm/devices/port_io_bus.h"

namespace mmuvisor::vmm {

class SerialSink {
 public:
  virtual ~SerialSink() = default;
  virtual void SerialByte(uint32_t vcpu, uint8_t byte) = 0;
};

class SerialConsole : public PortIoDevice {
 public:
  static constexpr uint32_t kPortCount = 8;
  static constexpr uint8_t kLsrReady = 0x60;  // THRE | TEMT

  explicit SerialConsole(SerialSink* sink) : sink_(sink) {}

  IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Read(uint32_t vcpu, uint16_t offset, absl::Span<uint8_t> data) override
      ABSL_LOCKS_EXCLUDED(mu_);
  // The ucall SERIAL path: `bytes` to the sink in order, in one hold of the lock (so
  // another vCPU's bytes never land among them), whatever the divisor latch says.
  void WriteBytes(uint32_t vcpu, absl::string_view bytes) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  bool dlab() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return (regs_[3] & 0x80) != 0; }

  SerialSink* const sink_;
  Mutex mu_;
  uint8_t regs_[kPortCount] ABSL_GUARDED_BY(mu_) = {};
  uint8_t divisor_[2] ABSL_GUARDED_BY(mu_) = {};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_DEVICES_SERIAL_CONSOLE_H_
