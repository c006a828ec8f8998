// ReaderSections: the read side that lets Translate() walk a ShadowPageTable without the
// MMU lock (KVM's TDP MMU walks under rcu_read_lock() for the same reason).
//
// A reader brackets its lockless walks with a Section (one atomic increment on entry, one
// decrement on exit, on a per-thread stripe). The MMU, after unlinking tables under its
// lock, frees them only when Quiescent() says no section is open; otherwise they stay
// retired until a later check. No grace-period wait ever happens in an invalidation, so
// non-blockable starts never sleep here.
//
// Invariants: a section that began before an unlink either sees the unlinked pointer and
// is counted when Quiescent() reads its stripe, or began after the unlink and cannot see
// the table (seq_cst increment + seq_cst pointer loads on the reader side, seq_cst unlink
// store + seq_cst count loads on the reclaim side: a Dekker pair). The directory cache's
// token (shadow_page_table.h) rides on the same pair: seq_cst token load after the
// increment, seq_cst token store after the unlinks and before the count loads. No
// fences, so TSan models all of it.
// Threads: Enter/exit from any thread, nested sections allowed; Quiescent() from any
// thread (typically under the MMU lock). No locks.
#ifndef MMUVISOR_MMU_READER_SECTIONS_H_
#define MMUVISOR_MMU_READER_SECTIONS_H_

#include <atomic>
#include <cstdint>

namespace mmuvisor::mmu {

class ReaderSections {
 public:
  static constexpr unsigned kStripes = 16;

  ReaderSections() = default;
  ReaderSections(const ReaderSections&) = delete;
  ReaderSections& operator=(const ReaderSections&) = delete;

  // RAII read-side section. Keep it short: retired tables are freed only between
  // sections.
  // Inline: Translate callers that open a section per access pay two atomic RMWs and
  // nothing more.
  class Section {
   public:
    explicit Section(ReaderSections& sections)
        : count_(&sections.stripes_[ThisStripe()].count) {
      // seq_cst, with the seq_cst table-pointer and token loads of the walk
      // (ShadowPageTable::LookupRaw) and, on the reclaim side, the seq_cst unlink and
      // token stores (ShadowPageTable::ZapRange) and the seq_cst count loads in
      // Quiescent(): a store-buffering (Dekker) pair that only seq_cst orders. Either
      // Quiescent() sees this increment, or the walk sees the unlink and the new token.
      count_->fetch_add(1, std::memory_order_seq_cst);
    }
    ~Section() {
      // Release pairs with the acquire load in Quiescent(): the walk's loads happen
      // before any free that follows a zero count.
      count_->fetch_sub(1, std::memory_order_release);
    }
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    std::atomic<int64_t>* count_;
  };

  // True if no section is open right now. Call it after unlinking (release stores).
  bool Quiescent() const;

 private:
  struct alignas(64) Stripe {
    std::atomic<int64_t> count{0};
  };
  // This thread's stripe, assigned round-robin on first use (so two threads rarely share
  // a cache line); stripe_plus_one_ is 0 until then.
  static unsigned ThisStripe() {
    const unsigned stripe = stripe_plus_one_;
    return stripe != 0 ? stripe - 1 : AssignStripe();
  }
  static unsigned AssignStripe();
  static inline thread_local constinit unsigned stripe_plus_one_ = 0;

  Stripe stripes_[kStripes];
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_READER_SECTIONS_H_
