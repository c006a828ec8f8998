// PortIoBus: routes x86 port I/O exits (KVM_EXIT_IO) to the device that owns the port.
// Each device owns a half-open port range [base, base + count); ranges never overlap.
//
// Unclaimed ports behave like an empty ISA bus: reads return all-ones, writes are dropped
// (and counted, so tests and reports can see stray accesses).
// Thread-safety: devices are registered before any vCPU runs (REQUIRES); after that the
// routing table is read-only and Read/Write may be called from every vCPU thread at once.
// Devices synchronise their own state.
#ifndef MMUVISOR_VMM_DEVICES_PORT_IO_BUS_H_
#define MMUVISOR_VMM_DEVICES_PORT_IO_BUS_H_

#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mmuvisor::vmm {

// What the vCPU does after a device handled an access.
enum class IoAction {
  kContinue,  // re-enter the guest
  kStopVcpu,  // the device ended this vCPU's run (ucall done, assert, protocol error)
};

class PortIoDevice {
 public:
  virtual ~PortIoDevice() = default;
  // `offset` is port - base. data.size() is the access width (1, 2 or 4 bytes).
  virtual IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) = 0;
  // Fills data (the access width) with the value the guest reads.
  virtual void Read(uint32_t vcpu, uint16_t offset, absl::Span<uint8_t> data) = 0;
};

class PortIoBus {
 public:
  // Claims [base, base + count) for `device` (not owned; must outlive the bus).
  // Errors: InvalidArgument for count 0 or a range past port 0xffff; AlreadyExists when
  // the range overlaps a claimed one (the message names both owners).
  // REQUIRES: no vCPU is running.
  absl::Status Register(uint16_t base, uint32_t count, PortIoDevice* device,
                        absl::string_view name);

  IoAction Write(uint32_t vcpu, uint16_t port, absl::Span<const uint8_t> data);
  void Read(uint32_t vcpu, uint16_t port, absl::Span<uint8_t> data);

  // Accesses to unclaimed ports since creation.
  uint64_t unclaimed_accesses() const {
    return unclaimed_.load(std::memory_order_relaxed);  // a statistic: no ordering needed
  }

 private:
  struct Range {
    uint32_t base;
    uint32_t end;  // exclusive
    PortIoDevice* device;
    std::string name;
  };
  const Range* Find(uint16_t port) const;

  std::vector<Range> ranges_;  // sorted by base; written only before vCPUs run
  std::atomic<uint64_t> unclaimed_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_DEVICES_PORT_IO_BUS_H_
