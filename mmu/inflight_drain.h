// InflightDrain: lets an invalidation wait, in a subscription's invalidate_range_start,
// for the accesses that translated before its zap and are still copying bytes (Linux:
// drivers waiting for their in-flight DMA in invalidate_range_start; ODP, HMM mirrors,
// gfn_to_pfn_cache's lock). The one in-flight drain of the tree; its protocol, with each
// memory order's partner, is told in mmu/README.md ("The in-flight drain").
//
//   access:  Section: count[stripe]++ ; seq_cst fence ; waiter announced? step back ;
//            look the page up (a zapped page misses) ; copy ; count[stripe]-- (release)
//   start:   zap (the subscription's own) ; Wait(): waiters++ ; seq_cst fence ;
//            each stripe read 0 once ; waiters--      -- or, non-blockable: TryWait()
//
// A section never sleeps and covers at most one page copy. REQUIRES of the user: the zap
// (whatever makes a later lookup miss) comes before Wait/TryWait in the start.
// Threads: sections on any thread (per-thread stripes); Wait/TryWait on invalidating
// threads. No locks.
#ifndef MMUVISOR_MMU_INFLIGHT_DRAIN_H_
#define MMUVISOR_MMU_INFLIGHT_DRAIN_H_

#include <atomic>
#include <cstdint>

namespace mmuvisor::mmu {

class InflightDrain {
 public:
  static constexpr unsigned kStripes = 16;

  InflightDrain() = default;
  InflightDrain(const InflightDrain&) = delete;
  InflightDrain& operator=(const InflightDrain&) = delete;

  // RAII: one access (lookup + copy of at most a page). Must not sleep inside.
  class Section {
   public:
    explicit Section(InflightDrain& drain);  // out of line: the fences stay in one TU
    ~Section();
    Section(const Section&) = delete;
    Section& operator=(const Section&) = delete;

   private:
    std::atomic<int64_t>* count_;
  };

  // Blockable starts: waits (spinning: sections are short) until every section that
  // began before has ended. True if it had to wait.
  bool Wait();
  // Non-blockable starts: true if no section is in flight (new ones step back until this
  // returns); false if one is (the start must refuse: EAGAIN, and change nothing).
  bool TryWait();

  uint64_t waits() const { return waits_.load(std::memory_order_relaxed); }
  uint64_t refusals() const { return refusals_.load(std::memory_order_relaxed); }
  // Starts inside Wait/TryWait now: with a section held open, a test waits for this to
  // turn positive to know a start is past its announcement and must wait for the section.
  int64_t waiters() const { return waiters_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Stripe {
    std::atomic<int64_t> count{0};
  };
  static unsigned ThisStripe();
  void Announce();

  Stripe stripes_[kStripes];
  std::atomic<int64_t> waiters_{0};  // starts inside Wait/TryWait
  std::atomic<uint64_t> waits_{0};     // relaxed: statistics
  std::atomic<uint64_t> refusals_{0};
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_INFLIGHT_DRAIN_H_
