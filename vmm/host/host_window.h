// HostWindow: one invalidation window of a HostAddressSpace, and the only handle through
// which vmm/host changes what backs guest RAM. Each operation (reclaim.cc, migrate.cc,
// discard.cc, protect.cc, unmap.cc, oom_reap.cc) opens one, changes its range through it,
// and closes it:
//
//   Open   lock the pages (PageRangeLock: windows on overlapping pages serialise)
//          -> torn-down check -> hub start (notifier::InvalidationGuard::Start: each
//             subscription zaps and waits for its own accesses in flight, a TLB
//             shootdown: mmu/README.md, "The in-flight drain")
//          -> window_hook(kAfterStart)
//   ...    the operation's change, through this window
//   Close  window_hook(kBeforeEnd) -> the owner's protection back on the range (only if
//          MapReadOnly was called) -> hub end (the guard) -> unlock the pages
//
// Every protection change here (MapReadOnly, SetProtection, the restore at Close) leaves
// the pages the page server poisoned PROT_NONE (PageServer::KeepPoisoned).
//
// A failed open changes nothing and calls no end: a non-blockable window (WindowMode::
// kNonBlockable, the OOM reaper's) fails with Unavailable when the pages are busy or a
// subscription refuses the start (EAGAIN; e.g. an access in flight: a mirror's lock is
// held, a host copy is in its section). Unmap's window (OpenHeld) runs while AllPagesHeld
// holds every page.
//
// Threads: a window is opened, used and closed on one thread (the InvalidationGuard's
// rule); it must not be opened from a hub callback, a page-server handler or a hook.
// Internal to vmm/host: the public operations are the free functions of the op headers.
#ifndef MMUVISOR_VMM_HOST_HOST_WINDOW_H_
#define MMUVISOR_VMM_HOST_HOST_WINDOW_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/functional/function_ref.h"
#include "absl/status/statusor.h"
#include "notifier/invalidation_guard.h"
#include "notifier/range.h"
#include "vmm/host/host_address_space.h"

namespace mmuvisor::vmm {

enum class WindowMode : uint8_t {
  kBlockable,     // waits for the pages (and its start for the accesses in flight)
  kNonBlockable,  // waits for nothing: Unavailable where it would
};

// Every page of RAM held (memslot changes, KVM's rule: unmap.h, memslot_change.h): waits
// until no window is open and keeps new ones out until Release() or destruction.
class AllPagesHeld {
 public:
  explicit AllPagesHeld(HostAddressSpace& space);
  ~AllPagesHeld() { Release(); }
  AllPagesHeld(const AllPagesHeld&) = delete;
  AllPagesHeld& operator=(const AllPagesHeld&) = delete;
  void Release();  // once; later calls do nothing
  HostAddressSpace& space() const { return *space_; }

  // `slot` as the hypervisor gets it: host address of its first page, and
  // KVM_MEM_LOG_DIRTY_PAGES added when a dirty log is attached. InvalidArgument when its
  // pages are not inside RAM.
  absl::StatusOr<GuestMemorySlot> SlotOf(const RamSlot& slot) const;
  // One memslot change (KVM_SET_USER_MEMORY_REGION), under the dirty-log lock so that no
  // harvest meets a half-changed table: `change` with the MemslotControl (null when none
  // is attached), then `next` published. `dropped` (may be null) is the slot the change
  // deletes or moves: with a dirty log, its pages are then marked written, since the
  // hypervisor forgets the slot's log with it and a guest store just before the change
  // must still be written back. The memslot observers run last, on this thread, every
  // page still held: once a window can open again, no secondary MMU translates through a
  // slot the hypervisor dropped. Errors: `change`'s (nothing published), else the first
  // observer's (the change is made and published; that observer may lag behind it).
  absl::Status ChangeMemslots(const GuestMemorySlot* dropped,
                              absl::FunctionRef<absl::Status(MemslotControl*)> change,
                              MemslotTable next);

 private:
  HostAddressSpace* space_;
  bool held_ = true;
};

class HostWindow {
 public:
  // Errors: InvalidArgument (range not inside RAM), FailedPrecondition (torn down; the
  // message names `op`), Unavailable (non-blockable only, see above).
  static absl::StatusOr<HostWindow> Open(HostAddressSpace& space, PageRange range,
                                         notifier::Event event, WindowMode mode,
                                         const char* op);
  // The hub window alone, on pages `held` holds (Unmap). REQUIRES: range inside RAM.
  static absl::StatusOr<HostWindow> OpenHeld(AllPagesHeld& held, PageRange range,
                                             notifier::Event event);
  HostWindow(HostWindow&& other) noexcept;
  HostWindow& operator=(HostWindow&&) = delete;
  HostWindow(const HostWindow&) = delete;
  HostWindow& operator=(const HostWindow&) = delete;
  ~HostWindow() { (void)Close(); }

  // Ends the window (see above) and returns the protection restore's error. Once.
  absl::Status Close();

  HostAddressSpace& space() const { return *space_; }
  PageRange range() const { return range_; }
  // InvalidArgument unless `range` is a non-empty range of RAM pages.
  static absl::Status CheckRange(const HostAddressSpace& space, PageRange range);

  // ---- What an operation may change, inside the window ---------------------------------
  GuestRam& ram() const { return *space_->ram_; }
  SwapStore& store() const { return *space_->store_; }
  PageServer* page_server() const { return space_->page_server_.get(); }
  // HostAddressSpaceOptions::write_protect_windows.
  bool write_protect() const { return space_->options_.write_protect_windows; }
  // The range read-only (mprotect); Close maps it back to what the owner asked.
  absl::Status MapReadOnly();
  // mprotect to `prot` and record it as the owner's protection of every page (Protect).
  // On failure nothing is recorded and Close maps back any part mprotect changed.
  absl::Status SetProtection(PageProtection prot);

  // The space's statistics and OOM options, for the operations (also outside a window).
  static HostCounters& CountersOf(HostAddressSpace& space) {
    return *space.counters_;
  }
  static const OomReapOptions& OomOptionsOf(const HostAddressSpace& space) {
    return space.options_.oom;
  }

 private:
  static void RunHook(const HostAddressSpace& space, WindowPoint point,
                      const notifier::Range& range);

  HostWindow(HostAddressSpace& space, PageRange range, bool owns_pages,
             notifier::InvalidationGuard guard)
      : space_(&space), range_(range), owns_pages_(owns_pages), guard_(std::move(guard)) {}

  HostAddressSpace* space_;  // null once moved from
  PageRange range_;
  bool owns_pages_;  // false for OpenHeld: AllPagesHeld unlocks
  bool restore_protection_ = false;
  std::optional<notifier::InvalidationGuard> guard_;  // empty once closed
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_WINDOW_H_
