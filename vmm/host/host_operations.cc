// HostAddressSpace: the operations that change what backs guest RAM, each one window
// (pages locked -> hub start -> change -> hub end). See host_address_space.h.
#include <sys/mman.h>

#include <algorithm>
#include <cerrno>
#include <optional>
#include <utility>

#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/host_address_space_internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace mmuvisor::vmm {
namespace {

using notifier::Event;

// Pages copied per pread when saving memfd RAM (128 KiB of staging).
constexpr uint64_t kStagedPages = 32;

// Calls fn(first, count) for each maximal run of pages i in [0, n) with pred(i) true.
template <typename Pred, typename Fn>
absl::Status ForEachRun(uint64_t n, Pred pred, Fn fn) {
  uint64_t i = 0;
  while (i < n) {
    if (!pred(i)) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < n && pred(j)) ++j;
    MMUVISOR_RETURN_IF_ERROR(fn(i, j - i));
    i = j;
  }
  return absl::OkStatus();
}

absl::Status TornDownError(const char* op) {
  return absl::FailedPreconditionError(
      absl::StrFormat("HostAddressSpace::%s: the address space was torn down", op));
}

}  // namespace

absl::Status HostAddressSpace::CheckRange(PageRange range) const {
  if (range.count == 0 || range.first >= num_pages_ || range.count > num_pages_ - range.first) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "HostAddressSpace: pages [%d, %d) are not a non-empty range of [0, %d)", range.first,
        range.first + range.count, num_pages_));
  }
  return absl::OkStatus();
}

notifier::Range HostAddressSpace::HubRange(PageRange range, Event event,
                                           bool blockable) const {
  return notifier::Range{AddressOf(range.first), AddressOf(range.end()), event, blockable,
                         this};
}

absl::Status HostAddressSpace::MapProtection(PageRange range, int prot) const {
  if (mprotect(PagePointer(range.first), range.count * kPageSize, prot) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("mprotect pages [%d, %d) prot %d",
                                                      range.first, range.end(), prot));
  }
  return absl::OkStatus();
}

absl::Status HostAddressSpace::RestoreProtection(PageRange range) const {
  auto prot_of = [&](uint64_t i) {
    return user_prot_[range.first + i].load(std::memory_order_relaxed);
  };
  uint64_t i = 0;
  while (i < range.count) {
    const uint8_t prot = prot_of(i);
    uint64_t j = i;
    while (j < range.count && prot_of(j) == prot) ++j;
    if (absl::Status s = MapProtection(PageRange{range.first + i, j - i},
                                       ProtFlags(static_cast<PageProtection>(prot)));
        !s.ok()) {
      return s;
    }
    i = j;
  }
  return absl::OkStatus();
}

bool HostAddressSpace::DrainDeviceAccesses(bool blockable) {
  if (!blockable) {
    // The OOM path must not sleep: refuse (the caller ends the window, retries later).
    if (!device_gate_.TryLock()) {
      drain_refusals_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    device_gate_.Unlock();
    return true;
  }
  // Lock/unlock pairs with the ReaderUnlock of every access that began before: their
  // copies happen before whatever this window does next.
  device_gate_.Lock();
  device_gate_.Unlock();
  return true;
}

void HostAddressSpace::RunHook(WindowPoint point, const notifier::Range& range) const {
  if (options_.window_hook) options_.window_hook(point, range);
}

absl::StatusOr<ReclaimResult> HostAddressSpace::SaveAndDiscardLocked(PageRange range,
                                                                     Event event,
                                                                     bool blockable,
                                                                     bool refault) {
  if (torn_down()) return TornDownError(notifier::EventName(event));
  const notifier::Range hub_range = HubRange(range, event, blockable);
  // A failed (non-blockable) start: every subscription that needed an end got it; the
  // range must stay untouched and end must not be called.
  MMUVISOR_RETURN_IF_ERROR(hub_->InvalidateRangeStart(hub_range));
  RunHook(WindowPoint::kAfterStart, hub_range);
  if (!DrainDeviceAccesses(blockable)) {
    hub_->InvalidateRangeEnd(hub_range);  // nothing changed
    return absl::UnavailableError(absl::StrFormat(
        "%s: a device access is in flight (non-blockable, try again)", hub_range.ToString()));
  }

  ReclaimResult result;
  // memfd RAM under write protection: discard = drop mappings + punch (see below);
  // anonymous RAM has no copy outside its mapping, so it keeps protect -> save -> discard.
  const bool split_discard = options_.write_protect_windows &&
                             ram_->backing() == MemoryBacking::kMemfd;
  auto body = [&]() -> absl::Status {
    // Read-only first: from here no guest store can land between the copy and the
    // discard (a vCPU gets EFAULT and waits for this window; see ClassifyGuestFault).
    // memfd RAM drops the page-table entries before (the contents stay in the memfd; a
    // store in between lands there and is in the dirty log harvested below): then the
    // read-only step and the hole punched at the end find no entries to rewrite, and the
    // window costs one page-table pass, as a bare discard does (README, "Cost").
    if (options_.write_protect_windows) {
      if (split_discard) {
        MMUVISOR_RETURN_IF_ERROR(ram_->DropMappings(range.first, range.count));
      }
      MMUVISOR_RETURN_IF_ERROR(MapProtection(range, PROT_READ));
    }
    // Harvest after write-protecting, so every write before it is in the log.
    bool trust_clean = dirty_choice_.mode == DirtyTrackingMode::kDirtyLog;
    if (trust_clean && !HarvestDirtyLog().ok()) trust_clean = false;
    if (page_server_ == nullptr) {
      return absl::FailedPreconditionError("host window: the page server is not started");
    }
    absl::StatusOr<std::vector<uint8_t>> resident =
        page_server_->Residency(range.first, range.count);
    if (!resident.ok()) return resident.status();
    std::vector<uint8_t> drop(range.count, 0);
    std::vector<uint8_t> save(range.count, 0);
    for (uint64_t i = 0; i < range.count; ++i) {
      if ((*resident)[i] == 0) {
        ++result.not_resident;
      } else if (trust_clean && store_->IsSavedClean(range.first + i)) {
        ++result.skipped_clean;
        drop[i] = 1;
      } else {
        save[i] = 1;
      }
    }
    // memfd RAM is copied with pread, in runs: mapping each page again (read-only) only
    // to copy it would cost a page-table update per page and another zap at the punch.
    std::vector<uint8_t> staged;
    absl::Status saved = ForEachRun(
        range.count, [&](uint64_t i) { return save[i] != 0; },
        [&](uint64_t i, uint64_t n) -> absl::Status {
          for (uint64_t chunk = 0; chunk < n; chunk += kStagedPages) {
            const uint64_t first = i + chunk;
            const uint64_t pages = std::min(kStagedPages, n - chunk);
            if (split_discard) {
              staged.resize(pages * kPageSize);
              if (absl::Status s = ram_->ReadPages(range.first + first, pages, staged.data());
                  !s.ok()) {
                return s;
              }
            }
            for (uint64_t k = 0; k < pages; ++k) {
              const uint64_t page = range.first + first + k;
              const uint8_t* data =
                  split_discard ? staged.data() + k * kPageSize : PagePointer(page);
              if (absl::Status s = store_->Save(page, data); s.ok()) {
                ++result.written_back;
                drop[first + k] = 1;
              } else {
                // The page stays resident: nothing is lost, the window still ends.
                ++result.save_failures;
                if (result.first_save_error.ok()) result.first_save_error = s;
              }
            }
          }
          return absl::OkStatus();
        });
    if (!saved.ok()) return saved;
    absl::Status discarded = ForEachRun(
        range.count, [&](uint64_t i) { return drop[i] != 0; },
        [&](uint64_t i, uint64_t n) {
          // The punch zaps whatever a reader mapped again (read-only) in the window.
          absl::Status s = split_discard ? ram_->PunchHole(range.first + i, n)
                                         : ram_->Discard(range.first + i, n);
          if (s.ok()) result.reclaimed += n;
          return s;
        });
    if (!discarded.ok() || !refault) return discarded;
    // Migrate: bring the moved pages back now, into new backing pages, from the copies
    // just checked into the store (the page server's UFFDIO_COPY). Read faults are
    // allowed in the read-only window; concurrent readers get the same copy.
    return ForEachRun(
        range.count, [&](uint64_t i) { return drop[i] != 0; },
        [&](uint64_t i, uint64_t n) -> absl::Status {
          if (madvise(PagePointer(range.first + i), n * kPageSize, MADV_POPULATE_READ) != 0) {
            return ErrnoToStatus(
                errno, absl::StrFormat("migrate: MADV_POPULATE_READ pages [%d, %d)",
                                       range.first + i, range.first + i + n));
          }
          return absl::OkStatus();
        });
  };
  const absl::Status status = body();
  RunHook(WindowPoint::kBeforeEnd, hub_range);
  const absl::Status restored =
      options_.write_protect_windows ? RestoreProtection(range) : absl::OkStatus();
  hub_->InvalidateRangeEnd(hub_range);
  if (!status.ok()) return status;
  if (!restored.ok()) return restored;
  return result;
}

absl::StatusOr<ReclaimResult> HostAddressSpace::Reclaim(PageRange range) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(range));
  ScopedPageRange held(windows_, range);
  absl::StatusOr<ReclaimResult> r =
      SaveAndDiscardLocked(range, Event::kClear, /*blockable=*/true, /*refault=*/false);
  if (!r.ok()) return r;
  Counters& c = *counters_;
  Counters::Add(c.reclaims, 1);
  Counters::Add(c.reclaimed_pages, r->reclaimed);
  Counters::Add(c.written_back, r->written_back);
  Counters::Add(c.skipped_clean, r->skipped_clean);
  Counters::Add(c.skipped_not_resident, r->not_resident);
  Counters::Add(c.save_failures, r->save_failures);
  return r;
}

absl::StatusOr<ReclaimResult> HostAddressSpace::Migrate(PageRange range) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(range));
  ScopedPageRange held(windows_, range);
  absl::StatusOr<ReclaimResult> r =
      SaveAndDiscardLocked(range, Event::kMigrate, /*blockable=*/true, /*refault=*/true);
  if (!r.ok()) return r;
  Counters::Add(counters_->migrates, 1);
  Counters::Add(counters_->migrated_pages, r->reclaimed);
  Counters::Add(counters_->migrate_failures, r->save_failures);
  Counters::Add(counters_->written_back, r->written_back);
  return r;
}

absl::Status HostAddressSpace::Discard(PageRange range) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(range));
  ScopedPageRange held(windows_, range);
  if (torn_down()) return TornDownError("Discard");
  const notifier::Range hub_range = HubRange(range, Event::kClear, /*blockable=*/true);
  MMUVISOR_RETURN_IF_ERROR(hub_->InvalidateRangeStart(hub_range));
  RunHook(WindowPoint::kAfterStart, hub_range);
  DrainDeviceAccesses(/*blockable=*/true);
  // Store first: once the copies are gone no fault can bring old data back, so after the
  // discard every access reads zeros.
  absl::Status status = store_->Drop(range.first, range.count);
  if (status.ok()) status = ram_->Discard(range.first, range.count);
  RunHook(WindowPoint::kBeforeEnd, hub_range);
  hub_->InvalidateRangeEnd(hub_range);
  if (status.ok()) {
    Counters::Add(counters_->discards, 1);
    Counters::Add(counters_->discarded_pages, range.count);
  }
  return status;
}

absl::Status HostAddressSpace::Protect(PageRange range, PageProtection prot) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(range));
  ScopedPageRange held(windows_, range);
  if (torn_down()) return TornDownError("Protect");
  const notifier::Range hub_range =
      HubRange(range, Event::kProtectionVma, /*blockable=*/true);
  MMUVISOR_RETURN_IF_ERROR(hub_->InvalidateRangeStart(hub_range));
  RunHook(WindowPoint::kAfterStart, hub_range);
  DrainDeviceAccesses(/*blockable=*/true);
  absl::Status status = MapProtection(range, ProtFlags(prot));
  if (status.ok()) {
    for (uint64_t p = range.first; p < range.end(); ++p) {
      user_prot_[p].store(static_cast<uint8_t>(prot), std::memory_order_relaxed);
    }
  }
  RunHook(WindowPoint::kBeforeEnd, hub_range);
  hub_->InvalidateRangeEnd(hub_range);
  if (status.ok()) Counters::Add(counters_->protects, 1);
  return status;
}

absl::Status HostAddressSpace::Unmap(uint32_t slot_id) {
  // KVM's rule: a memslot change waits until no invalidation window is open, and no new
  // one opens until the new memslots are published.
  windows_.LockAll();
  struct Unlock {
    PageRangeLock* lock;
    ~Unlock() {
      if (lock != nullptr) lock->UnlockAll();
    }
  } unlock{&windows_};
  if (torn_down()) return TornDownError("Unmap");
  std::shared_ptr<const MemslotTable> table = memslots();
  const auto& slots = table->slots();
  auto it = std::find_if(slots.begin(), slots.end(),
                         [&](const GuestMemorySlot& s) { return s.slot == slot_id; });
  if (it == slots.end()) {
    return absl::NotFoundError(absl::StrFormat("HostAddressSpace::Unmap: no memslot %d", slot_id));
  }
  const GuestMemorySlot victim = *it;
  const PageRange range{(victim.hva.value - base_) / kPageSize, victim.size.value / kPageSize};
  const notifier::Range hub_range = HubRange(range, Event::kUnmap, /*blockable=*/true);
  MMUVISOR_RETURN_IF_ERROR(hub_->InvalidateRangeStart(hub_range));
  RunHook(WindowPoint::kAfterStart, hub_range);
  absl::Status status = options_.memslot_control != nullptr
                            ? options_.memslot_control->DeleteSlot(victim)
                            : absl::OkStatus();
  std::shared_ptr<const MemslotTable> published;
  if (status.ok()) {
    std::vector<GuestMemorySlot> rest;
    for (const GuestMemorySlot& s : slots) {
      if (s.slot != slot_id) rest.push_back(s);
    }
    absl::StatusOr<MemslotTable> next = MemslotTable::Create(std::move(rest));
    if (next.ok()) {
      published = std::make_shared<const MemslotTable>(*std::move(next));
      MutexLock lock(&mu_);
      memslots_ = published;
    } else {
      status = next.status();
    }
  }
  RunHook(WindowPoint::kBeforeEnd, hub_range);
  hub_->InvalidateRangeEnd(hub_range);
  if (!status.ok()) return status;
  Counters::Add(counters_->unmaps, 1);
  std::vector<MemslotObserver> observers;
  {
    MutexLock lock(&mu_);
    for (const auto& o : observers_) observers.push_back(o.second);
  }
  windows_.UnlockAll();
  unlock.lock = nullptr;
  for (const MemslotObserver& o : observers) o(*published);
  return absl::OkStatus();
}

absl::StatusOr<OomReapResult> HostAddressSpace::OomReap(PageRange range) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(range));
  OomReapResult out;
  Counters::Add(counters_->oom_reaps, 1);
  absl::Duration backoff = options_.oom.initial_backoff;
  const int attempts = std::max(1, options_.oom.max_attempts);
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    out.attempts = attempt;
    // The reaper never waits for a busy range (Linux: mmap_read_trylock).
    if (windows_.TryLock(range)) {
      ScopedPageRange held(windows_, range, /*adopt=*/true);
      absl::StatusOr<ReclaimResult> r =
          SaveAndDiscardLocked(range, Event::kClear, /*blockable=*/false, /*refault=*/false);
      if (r.ok()) {
        out.reaped = true;
        out.reclaim = *r;
        Counters::Add(counters_->reclaimed_pages, r->reclaimed);
        Counters::Add(counters_->written_back, r->written_back);
        Counters::Add(counters_->skipped_clean, r->skipped_clean);
        Counters::Add(counters_->save_failures, r->save_failures);
        return out;
      }
      if (!absl::IsUnavailable(r.status())) return r.status();
    }
    ++out.eagain_retries;
    Counters::Add(counters_->oom_eagain_retries, 1);
    if (attempt < attempts) {
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, options_.oom.max_backoff);
    }
  }
  Counters::Add(counters_->oom_skipped, 1);
  return out;
}

}  // namespace mmuvisor::vmm
