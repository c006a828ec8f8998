// ReaderSections: stripe assignment (round-robin per thread, so two threads rarely share
// a cache line).
#include "mmu/reader_sections.h"

namespace mmuvisor::mmu {

unsigned ReaderSections::ThisStripe() {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
  return stripe;
}

}  // namespace mmuvisor::mmu
