// GuestMemory: the guest's RAM, guest-physical [0, ram_size), backed by a memfd (default:
// shareable with other processes, hole-punchable) or by anonymous memory, mapped once
// into this process and described by a MemslotTable.
//
// Invariants: the host mapping lives as long as this object, so it outlives every memslot
// registered from it as long as the KvmVm is destroyed first (Machine declares the VM after
// the memory). Every access on behalf of the guest goes through Read/Write/HostRange,
// which bounds-check [gpa, gpa + len) against the slots (OutOfRange otherwise).
// Thread-safety: the layout is immutable after Create(); Read/Write may be called from any
// vCPU thread (they copy guest bytes, which the guest may change concurrently: callers copy
// first, then validate).
#ifndef MMUVISOR_VMM_MEMORY_GUEST_MEMORY_H_
#define MMUVISOR_VMM_MEMORY_GUEST_MEMORY_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "vmm/kvm/host_mapping.h"
#include "vmm/kvm/unique_fd.h"
#include "vmm/memory/address.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {

class KvmVm;

enum class MemoryBacking {
  kMemfd,      // memfd_create + MAP_SHARED (default)
  kAnonymous,  // MAP_PRIVATE | MAP_ANONYMOUS
};

absl::string_view MemoryBackingName(MemoryBacking backing);

class GuestMemory {
 public:
  // Maps `ram_size` bytes (page aligned, > 0) of fresh zeroed memory. Nothing is touched:
  // pages are allocated on first guest or host access (MAP_NORESERVE).
  static absl::StatusOr<GuestMemory> Create(ByteSize ram_size, MemoryBacking backing,
                                            const MemslotLimits& limits = {});

  GuestMemory(GuestMemory&&) = default;
  GuestMemory& operator=(GuestMemory&&) = default;

  // Registers every slot with KVM (KVM_SET_USER_MEMORY_REGION).
  absl::Status RegisterWith(const KvmVm& vm) const;

  // Host address of [gpa, gpa + len); OutOfRange unless the range lies inside one slot.
  absl::StatusOr<uint8_t*> HostRange(Gpa gpa, ByteSize len) const;
  absl::Status Read(Gpa gpa, absl::Span<uint8_t> out) const;
  absl::Status Write(Gpa gpa, absl::Span<const uint8_t> in) const;

  const MemslotTable& slots() const { return table_; }
  ByteSize ram_size() const { return ByteSize{mapping_.size()}; }
  uint8_t* host_base() const { return mapping_.data(); }
  MemoryBacking backing() const { return backing_; }
  // The memfd (kMemfd) or -1 (kAnonymous).
  int memfd() const { return memfd_.get(); }

 private:
  GuestMemory(MemoryBacking backing, UniqueFd memfd, HostMapping mapping, MemslotTable table)
      : backing_(backing),
        memfd_(std::move(memfd)),
        mapping_(std::move(mapping)),
        table_(std::move(table)) {}

  MemoryBacking backing_;
  UniqueFd memfd_;
  HostMapping mapping_;
  MemslotTable table_;
};

// Physical RAM of this host in bytes (sysconf), the ceiling for --mem.
uint64_t HostPhysicalMemoryBytes();

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_GUEST_MEMORY_H_
