#include "vmm/machine/real_mode_helpers.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "vmm/machine/local_apic.h"

namespace mmuvisor::vmm {

std::optional<uint64_t> RealModeHelperGpa(uint64_t ram_bytes,
                                          absl::Span<const IdentityWindow> windows) {
  constexpr uint64_t k4GiB = 1ull << 32;
  constexpr uint64_t kPage = 4096;
  // Occupied [begin, end) ranges clipped to 4 GiB, page-rounded outwards.
  std::vector<std::pair<uint64_t, uint64_t>> used;
  auto add = [&](uint64_t gpa, uint64_t size) {
    if (size == 0 || gpa >= k4GiB) return;
    const uint64_t end = size > k4GiB - gpa ? k4GiB : gpa + size;
    used.emplace_back(gpa / kPage * kPage, (end + kPage - 1) / kPage * kPage);
  };
  add(0, ram_bytes);
  for (const IdentityWindow& w : windows) add(w.gpa, w.size);
  add(kLocalApicGpa, kLocalApicBytes);
  auto is_free = [&](uint64_t gpa) {
    return std::none_of(used.begin(), used.end(), [&](const auto& r) {
      return gpa < r.second && r.first < gpa + kRealModeHelperBytes;
    });
  };
  if (is_free(kDefaultIdentityMapGpa)) return kDefaultIdentityMapGpa;
  // The highest free block ends at 4 GiB or where some used range begins.
  std::vector<uint64_t> tops{k4GiB};
  for (const auto& r : used) tops.push_back(r.first);
  std::sort(tops.begin(), tops.end(), std::greater<>());
  for (uint64_t top : tops) {
    if (top < kRealModeHelperBytes) break;
    if (is_free(top - kRealModeHelperBytes)) return top - kRealModeHelperBytes;
  }
  return std::nullopt;
}

}  // namespace mmuvisor::vmm
