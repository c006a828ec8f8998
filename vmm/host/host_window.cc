// HostWindow and AllPagesHeld: opening and closing the invalidation windows of a
// HostAddressSpace (host_window.h).
#include "vmm/host/host_window.h"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"

namespace mmuvisor::vmm {
namespace {

notifier::Range HubRange(const HostAddressSpace& space, PageRange range,
                         notifier::Event event, bool blockable) {
  return notifier::Range{space.AddressOf(range.first), space.AddressOf(range.end()), event,
                         blockable, &space};
}

absl::Status MapProtection(HostAddressSpace& space, PageRange range, int prot) {
  const int failed = mprotect(space.PagePointer(range.first), range.count * kPageSize, prot);
  const int err = errno;  // before the message allocates
  // Even after a failure (a prefix may have changed): a page the page server poisoned stays
  // PROT_NONE whatever the owner's protection (vmm/paging/README.md, "Failure policy").
  if (prot != PROT_NONE && space.page_server() != nullptr) {
    space.page_server()->KeepPoisoned(range.first, range.count);
  }
  if (failed != 0) {
    return ErrnoToStatus(err, absl::StrFormat("mprotect pages [%d, %d) prot %d",
                                                range.first, range.end(), prot));
  }
  return absl::OkStatus();
}

// Back to the owner's protection for every page of the range, one mprotect per run of
// pages with the same protection. A run that fails does not stop the others: the first
// error is returned once every run was tried.
absl::Status RestoreProtection(HostAddressSpace& space, PageRange range) {
  absl::Status first_error;
  uint64_t p = range.first;
  while (p < range.end()) {
    const PageProtection prot = space.protection(p);
    uint64_t q = p;
    while (q < range.end() && space.protection(q) == prot) ++q;
    first_error.Update(MapProtection(space, PageRange{p, q - p}, ProtFlags(prot)));
    p = q;
  }
  return first_error;
}

// Unlocks a range of a PageRangeLock on scope exit unless released.
class PagesHeld {
 public:
  PagesHeld(PageRangeLock& lock, PageRange range) : lock_(&lock), range_(range) {}
  ~PagesHeld() {
    if (lock_ != nullptr) lock_->Unlock(range_);
  }
  PagesHeld(const PagesHeld&) = delete;
  PagesHeld& operator=(const PagesHeld&) = delete;
  void Release() { lock_ = nullptr; }

 private:
  PageRangeLock* lock_;
  PageRange range_;
};

}  // namespace

absl::Status HostWindow::CheckRange(const HostAddressSpace& space, PageRange range) {
  const uint64_t n = space.num_pages();
  if (range.count == 0 || range.first >= n || range.count > n - range.first) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "HostAddressSpace: pages [%d, %d) are not a non-empty range of [0, %d)", range.first,
        range.first + range.count, n));
  }
  return absl::OkStatus();
}

AllPagesHeld::AllPagesHeld(HostAddressSpace& space) : space_(&space) {
  space.windows_.LockAll();
}

void AllPagesHeld::Release() {
  if (std::exchange(held_, false)) space_->windows_.UnlockAll();
}

absl::StatusOr<GuestMemorySlot> AllPagesHeld::SlotOf(const RamSlot& slot) const {
  const uint64_t pages = space_->num_pages();
  if (slot.num_pages == 0 || slot.first_page > pages || slot.num_pages > pages - slot.first_page) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "memslot %d: pages [%d, %d) outside guest RAM [0, %d)", slot.slot, slot.first_page,
        slot.first_page + slot.num_pages, pages));
  }
  uint32_t flags = slot.flags;
  if (space_->options_.dirty_log != nullptr) flags |= KVM_MEM_LOG_DIRTY_PAGES;
  return GuestMemorySlot{slot.slot, slot.gpa, ByteSize{slot.num_pages * kPageSize},
                         Hva{space_->AddressOf(slot.first_page)}, flags};
}

absl::Status AllPagesHeld::ChangeMemslots(
    const GuestMemorySlot* dropped,
    absl::FunctionRef<absl::Status(MemslotControl*)> change, MemslotTable next) {
  HostAddressSpace& space = *space_;
  auto published = std::make_shared<const MemslotTable>(std::move(next));
  std::vector<HostAddressSpace::MemslotObserver> observers;
  {
    MutexLock harvest(&space.harvest_mu_);
    MMUVISOR_RETURN_IF_ERROR(change(space.options_.memslot_control));
    if (dropped != nullptr && (dropped->flags & KVM_MEM_LOG_DIRTY_PAGES) != 0 &&
        space.store_ != nullptr) {
      const uint64_t first = (dropped->hva.value - space.AddressOf(0)) / kPageSize;
      const uint64_t count = dropped->size.value / kPageSize;
      space.store_->MarkDirty(first, count);
      for (uint64_t p = first; p < first + count; ++p) {
        space.logged_write(p).store(1, std::memory_order_relaxed);
      }
    }
    MutexLock lock(&space.mu_);
    space.memslots_ = published;
    for (const auto& o : space.observers_) observers.push_back(o.second);
  }
  absl::Status first;
  for (const HostAddressSpace::MemslotObserver& o : observers) first.Update(o(*published));
  return first;
}

void HostWindow::RunHook(const HostAddressSpace& space, WindowPoint point,
                         const notifier::Range& range) {
  if (space.options_.window_hook) space.options_.window_hook(point, range);
}

absl::StatusOr<HostWindow> HostWindow::Open(HostAddressSpace& space, PageRange range,
                                            notifier::Event event, WindowMode mode,
                                            const char* op) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(space, range));
  const bool blockable = mode == WindowMode::kBlockable;
  if (blockable) {
    space.windows_.Lock(range);
  } else if (!space.windows_.TryLock(range)) {  // Linux: mmap_read_trylock
    return absl::UnavailableError(absl::StrFormat(
        "HostAddressSpace::%s: pages [%d, %d) are in another window (non-blockable)", op,
        range.first, range.end()));
  }
  PagesHeld pages(space.windows_, range);
  if (space.torn_down()) {
    return absl::FailedPreconditionError(
        absl::StrFormat("HostAddressSpace::%s: the address space was torn down", op));
  }
  const notifier::Range hub_range = HubRange(space, range, event, blockable);
  // A failed (non-blockable) start: every subscription that needed an end got it; the
  // range must stay untouched and no end may be called.
  MMUVISOR_ASSIGN_OR_RETURN(notifier::InvalidationGuard guard,
                            notifier::InvalidationGuard::Start(*space.hub_, hub_range));
  RunHook(space, WindowPoint::kAfterStart, hub_range);
  pages.Release();
  return HostWindow(space, range, /*owns_pages=*/true, std::move(guard));
}

absl::StatusOr<HostWindow> HostWindow::OpenHeld(AllPagesHeld& held, PageRange range,
                                                notifier::Event event) {
  HostAddressSpace& space = held.space();
  const notifier::Range hub_range = HubRange(space, range, event, /*blockable=*/true);
  MMUVISOR_ASSIGN_OR_RETURN(notifier::InvalidationGuard guard,
                            notifier::InvalidationGuard::Start(*space.hub_, hub_range));
  RunHook(space, WindowPoint::kAfterStart, hub_range);
  return HostWindow(space, range, /*owns_pages=*/false, std::move(guard));
}

HostWindow::HostWindow(HostWindow&& other) noexcept
    : space_(other.space_),
      range_(other.range_),
      owns_pages_(other.owns_pages_),
      restore_protection_(other.restore_protection_),
      guard_(std::exchange(other.guard_, std::nullopt)) {}

absl::Status HostWindow::Close() {
  if (!guard_.has_value()) return absl::OkStatus();
  RunHook(*space_, WindowPoint::kBeforeEnd, guard_->range());
  absl::Status restored =
      restore_protection_ ? RestoreProtection(*space_, range_) : absl::OkStatus();
  guard_.reset();  // the hub end
  if (owns_pages_) space_->windows_.Unlock(range_);
  return restored;
}

absl::Status HostWindow::MapReadOnly() {
  restore_protection_ = true;  // even after a partial failure
  return MapProtection(*space_, range_, PROT_READ);
}

absl::Status HostWindow::SetProtection(PageProtection prot) {
  if (absl::Status mapped = MapProtection(*space_, range_, ProtFlags(prot)); !mapped.ok()) {
    // mprotect may have changed a prefix of the range before it failed (a hole in the
    // range, ENOMEM splitting a VMA past vm.max_map_count). Nothing is recorded, so Close
    // maps the range back to the recorded protection: the mapping never disagrees with
    // the record (a page read-only in the kernel but read-write in the record would make
    // every guest write to it a fault the VMM calls a retry, forever).
    restore_protection_ = true;
    return mapped;
  }
  for (uint64_t p = range_.first; p < range_.end(); ++p) {
    space_->user_prot(p).store(static_cast<uint8_t>(prot), std::memory_order_relaxed);
  }
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
