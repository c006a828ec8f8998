// SecondaryMmu: a KVM-like secondary MMU. It subscribes to a notifier hub as a classic
// subscription, keeps guest frame -> host page mappings in a ShadowPageTable, and fills it
// with KVM's retry fault path. The protocol, with a timeline, is in mmu/README.md.
//
//   Fault(gfn, access):                         InvalidateRangeStart(range):
//     seq = SnapshotSeq()  (acquire)              active++; lock; Begin; RangeAdd; zap
//     [lockless pre-check -> retry]               unlock
//     page = primary.Resolve(addr)  (may sleep) InvalidateRangeEnd(range):
//     [lockless re-check -> retry]                lock; End (seq++, in_progress--); unlock
//     lock; RetryGfn(seq, gfn)? retry : install   active--
//
// Invariants
//   - No entry maps gfn to a page the primary has stopped using: start zaps before the
//     primary changes anything, and a fault racing with it fails RetryGfn.
//   - Begin/End are paired: both run iff a slot of the layout intersects the range, and
//     the layout cannot change between them (InvalidateState::UpdateLayout).
//   - After Release() (teardown) the table is empty and every Fault fails.
//
// Locks
//   - mu_ (the MMU lock; KVM's mmu_lock) guards spt_ writes, state_ writes and released_.
//   - layout_mu_ guards the layout pointer; the layout itself is immutable once published.
//   - InvalidateState's own active_mu_ (KVM's mn_invalidate_lock). Order: active_mu_ ->
//     layout_mu_ (a leaf), active_mu_ -> mu_ (SetLayout zaps the slots that went away
//     before any start can see the new layout); mu_ is never held while taking another
//     lock of this class.
// Threads
//   - Hub callbacks run on invalidating threads; Fault on any thread (it may sleep in the
//     primary); Translate on any thread inside a read section; SetLayout on a control
//     thread, never from a callback.
#ifndef MMUVISOR_MMU_SECONDARY_MMU_H_
#define MMUVISOR_MMU_SECONDARY_MMU_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/inlined_vector.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mmu/fault_hooks.h"
#include "mmu/invalidate_state.h"
#include "mmu/primary.h"
#include "mmu/reader_sections.h"
#include "mmu/shadow_page_table.h"
#include "mmu/types.h"
#include "notifier/base/mutex.h"
#include "notifier/range.h"
#include "notifier/subscription.h"

namespace mmuvisor::mmu {

// One memory slot: guest frames [base_gfn, base_gfn + npages) are backed by the primary
// addresses [address, address + npages * kPageSize).
struct MemorySlot {
  Gfn base_gfn = 0;
  uint64_t npages = 0;
  uint64_t address = 0;  // page aligned
};

struct SecondaryMmuOptions {
  std::string name = "secondary-mmu";
  // A fault that keeps finding itself stale for this long fails with kDeadlineExceeded.
  absl::Duration retry_timeout = absl::Seconds(10);
};

// Counters (relaxed atomics: statistics, exact once quiescent).
struct SecondaryMmuStats {
  uint64_t faults = 0;            // Fault() calls
  uint64_t retries = 0;           // attempts started again
  uint64_t stale_detections = 0;  // checks (lockless or locked) that found a snapshot stale
  uint64_t installs = 0;          // entries installed by faults
  uint64_t timeouts = 0;          // faults that gave up (kDeadlineExceeded)
  uint64_t zapped = 0;            // entries removed by invalidations and layout changes
  // Of those, entries an invalidation removed in a slot whose host addresses another slot
  // of the same invalidation also covers (an alias: KVM walks every slot of an hva).
  uint64_t alias_zapped = 0;
  uint64_t starts = 0;            // hub starts seen (whether or not a slot matched)
  uint64_t ends = 0;              // hub ends seen
  uint64_t bugs = 0;              // InvalidateState errors (unpaired begin/end, ...)
};

class SecondaryMmu : public notifier::Subscription {
 public:
  // `primary` must outlive this object. Register it with hub.Register(*this).
  explicit SecondaryMmu(Primary& primary, SecondaryMmuOptions options = {});
  ~SecondaryMmu() override;

  // Replaces the layout (KVM: a memslot update). kInvalidArgument if slots overlap in
  // gfns, are empty, misaligned or overflow. Waits until no invalidation window is open,
  // then publishes and zaps (with a full begin/end, so in-flight faults retry) every
  // frame whose slot went away or changed. kDeadlineExceeded (layout unchanged) when a
  // window stays open for options.retry_timeout: KVM would wait for ever on a start whose
  // end never comes. REQUIRES: not called from a hub callback.
  absl::Status SetLayout(std::vector<MemorySlot> slots) ABSL_LOCKS_EXCLUDED(mu_, layout_mu_);

  // KVM's page fault: map gfn for `access`, retrying while invalidations race with it.
  // Returns the installed entry. Errors: kNotFound (gfn in no slot, or the primary has
  // nothing there), kPermissionDenied (write to a read-only page), kFailedPrecondition
  // (released), kDeadlineExceeded (still stale after options.retry_timeout), or the
  // primary's error. May sleep. REQUIRES: no lock of this MMU held; not from a callback.
  absl::StatusOr<ShadowEntry> Fault(Gfn gfn, Access access) ABSL_LOCKS_EXCLUDED(mu_);

  // The fast path for device accesses: the host address mapped for gfn, or 0 on a miss
  // (absent, or read-only for a write): then call Fault() and try again. Sets the
  // accessed (and for writes, dirty) bit. Lockless.
  // REQUIRES: a ReadSection of this MMU is open on the calling thread.
  // A hit is valid until an invalidation of gfn starts. An accessor that must not race
  // takes seq = SnapshotSeq() before Translate and discards its access if
  // AccessRetry(seq, gfn) afterwards (a seqlock read; see README).
  // Cost: two dependent loads through the calling thread's directory cache
  // (shadow_page_table.h), one test on the hit path; misses and bit updates go out of line.
  uint64_t Translate(Gfn gfn, Access access) {
    const uint64_t raw = spt_.LookupRaw(gfn);
    const bool write = access == Access::kWrite;
    const uint64_t hit = ShadowEntry::kPresent | ShadowEntry::kAccessed |
                         (write ? ShadowEntry::kWritable | ShadowEntry::kDirty : 0);
    if ((raw & hit) == hit) [[likely]] return raw & ShadowEntry::kAddressMask;
    return TranslateSlow(gfn, raw, write);
  }
  ReaderSections::Section ReadSection() { return ReaderSections::Section(readers_); }
  uint64_t SnapshotSeq() const { return state_.SnapshotSeq(); }
  bool AccessRetry(uint64_t snapshot, Gfn gfn) const {
    return state_.AccessRetry(snapshot, gfn);
  }

  // Locked lookup for tests and diagnostics.
  std::optional<ShadowEntry> Lookup(Gfn gfn) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t mapped_count() const ABSL_LOCKS_EXCLUDED(mu_);
  size_t table_count() const ABSL_LOCKS_EXCLUDED(mu_);
  // Unlinked tables still waiting for open read sections to close.
  size_t retired_table_count() const ABSL_LOCKS_EXCLUDED(mu_);
  int64_t in_progress() const { return state_.in_progress(); }
  int64_t active_invalidations() const { return state_.active_invalidations(); }
  uint64_t seq() const { return state_.seq(); }
  SecondaryMmuStats stats() const;

  // Test-only: see mmu/fault_hooks.h. REQUIRES: no fault running.
  void SetFaultHooksForTesting(FaultHooks hooks);

  // ---- notifier::Subscription ops (called by the hub) ----------------------------------
  void Release(notifier::NotifierSubscriptions& hub) override ABSL_LOCKS_EXCLUDED(mu_);
  bool ClearFlushYoung(uint64_t start, uint64_t end) override ABSL_LOCKS_EXCLUDED(mu_);
  bool ClearYoung(uint64_t start, uint64_t end) override ABSL_LOCKS_EXCLUDED(mu_);
  bool TestYoung(uint64_t address) override ABSL_LOCKS_EXCLUDED(mu_);
  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void InvalidateRangeEnd(const notifier::Range& range) override ABSL_LOCKS_EXCLUDED(mu_);

 protected:
  // SetLayout, right after it zapped the slots that went away, still holding off every
  // start (InvalidateState's active_mu_; mu_ not held). A subclass whose accesses outlive
  // their translation waits for them here, as it does in its start: once a start can see
  // the new layout it finds no slot there and would not wait (vmm/dma/device_mmu.h).
  virtual void AfterLayoutZap() {}

 private:
  using Layout = std::vector<MemorySlot>;
  // Per range of one invalidation: inline, so the invalidate path allocates nothing more.
  using AliasFlags = absl::InlinedVector<bool, 4>;

  std::shared_ptr<const Layout> CurrentLayout() const ABSL_LOCKS_EXCLUDED(layout_mu_);
  // Guest frames of `layout` backed by primary addresses [start, end), one range per slot.
  // `aliased` (may be null) gets, per range, whether an earlier range of the answer covers
  // some of the same primary addresses.
  static std::vector<GfnRange> GfnRangesOf(const Layout& layout, uint64_t start,
                                           uint64_t end, AliasFlags* aliased = nullptr);
  // Translate's rare cases: absent, read-only for a write, or A/D bits to set.
  uint64_t TranslateSlow(Gfn gfn, uint64_t raw, bool write);
  // Frees retired tables if no read section is open.
  void MaybeReclaim() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // SetLayout's zap of the frames whose slot is not in `fresh` as it was in `old`, in a
  // begin/end of its own. Called with InvalidateState's active_mu_ held.
  absl::Status ZapGoneSlots(const Layout& old, const Layout& fresh) ABSL_LOCKS_EXCLUDED(mu_);
  void RecordBug(const absl::Status& status);

  Primary& primary_;
  const SecondaryMmuOptions options_;
  std::unique_ptr<FaultHooks> hooks_;  // test only; null in production

  mutable SharedMutex mu_;
  // Written under mu_; Translate reads it locklessly (see shadow_page_table.h).
  ShadowPageTable spt_;
  InvalidateState state_{&mu_};
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  ReaderSections readers_;

  mutable SharedMutex layout_mu_;  // leaf lock
  std::shared_ptr<const Layout> layout_ ABSL_GUARDED_BY(layout_mu_);

  std::atomic<uint64_t> faults_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> stale_{0};
  std::atomic<uint64_t> installs_{0};
  std::atomic<uint64_t> timeouts_{0};
  std::atomic<uint64_t> zapped_{0};
  std::atomic<uint64_t> alias_zapped_{0};
  std::atomic<uint64_t> starts_{0};
  std::atomic<uint64_t> ends_{0};
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_SECONDARY_MMU_H_
