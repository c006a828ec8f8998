// PageClock: the CLOCK (second-chance) approximation of LRU over guest RAM pages, the
// aging half of the reclaim driver.
//
// A hand sweeps the pages in order. For each resident page under the hand, `young(page)`
// reports whether it was used since the hand last passed (the caller ORs the hub's
// ClearYoung over the subscribed secondary MMUs — which clears their accessed bits — with
// the dirty log's "written" bit). A young page gets its second chance and the hand moves
// on; an old one becomes a victim. Non-resident pages are skipped. One call looks at each
// page at most twice (a full turn after the young bits are cleared), so it ends even
// when every page is young.
//
// Threads: one driver thread at a time (not thread-safe; the ReclaimDriver owns it).
#ifndef MMUVISOR_VMM_HOST_PAGE_CLOCK_H_
#define MMUVISOR_VMM_HOST_PAGE_CLOCK_H_

#include <cstdint>
#include <vector>

#include "absl/functional/function_ref.h"

namespace mmuvisor::vmm {

class PageClock {
 public:
  explicit PageClock(uint64_t num_pages) : num_pages_(num_pages) {}

  // Up to `want` victims, in hand order. resident[p] != 0 for resident pages
  // (resident.size() == num_pages).
  std::vector<uint64_t> PickVictims(uint64_t want, const std::vector<uint8_t>& resident,
                                    absl::FunctionRef<bool(uint64_t page)> young);

  uint64_t hand() const { return hand_; }
  uint64_t second_chances() const { return second_chances_; }

 private:
  const uint64_t num_pages_;
  uint64_t hand_ = 0;
  uint64_t second_chances_ = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_PAGE_CLOCK_H_
