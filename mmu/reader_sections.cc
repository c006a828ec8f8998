// ReaderSections: stripe assignment and the quiescence check (sections are inline in the
// header).
#include "mmu/reader_sections.h"

namespace mmuvisor::mmu {

unsigned ReaderSections::AssignStripe() {
  // relaxed: only spreading matters.
  static std::atomic<unsigned> next{0};
  const unsigned stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
  stripe_plus_one_ = stripe + 1;
  return stripe;
}

bool ReaderSections::Quiescent() const {
  for (const Stripe& stripe : stripes_) {
    // seq_cst: the Dekker pair with Section's increment (see there). It also acquires:
    // pairs with the release decrement in ~Section, so a zero read orders every walk of
    // the finished sections before the frees that follow.
    if (stripe.count.load(std::memory_order_seq_cst) != 0) return false;
  }
  return true;
}

}  // namespace mmuvisor::mmu
