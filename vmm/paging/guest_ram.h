// GuestRam: one host mapping that backs guest RAM, owned RAII (mapping and memfd).
//
// Backings (MemoryBacking, vmm/memory/memory_backing.h):
//  - kMemfd (default): memfd_create + MAP_SHARED. Shareable and punchable; discard is
//    MADV_REMOVE, which frees the shmem pages (a hole in the memfd) and, on a range registered
//    with userfaultfd, raises UFFD_EVENT_REMOVE. (MADV_DONTNEED would only drop the PTEs: the
//    page would stay in the page cache and come back without a fault.)
//  - kAnonymous: MAP_PRIVATE|MAP_ANONYMOUS; discard is MADV_DONTNEED (also raises
//    UFFD_EVENT_REMOVE when registered).
// Reclaim of memfd-shared RAM splits the discard in two (see vmm/host/README.md, "Cost"):
// DropMappings (MADV_DONTNEED: the page-table entries go, the contents stay in the memfd),
// then, once the pages are saved, PunchHole (fallocate: the contents go; no page-table
// entries left to zap, no UFFD_EVENT_REMOVE, works on a read-only mapping).
// Sizes are whole host pages. Page indexes are offsets from base() in pages; ranges are
// half-open [first, first + count).
//
// Threads: immutable after Create(); Discard() may be called from any thread. NOTE: when the
// range is registered with a PageServer, Discard() blocks until a handler thread has read the
// REMOVE event (kernel rule), so it must not be called from a handler thread or after the
// server's handlers have stopped without the server being shut down.
#ifndef MMUVISOR_VMM_PAGING_GUEST_RAM_H_
#define MMUVISOR_VMM_PAGING_GUEST_RAM_H_

#include <cstddef>
#include <cstdint>
#include <memory>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/memory/memory_backing.h"

namespace mmuvisor::vmm {

class GuestRam {
 public:
  // REQUIRES: bytes > 0 and a multiple of the host page size.
  static absl::StatusOr<std::unique_ptr<GuestRam>> Create(
      size_t bytes, MemoryBacking backing = MemoryBacking::kMemfd);
  ~GuestRam();
  GuestRam(const GuestRam&) = delete;
  GuestRam& operator=(const GuestRam&) = delete;

  uint8_t* base() const { return base_; }
  size_t bytes() const { return bytes_; }
  size_t page_size() const { return page_size_; }
  uint64_t num_pages() const { return bytes_ / page_size_; }
  MemoryBacking backing() const { return backing_; }
  // The memfd, or -1 for anonymous memory. Owned by this object.
  int memfd() const { return memfd_; }
  uint8_t* PageAddress(uint64_t page) const { return base_ + page * page_size_; }

  // Drops the contents of [first, first + count): the next access faults (zero-filled, or
  // served by a PageServer if registered). Does not touch any swap store.
  absl::Status Discard(uint64_t first, uint64_t count);

  // memfd-shared only (FailedPrecondition otherwise). DropMappings zaps the range's
  // page-table entries (and, through the kernel's notifiers, KVM's); the contents stay in
  // the memfd, so the next access maps the same page again without a userfaultfd fault. On
  // a range registered with a PageServer it raises UFFD_EVENT_REMOVE (and blocks until a
  // handler reads it), like Discard.
  absl::Status DropMappings(uint64_t first, uint64_t count);
  // Frees the memfd's pages of the range (and zaps any mapping of them): the next access
  // faults (zero-filled, or served by a PageServer if registered). Raises no userfaultfd
  // event and works whatever the mapping's protection.
  absl::Status PunchHole(uint64_t first, uint64_t count);
  // Copies the memfd's contents of the range into `out` (count pages) without mapping
  // them (pread; holes read as zeros). memfd-shared only.
  absl::Status ReadPages(uint64_t first, uint64_t count, uint8_t* out) const;

 private:
  absl::Status CheckPages(const char* op, uint64_t first, uint64_t count) const;

  GuestRam(uint8_t* base, size_t bytes, size_t page_size, int memfd, MemoryBacking backing)
      : base_(base), bytes_(bytes), page_size_(page_size), memfd_(memfd), backing_(backing) {}

  uint8_t* const base_;
  const size_t bytes_;
  const size_t page_size_;
  const int memfd_;
  const MemoryBacking backing_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_PAGING_GUEST_RAM_H_
