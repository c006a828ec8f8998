// MemslotTable: the validated set of guest memory slots. Each GuestMemorySlot maps
// guest-physical [gpa, gpa + size) to host-virtual [hva, hva + size).
//
// Invariants, checked by Create() (InvalidArgument naming the slot and the rule broken):
//   - every gpa, size and hva is page aligned and size > 0;
//   - neither range wraps around 2^64 and the guest range stays below the limit (by
//     default 2^52, the x86-64 MAXPHYADDR ceiling);
//   - size is at most KVM_MEM_MAX_NR_PAGES pages;
//   - slot ids are unique and below `max_slots` (KVM_CAP_NR_MEMSLOTS);
//   - guest ranges do not overlap (KVM would say EEXIST). Host ranges may overlap: that is
//     an alias (`--aliases K`; KVM allows it too), one host page seen at several guest
//     addresses, and a host-side change to it must reach every one of them (Reverse).
// Slots are kept sorted by gpa. The table is immutable after creation: readers on any
// thread work on this consistent snapshot; a change builds a new table.
#ifndef MMUVISOR_VMM_MEMORY_MEMSLOT_TABLE_H_
#define MMUVISOR_VMM_MEMORY_MEMSLOT_TABLE_H_

#include <cstdint>
#include <optional>
#include <vector>

#include "absl/status/statusor.h"
#include "vmm/memory/address.h"

namespace mmuvisor::vmm {

struct GuestMemorySlot {
  uint32_t slot = 0;
  Gpa gpa;
  ByteSize size;
  Hva hva;
  uint32_t flags = 0;  // KVM_MEM_* flags
  Gpa end() const { return gpa + size; }
};

struct MemslotLimits {
  uint32_t max_slots = 32764;           // KVM_CAP_NR_MEMSLOTS on the reference host
  uint64_t max_gpa = 1ull << 52;        // exclusive upper bound for gpa + size
  uint64_t max_slot_pages = (1ull << 31) - 1;  // KVM_MEM_MAX_NR_PAGES
};

class MemslotTable {
 public:
  static absl::StatusOr<MemslotTable> Create(std::vector<GuestMemorySlot> slots,
                                             const MemslotLimits& limits = {});

  // The slot holding gpa, if any.
  const GuestMemorySlot* Find(Gpa gpa) const;
  // The slot with id `slot`, if any.
  const GuestMemorySlot* FindId(uint32_t slot) const;
  // Host address of [gpa, gpa + size) if that whole range is guest memory contiguous on
  // the host: inside one slot, or running on into slots that continue it both in
  // guest-physical and in host addresses (RAM carved into slots). size 0 is allowed.
  std::optional<Hva> Translate(Gpa gpa, ByteSize size) const;
  // The guest-physical address that maps host address hva, if any: the lowest, when
  // aliases map it several times.
  std::optional<Gpa> Reverse(Hva hva) const;
  // Every guest-physical address that maps hva (one per slot covering it), lowest first.
  std::vector<Gpa> GpasOf(Hva hva) const;

  const std::vector<GuestMemorySlot>& slots() const { return slots_; }

 private:
  explicit MemslotTable(std::vector<GuestMemorySlot> slots) : slots_(std::move(slots)) {}
  std::vector<GuestMemorySlot> slots_;  // sorted by gpa, validated
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_MEMSLOT_TABLE_H_
