// HostDeviceHooks: what vmm/host's HostAddressSpace must see of the stress run's device
// accesses (the DMA engine, and the host threads standing in for vCPUs): every device
// write is announced with NoteHostWrite (no dirty log sees it), inside the access (the
// DeviceMmu's drain section, or the mirror's lock), so a window's start has waited for it
// before the window harvests and saves.
//
// --test-skip-dma-retry also maps a second view of the guest RAM memfd for the device
// (MapDeviceView): like bus-mastering DMA it then ignores the read-only mapping that
// reclaim/migrate windows put on the VMM's view. With the checks on this changes nothing
// (no translation is used outside its validity); with them off, a stale translation that
// outlives a window's zap writes between "save" and "discard" (a lost write) or into a
// discarded page (one the page server never fills again), and the guest's verification
// sees it. Through the VMM's own, write-protected view the same stale write would be a
// SIGSEGV of the VMM instead.
//
// Also ResidentFraction (mincore over guest RAM) for the progress line.
// Threads: the hooks run on the accessing thread; MapDeviceView before the device runs.
#ifndef MMUVISOR_VMM_STRESS_KVM_DEVICE_HOOKS_H_
#define MMUVISOR_VMM_STRESS_KVM_DEVICE_HOOKS_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/status.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm::stress {

class HostDeviceHooks : public dma::DeviceAccessHooks {
 public:
  explicit HostDeviceHooks(HostAddressSpace& space) : space_(space) {}
  ~HostDeviceHooks() override;
  HostDeviceHooks(const HostDeviceHooks&) = delete;
  HostDeviceHooks& operator=(const HostDeviceHooks&) = delete;

  // Errors: FailedPrecondition without a memfd (anonymous RAM); Internal from mmap.
  absl::Status MapDeviceView();

  void BeforeWrite(uint64_t host) override;
  uint64_t DeviceAddress(uint64_t host) override;

 private:
  HostAddressSpace& space_;
  void* alias_ = nullptr;
  size_t alias_bytes_ = 0;
};

// Fraction of guest RAM pages resident now (mincore); 0 if mincore fails.
double ResidentFraction(HostAddressSpace& space);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_KVM_DEVICE_HOOKS_H_
