// SecondaryMmu: the machinery of KVM's fault path and notifier callbacks.
#include "mmu/secondary_mmu.h"

#include <algorithm>
#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::mmu {
namespace {

// Attempts before the fault path starts sleeping between retries instead of yielding.
constexpr int kYieldingRetries = 64;

std::string SlotString(const MemorySlot& slot) {
  return absl::StrCat("slot{gfn=0x", absl::Hex(slot.base_gfn), " npages=", slot.npages,
                      " address=0x", absl::Hex(slot.address), "}");
}

}  // namespace

SecondaryMmu::SecondaryMmu(Primary& primary, SecondaryMmuOptions options)
    : notifier::Subscription(notifier::OpSet::KvmLike(), options.name),
      primary_(primary),
      options_(std::move(options)),
      layout_(std::make_shared<const Layout>()) {}

SecondaryMmu::~SecondaryMmu() = default;

void SecondaryMmu::SetFaultHooksForTesting(FaultHooks hooks) {
  hooks_ = std::make_unique<FaultHooks>(std::move(hooks));
}

std::shared_ptr<const SecondaryMmu::Layout> SecondaryMmu::CurrentLayout() const {
  ReaderMutexLock lock(&layout_mu_);
  return layout_;
}

std::vector<GfnRange> SecondaryMmu::GfnRangesOf(const Layout& layout, uint64_t start,
                                                uint64_t end, AliasFlags* aliased) {
  std::vector<GfnRange> ranges;
  // Each range's host addresses, for `aliased` only.
  absl::InlinedVector<std::pair<uint64_t, uint64_t>, 4> hosts;
  for (const MemorySlot& slot : layout) {
    const uint64_t slot_end = slot.address + slot.npages * kPageSize;
    if (start >= slot_end || end <= slot.address) continue;
    const uint64_t first = std::max(start, slot.address) - slot.address;
    const uint64_t last = std::min(end, slot_end) - slot.address;  // exclusive
    ranges.push_back(GfnRange{slot.base_gfn + first / kPageSize,
                              slot.base_gfn + (last + kPageSize - 1) / kPageSize});
    if (aliased == nullptr) continue;
    const std::pair<uint64_t, uint64_t> host{slot.address + first, slot.address + last};
    bool alias = false;
    for (const auto& h : hosts) alias = alias || (host.first < h.second && h.first < host.second);
    aliased->push_back(alias);
    hosts.push_back(host);
  }
  return ranges;
}

void SecondaryMmu::MaybeReclaim() {
  // Tables were unlinked with seq_cst stores before this point; Quiescent()'s seq_cst
  // loads complete the Dekker pair with Section's increment (reader_sections.h).
  if (spt_.retired_count() != 0 && readers_.Quiescent()) spt_.ReclaimRetired();
}

uint64_t SecondaryMmu::TranslateSlow(Gfn gfn, uint64_t raw, bool write) {
  if ((raw & ShadowEntry::kPresent) == 0) return 0;
  if (write && (raw & ShadowEntry::kWritable) == 0) return 0;
  spt_.MarkAccessed(gfn, raw, write);
  return raw & ShadowEntry::kAddressMask;
}

void SecondaryMmu::RecordBug(const absl::Status& status) {
  // Callbacks cannot return errors. InvalidateState already counted this one in bugs(),
  // which stats() reports and the stress checks assert on (no logging in this path).
  status.IgnoreError();
}

absl::Status SecondaryMmu::SetLayout(std::vector<MemorySlot> slots) {
  std::sort(slots.begin(), slots.end(),
            [](const MemorySlot& a, const MemorySlot& b) { return a.base_gfn < b.base_gfn; });
  for (size_t i = 0; i < slots.size(); ++i) {
    const MemorySlot& slot = slots[i];
    if (slot.npages == 0 || (slot.address & (kPageSize - 1)) != 0 ||
        slot.base_gfn + slot.npages - 1 > kMaxGfn || slot.base_gfn + slot.npages < slot.base_gfn ||
        slot.address + slot.npages * kPageSize < slot.address) {
      return absl::InvalidArgumentError(absl::StrCat(
          "SecondaryMmu::SetLayout ", SlotString(slot),
          ": empty, misaligned or beyond the address space"));
    }
    if (i > 0 && slots[i - 1].base_gfn + slots[i - 1].npages > slot.base_gfn) {
      return absl::InvalidArgumentError(absl::StrCat("SecondaryMmu::SetLayout ",
                                                     SlotString(slots[i - 1]), " overlaps ",
                                                     SlotString(slot)));
    }
  }
  auto fresh = std::make_shared<const Layout>(std::move(slots));
  absl::Status zapped;
  // kvm_swap_active_memslots: wait for open start/end windows, publish with the
  // invalidation lock held so no start can see a half-done update. The frames of slots
  // that went away are zapped under that lock too (KVM zaps a deleted slot before the
  // final swap): once a start can see the new layout it no longer finds the old slot, so
  // it would not zap those frames, and the primary could free their pages while the
  // entries still map them. Order active_mu_ -> mu_: no path takes active_mu_ under mu_.
  const bool published = state_.UpdateLayout(
      [&] {
        std::shared_ptr<const Layout> old;
        {
          MutexLock lock(&layout_mu_);
          old = std::exchange(layout_, fresh);
        }
        zapped = ZapGoneSlots(*old, *fresh);
        AfterLayoutZap();
      },
      options_.retry_timeout);
  if (!published) {
    return absl::DeadlineExceededError(absl::StrCat(
        "SecondaryMmu::SetLayout (", options_.name, "): ", state_.active_invalidations(),
        " invalidation(s) still active after ", absl::FormatDuration(options_.retry_timeout),
        " (a start whose end never came); layout not changed"));
  }
  if (hooks_ != nullptr && hooks_->after_layout_visible) hooks_->after_layout_visible();
  return zapped;
}

absl::Status SecondaryMmu::ZapGoneSlots(const Layout& old, const Layout& fresh) {
  // Frames whose slot went away or changed: zap them inside a begin/end, so a fault that
  // resolved against the old slot fails RetryGfn (seq moved) and retries on the new one.
  // Both layouts are sorted by base_gfn and free of overlaps: one merge pass (this runs
  // with starts held off).
  std::vector<GfnRange> gone;
  auto f = fresh.begin();
  for (const MemorySlot& slot : old) {
    while (f != fresh.end() && f->base_gfn < slot.base_gfn) ++f;
    const bool kept = f != fresh.end() && f->base_gfn == slot.base_gfn &&
                      f->npages == slot.npages && f->address == slot.address;
    if (!kept) gone.push_back(GfnRange{slot.base_gfn, slot.base_gfn + slot.npages});
  }
  if (gone.empty()) return absl::OkStatus();
  MutexLock lock(&mu_);
  state_.Begin(mu_);
  for (const GfnRange& range : gone) {
    RecordBug(state_.RangeAdd(mu_, range));
    zapped_.fetch_add(spt_.ZapRange(range), std::memory_order_relaxed);
  }
  MaybeReclaim();
  return state_.End(mu_);
}

absl::StatusOr<ShadowEntry> SecondaryMmu::Fault(Gfn gfn, Access access) {
  faults_.fetch_add(1, std::memory_order_relaxed);
  const FaultHooks* hooks = hooks_.get();
  const bool checks = hooks == nullptr || hooks->retry_checks;
  absl::Time deadline = absl::InfinitePast();  // set on the first retry
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      retries_.fetch_add(1, std::memory_order_relaxed);
      if (hooks != nullptr && hooks->on_retry) hooks->on_retry(gfn, attempt);
      const absl::Time now = absl::Now();
      if (deadline == absl::InfinitePast()) deadline = now + options_.retry_timeout;
      if (now > deadline) {
        timeouts_.fetch_add(1, std::memory_order_relaxed);
        return absl::DeadlineExceededError(absl::StrCat(
            "SecondaryMmu::Fault gfn=0x", absl::Hex(gfn), " access=", AccessName(access),
            ": still racing an invalidation after ", attempt, " attempts and ",
            absl::FormatDuration(options_.retry_timeout), " (in_progress=",
            state_.in_progress(), " seq=", state_.seq(), ")"));
      }
      // KVM returns RET_PF_RETRY and re-enters the guest; we yield, then back off.
      if (attempt < kYieldingRetries) {
        std::this_thread::yield();
      } else {
        absl::SleepFor(absl::Microseconds(50));
      }
    }

    // 1. Snapshot (kvm_mmu_faultin_pfn: fault->mmu_seq = mmu_invalidate_seq; smp_rmb()).
    const uint64_t snapshot = state_.SnapshotSeq();
    if (hooks != nullptr && hooks->after_snapshot) hooks->after_snapshot(gfn, attempt);

    std::shared_ptr<const Layout> layout = CurrentLayout();
    const MemorySlot* slot = nullptr;
    for (const MemorySlot& s : *layout) {
      if (gfn >= s.base_gfn && gfn < s.base_gfn + s.npages) slot = &s;
    }
    if (slot == nullptr) {
      return absl::NotFoundError(absl::StrCat("SecondaryMmu::Fault gfn=0x", absl::Hex(gfn),
                                              " access=", AccessName(access),
                                              ": no memory slot holds this frame"));
    }
    // 2. Lockless pre-check before touching the primary (mmu_invalidate_retry_gfn_unsafe):
    //    a mapping that is changing now is not worth faulting in.
    if (checks && state_.RetryGfnUnsafe(snapshot, gfn)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }

    // 3. Resolve through the primary without the MMU lock; may sleep.
    const uint64_t address = slot->address + (gfn - slot->base_gfn) * kPageSize;
    absl::StatusOr<PrimaryPage> page = primary_.Resolve(address, access);
    if (!page.ok()) {
      if (absl::IsUnavailable(page.status())) continue;  // transient: retry, counted
      return absl::Status(page.status().code(),
                          absl::StrCat("SecondaryMmu::Fault gfn=0x", absl::Hex(gfn),
                                       " access=", AccessName(access), " address=0x",
                                       absl::Hex(address), ": ", page.status().message()));
    }
    if (access == Access::kWrite && !page->writable) {
      return absl::PermissionDeniedError(absl::StrCat(
          "SecondaryMmu::Fault gfn=0x", absl::Hex(gfn), " access=write address=0x",
          absl::Hex(address), ": the primary returned a read-only page"));
    }
    if (hooks != nullptr && hooks->after_resolve) hooks->after_resolve(gfn, attempt);
    // Re-check after the (possibly long) resolve, still lockless.
    if (checks && state_.RetryGfnUnsafe(snapshot, gfn)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (hooks != nullptr && hooks->before_install) hooks->before_install(gfn, attempt);

    // 4. Take the MMU lock; is_page_fault_stale() -> retry, else install.
    MutexLock lock(&mu_);
    if (released_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "SecondaryMmu::Fault gfn=0x", absl::Hex(gfn), ": the address space was released"));
    }
    if (checks && state_.RetryGfn(mu_, snapshot, gfn)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      continue;  // unlocks
    }
    const ShadowEntry entry{page->host_address, page->writable, /*accessed=*/true,
                            /*dirty=*/access == Access::kWrite};
    absl::Status mapped = spt_.Map(gfn, entry);
    if (!mapped.ok()) return mapped;
    installs_.fetch_add(1, std::memory_order_relaxed);
    MaybeReclaim();
    return entry;
  }
}

notifier::StartResult SecondaryMmu::InvalidateRangeStart(const notifier::Range& range) {
  starts_.fetch_add(1, std::memory_order_relaxed);
  // Unconditionally, first: pairs with ActiveInvalidationEnd() in InvalidateRangeEnd and
  // keeps SetLayout from changing the slots between our start and end.
  state_.ActiveInvalidationBegin();
  AliasFlags aliased;
  const std::vector<GfnRange> ranges =
      GfnRangesOf(*CurrentLayout(), range.start, range.end, &aliased);
  if (ranges.empty()) return notifier::StartResult::kOk;  // no slot: no begin, no end
  // KVM never fails a start, even a non-blockable one: mu_ is only ever held briefly.
  MutexLock lock(&mu_);
  state_.Begin(mu_);
  for (size_t i = 0; i < ranges.size(); ++i) {
    RecordBug(state_.RangeAdd(mu_, ranges[i]));
    const uint64_t zapped = spt_.ZapRange(ranges[i]);
    zapped_.fetch_add(zapped, std::memory_order_relaxed);
    if (aliased[i]) alias_zapped_.fetch_add(zapped, std::memory_order_relaxed);
  }
  MaybeReclaim();
  return notifier::StartResult::kOk;
}

void SecondaryMmu::InvalidateRangeEnd(const notifier::Range& range) {
  ends_.fetch_add(1, std::memory_order_relaxed);
  // Same layout as the start saw (UpdateLayout waits for the active count).
  if (!GfnRangesOf(*CurrentLayout(), range.start, range.end).empty()) {
    MutexLock lock(&mu_);
    RecordBug(state_.End(mu_));
  }
  RecordBug(state_.ActiveInvalidationEnd());
}

bool SecondaryMmu::ClearFlushYoung(uint64_t start, uint64_t end) {
  // Our "TLB" is the table itself: clearing the bit is the flush.
  return ClearYoung(start, end);
}

bool SecondaryMmu::ClearYoung(uint64_t start, uint64_t end) {
  bool young = false;
  const std::vector<GfnRange> ranges = GfnRangesOf(*CurrentLayout(), start, end);
  MutexLock lock(&mu_);
  for (const GfnRange& gfns : ranges) young |= spt_.ClearYoung(gfns);
  return young;
}

bool SecondaryMmu::TestYoung(uint64_t address) {
  const std::vector<GfnRange> ranges = GfnRangesOf(*CurrentLayout(), address, address + 1);
  ReaderMutexLock lock(&mu_);
  for (const GfnRange& gfns : ranges) {
    if (spt_.TestYoung(gfns)) return true;
  }
  return false;
}

void SecondaryMmu::Release(notifier::NotifierSubscriptions& /*hub*/) {
  // kvm_mmu_notifier_release -> kvm_flush_shadow_all: drop everything, map nothing again.
  // Bracketed by a begin/end of its own: the seq bump tells lockless accessors that
  // validate with AccessRetry() that whatever they read may already be gone.
  MutexLock lock(&mu_);
  released_ = true;
  state_.Begin(mu_);
  RecordBug(state_.RangeAdd(mu_, {0, kMaxGfn + 1}));
  zapped_.fetch_add(spt_.ZapRange({0, kMaxGfn + 1}), std::memory_order_relaxed);
  MaybeReclaim();
  RecordBug(state_.End(mu_));
}

std::optional<ShadowEntry> SecondaryMmu::Lookup(Gfn gfn) const {
  ReaderMutexLock lock(&mu_);
  return spt_.Lookup(gfn);
}

uint64_t SecondaryMmu::mapped_count() const {
  ReaderMutexLock lock(&mu_);
  return spt_.mapped_count();
}

size_t SecondaryMmu::table_count() const {
  ReaderMutexLock lock(&mu_);
  return spt_.table_count();
}

size_t SecondaryMmu::retired_table_count() const {
  ReaderMutexLock lock(&mu_);
  return spt_.retired_count();
}

SecondaryMmuStats SecondaryMmu::stats() const {
  // relaxed: statistics.
  return SecondaryMmuStats{faults_.load(std::memory_order_relaxed),
                           retries_.load(std::memory_order_relaxed),
                           stale_.load(std::memory_order_relaxed),
                           installs_.load(std::memory_order_relaxed),
                           timeouts_.load(std::memory_order_relaxed),
                           zapped_.load(std::memory_order_relaxed),
                           alias_zapped_.load(std::memory_order_relaxed),
                           starts_.load(std::memory_order_relaxed),
                           ends_.load(std::memory_order_relaxed),
                           state_.bugs()};
}

}  // namespace mmuvisor::mmu
