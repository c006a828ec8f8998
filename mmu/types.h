// Vocabulary shared by the mmu/ layer: guest frame numbers, access kinds, page geometry.
//
// A Gfn is a guest frame number (guest-physical address >> kPageShift). Ranges of frames
// are half-open [start, end). A "primary address" is an address in the address space the
// notifier hub covers (the host process's view of guest memory); the primary resolves it
// to the host page that currently backs it. No locks; plain values, callable anywhere.
#ifndef MMUVISOR_MMU_TYPES_H_
#define MMUVISOR_MMU_TYPES_H_

#include <cstdint>

#include "notifier/base/page.h"  // kPageShift, kPageSize

namespace mmuvisor::mmu {

// Guest frame number. 36 significant bits (48-bit guest-physical addresses, x86-like).
using Gfn = uint64_t;
inline constexpr unsigned kGfnBits = 36;
inline constexpr Gfn kMaxGfn = (Gfn{1} << kGfnBits) - 1;

// Half-open range of guest frames [start, end).
struct GfnRange {
  Gfn start = 0;
  Gfn end = 0;
  bool Contains(Gfn gfn) const { return gfn >= start && gfn < end; }
  bool empty() const { return end <= start; }
};

enum class Access : uint8_t { kRead, kWrite };

inline const char* AccessName(Access access) {
  return access == Access::kWrite ? "write" : "read";
}

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_TYPES_H_
