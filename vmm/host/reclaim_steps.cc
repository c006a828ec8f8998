// The steps of a reclaim window (reclaim_steps.h).
#include "vmm/host/reclaim_steps.h"

#include <sys/mman.h>

#include <algorithm>
#include <cerrno>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif

namespace mmuvisor::vmm {
namespace {

// Pages copied per pread when saving memfd RAM (128 KiB of staging).
constexpr uint64_t kStagedPages = 32;

// Calls fn(first, count) for each maximal run of pages i in [0, mask.size()) with mask[i].
template <typename Fn>
absl::Status ForEachRun(const PageMask& mask, Fn fn) {
  const uint64_t n = mask.size();
  uint64_t i = 0;
  while (i < n) {
    if (mask[i] == 0) {
      ++i;
      continue;
    }
    uint64_t j = i;
    while (j < n && mask[j] != 0) ++j;
    MMUVISOR_RETURN_IF_ERROR(fn(i, j - i));
    i = j;
  }
  return absl::OkStatus();
}

// memfd RAM under write protection discards by dropping the mappings first and punching
// a hole last; anonymous RAM has no copy outside its mapping, so it keeps protect -> save
// (from the mapping) -> MADV_DONTNEED.
bool SplitDiscard(const HostWindow& window) {
  return window.write_protect() && window.ram().backing() == MemoryBacking::kMemfd;
}

// Read-only first: from here no guest store can land between the copy and the discard (a
// vCPU gets EFAULT and waits for this window). memfd RAM drops the page-table entries
// before (the contents stay in the memfd; a store in between lands there and is in the
// dirty log harvested next): then the read-only step and the hole punched at the end find
// no entries to rewrite, and the window costs one page-table pass, as a bare discard does
// (README, "Cost").
absl::Status WriteProtect(HostWindow& window) {
  if (!window.write_protect()) return absl::OkStatus();
  if (SplitDiscard(window)) {
    MMUVISOR_RETURN_IF_ERROR(window.ram().DropMappings(window.range().first,
                                                       window.range().count));
  }
  return window.MapReadOnly();
}

// After write-protecting, so every write before it is in the log. Returns whether the
// store's saved-and-clean bits may be trusted (a verified dirty log, fetched now).
bool Harvest(HostWindow& window) {
  HostAddressSpace& space = window.space();
  if (space.dirty_tracking().mode != DirtyTrackingMode::kDirtyLog) return false;
  return space.HarvestDirtyLog().ok();
}

// Which pages to save and which to discard without a write (saved-and-clean).
struct ReclaimPlan {
  PageMask save;
  PageMask drop;  // grows with every good save
};

absl::StatusOr<ReclaimPlan> SortPages(HostWindow& window, bool trust_clean,
                                      ReclaimResult& result) {
  const PageRange range = window.range();
  if (window.page_server() == nullptr) {
    return absl::FailedPreconditionError("host window: the page server is not started");
  }
  MMUVISOR_ASSIGN_OR_RETURN(std::vector<uint8_t> resident,
                            window.page_server()->Residency(range.first, range.count));
  ReclaimPlan plan{PageMask(range.count, 0), PageMask(range.count, 0)};
  for (uint64_t i = 0; i < range.count; ++i) {
    if (resident[i] == 0) {
      ++result.not_resident;
    } else if (trust_clean && window.store().IsSavedClean(range.first + i)) {
      ++result.skipped_clean;
      plan.drop[i] = 1;
    } else {
      plan.save[i] = 1;
    }
  }
  return plan;
}

// Saves pages [first, first + pages) of the window (window indices) from `data`, one
// page after the other. A failed save leaves the page resident: nothing is lost.
void SaveRun(HostWindow& window, uint64_t first, uint64_t pages, const uint8_t* data,
             ReclaimPlan& plan, ReclaimResult& result) {
  for (uint64_t k = 0; k < pages; ++k) {
    const uint64_t page = window.range().first + first + k;
    if (absl::Status s = window.store().Save(page, data + k * kPageSize); s.ok()) {
      ++result.written_back;
      plan.drop[first + k] = 1;
    } else {
      ++result.save_failures;
      if (result.first_save_error.ok()) result.first_save_error = s;
    }
  }
}

// memfd RAM is copied with pread, in runs of kStagedPages: mapping each page again
// (read-only) only to copy it would cost a page-table update per page and another zap at
// the punch. Anonymous RAM is copied from its (read-only) mapping.
absl::Status SavePages(HostWindow& window, ReclaimPlan& plan, ReclaimResult& result) {
  const bool staged_copy = SplitDiscard(window);
  std::vector<uint8_t> staged;
  return ForEachRun(plan.save, [&](uint64_t i, uint64_t n) -> absl::Status {
    for (uint64_t chunk = 0; chunk < n; chunk += kStagedPages) {
      const uint64_t first = i + chunk;
      const uint64_t pages = std::min(kStagedPages, n - chunk);
      const uint64_t page = window.range().first + first;
      const uint8_t* data = window.space().PagePointer(page);
      if (staged_copy) {
        staged.resize(pages * kPageSize);
        MMUVISOR_RETURN_IF_ERROR(window.ram().ReadPages(page, pages, staged.data()));
        data = staged.data();
      }
      SaveRun(window, first, pages, data, plan, result);
    }
    return absl::OkStatus();
  });
}

// Every page with a good copy in the store goes. The punch (memfd) zaps whatever a reader
// mapped again, read-only, in the window.
absl::Status DiscardSaved(HostWindow& window, const ReclaimPlan& plan, ReclaimResult& result) {
  const bool punch = SplitDiscard(window);
  return ForEachRun(plan.drop, [&](uint64_t i, uint64_t n) {
    const uint64_t first = window.range().first + i;
    absl::Status s = punch ? window.ram().PunchHole(first, n) : window.ram().Discard(first, n);
    if (s.ok()) result.reclaimed += n;
    return s;
  });
}

}  // namespace

absl::StatusOr<ReclaimResult> SaveAndDiscard(HostWindow& window, PageMask* discarded) {
  ReclaimResult result;
  MMUVISOR_RETURN_IF_ERROR(WriteProtect(window));
  const bool trust_clean = Harvest(window);
  MMUVISOR_ASSIGN_OR_RETURN(ReclaimPlan plan, SortPages(window, trust_clean, result));
  MMUVISOR_RETURN_IF_ERROR(SavePages(window, plan, result));
  MMUVISOR_RETURN_IF_ERROR(DiscardSaved(window, plan, result));
  if (discarded != nullptr) *discarded = std::move(plan.drop);
  return result;
}

absl::Status FaultBack(HostWindow& window, const PageMask& discarded) {
  return ForEachRun(discarded, [&](uint64_t i, uint64_t n) -> absl::Status {
    const uint64_t first = window.range().first + i;
    if (madvise(window.space().PagePointer(first), n * kPageSize, MADV_POPULATE_READ) != 0) {
      const int err = errno;  // before the message allocates
      return ErrnoToStatus(err, absl::StrFormat("migrate: MADV_POPULATE_READ pages [%d, %d)",
                                                  first, first + n));
    }
    return absl::OkStatus();
  });
}

}  // namespace mmuvisor::vmm
