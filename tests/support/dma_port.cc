#include "support/dma_port.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm::testing {

absl::StatusOr<std::unique_ptr<DmaPort>> DmaPort::Create(HostAddressSpace& space,
                                                         std::string name) {
  std::unique_ptr<DmaPort> port(new DmaPort(space));
  mmu::SecondaryMmuOptions mmu_options;
  mmu_options.name = name;
  port->mmu_ = std::make_unique<dma::DeviceMmu>(space, mmu_options);
  MMUVISOR_RETURN_IF_ERROR(port->mmu_->SetLayout(space.SecondaryLayout()));
  MMUVISOR_RETURN_IF_ERROR(space.hub().Register(*port->mmu_));
  dma::DeviceMmu* mmu = port->mmu_.get();
  port->observer_id_ = space.AddMemslotObserver([mmu](const MemslotTable& table) {
    return mmu->SetLayout(HostAddressSpace::SecondaryLayoutOf(table));
  });
  return port;
}

DmaPort::~DmaPort() {
  space_.RemoveMemslotObserver(observer_id_);
  if (!space_.hub().torn_down()) {
    (void)space_.hub().Unregister(*mmu_);
  }
}

absl::Status DmaPort::Read(Gpa gpa, absl::Span<uint8_t> out) {
  return Access(gpa, out.data(), out.size(), /*write=*/false);
}

absl::Status DmaPort::Write(Gpa gpa, absl::Span<const uint8_t> in) {
  return Access(gpa, const_cast<uint8_t*>(in.data()), in.size(), /*write=*/true);
}

absl::Status DmaPort::Access(Gpa gpa, uint8_t* buffer, uint64_t size, bool write) {
  const mmu::Access access = write ? mmu::Access::kWrite : mmu::Access::kRead;
  uint64_t done = 0;
  while (done < size) {
    const uint64_t address = gpa.value + done;
    const uint64_t offset = address & (kPageSize - 1);
    const uint64_t n = std::min(size - done, kPageSize - offset);
    const mmu::Gfn gfn = address >> kPageShift;
    bool copied = false;
    {
      auto section = mmu_->ReadSection();
      dma::DeviceMmu::AccessSection access_section(*mmu_);
      const uint64_t host = mmu_->Translate(gfn, access);
      if (host != 0) {
        if (write) {
          space_.NoteHostWrite(PageRange{(host - space_.AddressOf(0)) / kPageSize, 1});
          std::memcpy(reinterpret_cast<void*>(host + offset), buffer + done, n);
        } else {
          std::memcpy(buffer + done, reinterpret_cast<const void*>(host + offset), n);
        }
        copied = true;
      }
    }
    if (copied) {
      done += n;
      continue;
    }
    misses_.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<mmu::ShadowEntry> entry = mmu_->Fault(gfn, access);
    if (!entry.ok()) return entry.status();
  }
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm::testing
