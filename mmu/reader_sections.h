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
  class Section {
   public:
    explicit Section(ReaderSections& sections);
    ~Section();
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
  static unsigned ThisStripe();

  Stripe stripes_[kStripes];
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_READER_SECTIONS_H_
