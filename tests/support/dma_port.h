// DmaPort (test fixture): coherent device access to guest memory through a SecondaryMmu
// subscribed to a HostAddressSpace's hub (vmm/host/README.md: a device reaches guest memory
// only through a secondary MMU). It is the reader/writer the host and machine tests run
// during reclaim storms; no production code uses it (the stress runner's DMA engine goes
// through vmm/dma).
//
// Protocol. The SecondaryMmu is a dma::DeviceMmu: an access translates (Translate under a
// read section) and copies inside one DeviceMmu::AccessSection; a miss leaves it and
// faults (SecondaryMmu::Fault, which resolves through HostAddressSpace and retries while a
// window is open). Every window's start zaps the DeviceMmu and then waits for the sections
// in flight (mmu/README.md, "The in-flight drain"): when the change begins no access that
// could have used an old translation is still copying (a TLB shootdown). So a read never
// sees a page mid-change and a write never lands in a window (where it could be lost
// between the save and the discard, or fault on the read-only mapping). Writes call
// NoteHostWrite first, in the section: no dirty log sees them.
//
// Threads: Read/Write from any threads concurrently. Memslot changes (Unmap) update the
// SecondaryMmu's layout through a memslot observer. Destroy before the HostAddressSpace.
#ifndef MMUVISOR_TESTS_SUPPORT_DMA_PORT_H_
#define MMUVISOR_TESTS_SUPPORT_DMA_PORT_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/types/span.h"
#include "mmu/secondary_mmu.h"
#include "notifier/subscription.h"
#include "vmm/dma/device_mmu.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm::testing {

class DmaPort {
 public:
  // Builds the SecondaryMmu (primary: `space`), sets its layout from the memslots and
  // registers it on space.hub(). Errors: the hub's.
  static absl::StatusOr<std::unique_ptr<DmaPort>> Create(HostAddressSpace& space,
                                                         std::string name = "dma");
  // Unregisters the SecondaryMmu (unless the hub was torn down).
  ~DmaPort();
  DmaPort(const DmaPort&) = delete;
  DmaPort& operator=(const DmaPort&) = delete;

  // Copy guest-physical [gpa, gpa + size) out / in. Errors: the SecondaryMmu's fault
  // errors (NotFound: no memslot; PermissionDenied: protected; FailedPrecondition: torn
  // down; DeadlineExceeded), unchanged.
  absl::Status Read(Gpa gpa, absl::Span<uint8_t> out);
  absl::Status Write(Gpa gpa, absl::Span<const uint8_t> in);

  dma::DeviceMmu& mmu() { return *mmu_; }
  uint64_t misses() const { return misses_.load(std::memory_order_relaxed); }

 private:
  explicit DmaPort(HostAddressSpace& space) : space_(space) {}
  absl::Status Access(Gpa gpa, uint8_t* buffer, uint64_t size, bool write);

  HostAddressSpace& space_;
  std::unique_ptr<dma::DeviceMmu> mmu_;
  int observer_id_ = 0;
  std::atomic<uint64_t> misses_{0};  // relaxed: statistic
};

}  // namespace mmuvisor::vmm::testing

#endif  // MMUVISOR_TESTS_SUPPORT_DMA_PORT_H_
