// Distinct types for the three kinds of numbers guest memory code juggles:
//   Gpa       a guest-physical address,
//   Hva       a host-virtual address (a pointer into this process),
//   ByteSize  a length in bytes.
// Ranges are half-open [start, start + size) everywhere. Arithmetic is only what makes
// sense (Gpa + ByteSize, Gpa - Gpa); overflow is checked by the callers that take guest
// input (see MemslotTable and HostAddressSpace::ReadGuest/WriteGuest).
#ifndef MMUVISOR_VMM_MEMORY_ADDRESS_H_
#define MMUVISOR_VMM_MEMORY_ADDRESS_H_

#include <compare>
#include <cstdint>

#include "notifier/base/page.h"  // kPageSize, IsPageAligned

namespace mmuvisor::vmm {

struct ByteSize {
  uint64_t value = 0;
  constexpr auto operator<=>(const ByteSize&) const = default;
};

struct Gpa {
  uint64_t value = 0;
  constexpr auto operator<=>(const Gpa&) const = default;
  constexpr Gpa operator+(ByteSize s) const { return Gpa{value + s.value}; }
  constexpr ByteSize operator-(Gpa o) const { return ByteSize{value - o.value}; }
};

struct Hva {
  uint64_t value = 0;
  constexpr auto operator<=>(const Hva&) const = default;
  constexpr Hva operator+(ByteSize s) const { return Hva{value + s.value}; }
  template <typename T>
  T* As() const {
    return reinterpret_cast<T*>(value);
  }
  static Hva Of(const void* p) { return Hva{reinterpret_cast<uint64_t>(p)}; }
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_ADDRESS_H_
