// GuestMemoryAccess: how host code (devices, the exception-frame reader, tests) reads and
// writes guest-physical memory without owning it. The owner of guest RAM
// (vmm/host/HostAddressSpace) implements it; every access is bounds-checked against the
// memslots and copied, never handed out as a pointer, because the owner may change what
// backs a page (reclaim, migrate, protect) at any time outside the copy.
//
// Errors: OutOfRange when [gpa, gpa + len) is not guest RAM contiguous on the host (one
// memslot, or slots that continue each other: MemslotTable::Translate);
// PermissionDenied when the owner protected the page against that access;
// FailedPrecondition after teardown; the page server's error when it failed.
// Thread-safety: implementations are thread-safe (several vCPU threads call at once). The
// guest may change the bytes concurrently: callers copy first, then validate the copy.
#ifndef MMUVISOR_VMM_MEMORY_GUEST_MEMORY_ACCESS_H_
#define MMUVISOR_VMM_MEMORY_GUEST_MEMORY_ACCESS_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "vmm/memory/address.h"

namespace mmuvisor::vmm {

class GuestMemoryAccess {
 public:
  virtual ~GuestMemoryAccess() = default;
  virtual absl::Status ReadGuest(Gpa gpa, absl::Span<uint8_t> out) = 0;
  // Host writes are recorded for dirty tracking by the implementation.
  virtual absl::Status WriteGuest(Gpa gpa, absl::Span<const uint8_t> in) = 0;
  // Whether [gpa, gpa + len) is guest RAM contiguous on the host (no access is made).
  virtual bool ContainsGuestRange(Gpa gpa, ByteSize len) const = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_GUEST_MEMORY_ACCESS_H_
