#include "vmm/devices/port_io_bus.h"

#include <algorithm>
#include <cstring>

#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {

absl::Status PortIoBus::Register(uint16_t base, uint32_t count, PortIoDevice* device,
                                 absl::string_view name) {
  // 64-bit: a count near 2^32 must not wrap the end back below 0x10000.
  const uint64_t end64 = uint64_t{base} + count;
  if (count == 0 || end64 > 0x10000) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "port range [%#x, %#x) for %s is empty or past port 0xffff", base, end64, name));
  }
  const auto end = static_cast<uint32_t>(end64);
  for (const Range& r : ranges_) {
    if (base < r.end && r.base < end) {
      return absl::AlreadyExistsError(absl::StrFormat(
          "port range [%#x, %#x) for %s overlaps [%#x, %#x) of %s", base, end, name, r.base,
          r.end, r.name));
    }
  }
  ranges_.push_back(Range{base, end, device, std::string(name)});
  std::sort(ranges_.begin(), ranges_.end(),
            [](const Range& a, const Range& b) { return a.base < b.base; });
  return absl::OkStatus();
}

const PortIoBus::Range* PortIoBus::Find(uint16_t port) const {
  // A handful of devices: a linear scan beats anything cleverer.
  for (const Range& r : ranges_) {
    if (port >= r.base && port < r.end) return &r;
  }
  return nullptr;
}

IoAction PortIoBus::Write(uint32_t vcpu, uint16_t port, absl::Span<const uint8_t> data) {
  const Range* r = Find(port);
  if (r == nullptr) {
    unclaimed_.fetch_add(1, std::memory_order_relaxed);
    return IoAction::kContinue;
  }
  return r->device->Write(vcpu, static_cast<uint16_t>(port - r->base), data);
}

void PortIoBus::Read(uint32_t vcpu, uint16_t port, absl::Span<uint8_t> data) {
  const Range* r = Find(port);
  if (r == nullptr) {
    unclaimed_.fetch_add(1, std::memory_order_relaxed);
    std::memset(data.data(), 0xff, data.size());
    return;
  }
  r->device->Read(vcpu, static_cast<uint16_t>(port - r->base), data);
}

}  // namespace mmuvisor::vmm
