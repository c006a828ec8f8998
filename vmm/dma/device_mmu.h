// DeviceMmu: the SecondaryMmu a device (or a host thread standing in for a vCPU) uses to
// reach guest memory, plus the one thing a seqlock-validated accessor cannot do alone:
// keep an invalidation from completing while an access that translated before it is still
// copying bytes.
//
// Why: SecondaryMmu's lockless protocol (SnapshotSeq, Translate, copy, AccessRetry) tells a
// reader afterwards that its bytes may be stale, so it can read again. A *write* cannot be
// taken back: if the primary, after our Translate, saved the page to swap, or copied it to
// a new page, and freed it (perhaps handing it to another guest page), our write lands in
// a page nobody uses any more — lost, or scribbled over someone else's data. Linux drivers
// close this in invalidate_range_start by waiting for their in-flight DMA (ODP, HMM
// mirrors, gfn_to_pfn_cache's lock); KVM's vCPUs close it with a TLB flush.
//
// Protocol (Dekker pair):
//   access:  AccessSection: inflight[stripe]++ ; seq_cst fence ;
//            (a waiter announced? step back: inflight--, wait for it, start over) ;
//            Translate ; copy ; inflight[stripe]-- (release)
//   start:   SecondaryMmu::InvalidateRangeStart (zaps under the MMU lock) ; waiters++ ;
//            seq_cst fence ; for each stripe: spin until it reads 0 once ; waiters--
// (Stripes are shared by threads whose ids hash alike, so a stripe may never read 0 while
// its threads take turns; the waiter flag makes new sections step back instead.)
// Either the start sees the access counted (and waits for it to end: the bytes land in
// the old page before the primary touches it), or the access's Translate sees the zap
// (it misses and faults). An access section never sleeps and covers at most one page
// copy, so the wait is short and bounded, and safe in non-blockable starts too.
//
// Threads: AccessSection on any thread (per-thread stripes); hub callbacks on
// invalidating threads. No locks beyond SecondaryMmu's.
#ifndef MMUVISOR_VMM_DMA_DEVICE_MMU_H_
#define MMUVISOR_VMM_DMA_DEVICE_MMU_H_

#include <atomic>
#include <cstdint>
#include <thread>
#include <utility>

#include "mmu/secondary_mmu.h"

namespace mmuvisor::vmm::dma {

class DeviceMmu : public mmu::SecondaryMmu {
 public:
  static constexpr unsigned kStripes = 16;

  DeviceMmu(mmu::Primary& primary, mmu::SecondaryMmuOptions options)
      : mmu::SecondaryMmu(primary, std::move(options)) {}

  // RAII: one access (Translate + copy of at most a page). Must not sleep inside.
  class AccessSection {
   public:
    explicit AccessSection(DeviceMmu& mmu);  // out of line: the fences stay in one TU
    ~AccessSection();
    AccessSection(const AccessSection&) = delete;
    AccessSection& operator=(const AccessSection&) = delete;

   private:
    std::atomic<int64_t>* count_;
  };

  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override;

  // Test only: false makes starts skip the wait (to show what it prevents).
  void SetAccessWaitForTesting(bool on) { wait_enabled_.store(on, std::memory_order_relaxed); }
  // Whether starts wait for accesses in flight (always, except after the test switch): then
  // a write whose access raced a start has landed before the primary changed anything.
  bool access_wait_enabled() const { return wait_enabled_.load(std::memory_order_relaxed); }

  // Times an invalidation had to wait for an access in flight.
  uint64_t access_waits() const { return waits_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Stripe {
    std::atomic<int64_t> count{0};
  };
  static unsigned ThisStripe();
  void WaitForAccesses();

  Stripe stripes_[kStripes];
  std::atomic<int64_t> waiters_{0};  // invalidations inside WaitForAccesses
  std::atomic<bool> wait_enabled_{true};  // relaxed: set before the test's accesses
  std::atomic<uint64_t> waits_{0};
};

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_VMM_DMA_DEVICE_MMU_H_
