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
// How: mmu::InflightDrain (mmu/inflight_drain.h; the protocol, told once, in mmu/README.md):
// every access is a section; InvalidateRangeStart zaps (the base class) and then waits for
// the sections in flight. Either the start sees the access counted (and waits for it to
// end: the bytes land in the old page before the primary touches it), or the access's
// Translate sees the zap (it misses and faults). A section never sleeps and covers at most
// one page copy, so the wait is short and bounded: like KVM's mmu_lock, it is taken in
// non-blockable starts too (this subscription has an end, so it may not refuse one:
// notifier/README.md, rule 2). SetLayout waits the same way after zapping the slots it
// removes, before any start can see the new layout: such a start finds no slot for the
// old pages, so it would neither zap nor wait there.
//
// Threads: AccessSection on any thread (per-thread stripes); hub callbacks on
// invalidating threads. No locks beyond SecondaryMmu's.
#ifndef MMUVISOR_VMM_DMA_DEVICE_MMU_H_
#define MMUVISOR_VMM_DMA_DEVICE_MMU_H_

#include <atomic>
#include <cstdint>
#include <utility>

#include "mmu/inflight_drain.h"
#include "mmu/secondary_mmu.h"

namespace mmuvisor::vmm::dma {

class DeviceMmu : public mmu::SecondaryMmu {
 public:
  DeviceMmu(mmu::Primary& primary, mmu::SecondaryMmuOptions options)
      : mmu::SecondaryMmu(primary, std::move(options)) {}

  // RAII: one access (Translate + copy of at most a page). Must not sleep inside.
  class AccessSection {
   public:
    explicit AccessSection(DeviceMmu& mmu) : section_(mmu.drain_) {}

   private:
    mmu::InflightDrain::Section section_;
  };

  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override;

  // Test only: false makes starts skip the wait (to show what it prevents).
  void SetAccessWaitForTesting(bool on) { wait_enabled_.store(on, std::memory_order_relaxed); }
  // Whether starts wait for accesses in flight (always, except after the test switch): then
  // a write whose access raced a start has landed before the primary changed anything.
  bool access_wait_enabled() const { return wait_enabled_.load(std::memory_order_relaxed); }

  // Times an invalidation had to wait for an access in flight.
  uint64_t access_waits() const { return drain_.waits(); }
  // Invalidations waiting for accesses in flight right now (tests force interleavings).
  int64_t access_waiters() const { return drain_.waiters(); }

 private:
  // SetLayout's zap of removed slots: the same wait as a start's (an access that translated
  // through a removed slot finishes before any start can see the new layout).
  void AfterLayoutZap() override;

  mmu::InflightDrain drain_;
  std::atomic<bool> wait_enabled_{true};  // relaxed: set before the test's accesses
};

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_VMM_DMA_DEVICE_MMU_H_
