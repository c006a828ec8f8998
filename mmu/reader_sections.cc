// ReaderSections: stripe assignment (round-robin per thread, so two threads rarely share
// a cache line).
#include "mmu/reader_sections.h"

namespace mmuvisor::mmu {

unsigned ReaderSections::ThisStripe() {
  static std::atomic<unsigned> next{0};
  thread_local const unsigned stripe = next.fetch_add(1, std::memory_order_relaxed) % kStripes;
  return stripe;
}

ReaderSections::Section::Section(ReaderSections& sections)
    : count_(&sections.stripes_[ThisStripe()].count) {
  // seq_cst, with the seq_cst table-pointer loads of the walk (ShadowPageTable::LookupRaw)
  // and, on the reclaim side, the seq_cst unlink store (ShadowPageTable::ZapTable) and the
  // seq_cst count loads in Quiescent(): a store-buffering (Dekker) pair that only seq_cst
  // orders. Either Quiescent() sees this increment, or the walk sees the unlink.
  count_->fetch_add(1, std::memory_order_seq_cst);
}

ReaderSections::Section::~Section() {
  // Release pairs with the acquire load in Quiescent(): the walk's loads happen before
  // any free that follows a zero count.
  count_->fetch_sub(1, std::memory_order_release);
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
