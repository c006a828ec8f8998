#include "vmm/host/page_clock.h"

namespace mmuvisor::vmm {

std::vector<uint64_t> PageClock::PickVictims(uint64_t want,
                                             const std::vector<uint8_t>& resident,
                                             absl::FunctionRef<bool(uint64_t page)> young) {
  std::vector<uint64_t> victims;
  if (num_pages_ == 0 || want == 0) return victims;
  std::vector<uint8_t> picked(num_pages_, 0);  // the second turn must not pick twice
  // Two full turns at most: the first clears every young bit it passes.
  for (uint64_t step = 0; step < 2 * num_pages_ && victims.size() < want; ++step) {
    const uint64_t page = hand_;
    hand_ = (hand_ + 1) % num_pages_;
    if (page >= resident.size() || resident[page] == 0 || picked[page] != 0) continue;
    if (young(page)) {
      ++second_chances_;
      continue;
    }
    picked[page] = 1;
    victims.push_back(page);
  }
  return victims;
}

}  // namespace mmuvisor::vmm
