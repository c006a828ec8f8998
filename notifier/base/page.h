// Page geometry, one definition for every layer: the 4 KiB base page of x86-64 that guest
// memory, the secondary MMUs, the page server and the boot code all work in.
#ifndef MMUVISOR_NOTIFIER_BASE_PAGE_H_
#define MMUVISOR_NOTIFIER_BASE_PAGE_H_

#include <cstdint>

namespace mmuvisor {

inline constexpr unsigned kPageShift = 12;
inline constexpr uint64_t kPageSize = uint64_t{1} << kPageShift;

constexpr bool IsPageAligned(uint64_t v) { return (v & (kPageSize - 1)) == 0; }

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_PAGE_H_
