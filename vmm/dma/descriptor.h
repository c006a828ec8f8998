// DMA descriptors as the device sees them: a copy of the guest's struct mmv_dma_desc
// (guests/include/mmuvisor/guest_abi.h) and the rules that make one safe to execute.
//
// Descriptors are untrusted guest input. The device copies a descriptor out of guest
// memory once, validates the copy (the guest may keep writing the original) and executes
// only what the copy says. ValidateDescriptor() is pure: every guest-supplied number is
// checked before any arithmetic that could overflow, so no descriptor can make the device
// touch memory outside guest memory (DmaAddressSpace: RAM and its aliases).
//
// No state, no locks: callable from any thread.
#ifndef MMUVISOR_VMM_DMA_DESCRIPTOR_H_
#define MMUVISOR_VMM_DMA_DESCRIPTOR_H_

#include <cstdint>

#include "absl/strings/string_view.h"
#include "mmuvisor/guest_abi.h"

namespace mmuvisor::vmm::dma {

inline constexpr uint32_t kDmaStatusCount = MMV_DMA_STATUS_FAULT + 1;

// The guest-physical addresses a descriptor may name: RAM [0, ram_size) and, with aliases
// (`--aliases K`), the same bytes at [k * alias_stride, k * alias_stride + ram_size) for
// k = 1..aliases. Implicit from a RAM size alone.
struct DmaAddressSpace {
  DmaAddressSpace(uint64_t ram = 0) : ram_size(ram) {}  // NOLINT: implicit on purpose
  DmaAddressSpace(uint64_t ram, uint32_t k, uint64_t stride)
      : ram_size(ram), aliases(k), alias_stride(stride) {}
  // [addr, addr + len) lies in one of the ranges. REQUIRES: addr + len does not wrap.
  bool Contains(uint64_t addr, uint64_t len) const;

  uint64_t ram_size = 0;
  uint32_t aliases = 0;
  uint64_t alias_stride = 0;
};

// "ok", "bad-length", ... ("unknown" for numbers outside the ABI).
absl::string_view DmaStatusName(uint32_t status);
absl::string_view DmaOpName(uint32_t op);

// The status a descriptor earns before execution: MMV_DMA_STATUS_OK when it may run, or the
// first violated rule, checked in this order: BAD_DESC (magic, op, unknown flags),
// BAD_LENGTH (0, > MMV_DMA_MAX_LEN, not a multiple of 8), MISALIGNED (an address the op
// uses is not 8-byte aligned), WRAP (addr + len overflows), OUT_OF_RANGE (leaves guest
// memory: one range of `memory`), OVERLAP (COPY source and destination share a
// guest-physical byte; through two aliases they may share host bytes, which the copy
// handles as the guest asked). The `next` link is checked separately (ValidateNext), when
// the chain is followed.
uint32_t ValidateDescriptor(const mmv_dma_desc& desc, const DmaAddressSpace& memory);

// OK when `gpa` can hold a descriptor: MMV_DMA_DESC_ALIGN-aligned and the whole
// descriptor lies inside one range of `memory`. (0 is a valid descriptor address for the
// doorbell; as a `next` link it means "end of chain" and is not passed here.)
bool DescriptorAddressValid(uint64_t gpa, const DmaAddressSpace& memory);

// A well-formed descriptor as a guest writes it: magic set, status PENDING, result 0.
// (Tests and the host-thread workload build their chains with it.)
mmv_dma_desc MakeDescriptor(uint32_t op, uint64_t src, uint64_t dst, uint64_t len,
                            uint64_t value = 0, uint64_t next = 0, uint32_t flags = 0);

// The CHECKSUM op's fold (guest_abi.h), one 64-bit word at a time. `index` counts words
// from the start of the descriptor's range.
inline uint64_t DmaChecksumStep(uint64_t sum, uint64_t word, uint64_t index) {
  return (sum ^ word) * MMV_DMA_CHECKSUM_PRIME + index;
}

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_VMM_DMA_DESCRIPTOR_H_
