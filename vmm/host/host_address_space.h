// HostAddressSpace: the host side of guest memory (Linux: the VMM's mm_struct). It owns
// guest RAM (GuestRam: memfd by default, anonymous as an option), its notifier hub (hub
// addresses are host-virtual addresses of guest RAM), the memslot snapshot, the swap store,
// the userfaultfd page server and the window bookkeeping; it is the mmu::Primary of the
// SecondaryMmus on its hub (Resolve). What changes the backing of guest RAM are the
// operations, one file each (reclaim.h, migrate.h, discard.h, protect.h, unmap.h,
// oom_reap.h), each one invalidation window (host_window.h: pages locked -> hub start ->
// change -> hub end). The space answers facts about a page (a window covers it, its
// protection, the page server's failure, window counts); what a guest fault means is
// vmm/machine's business (guest_fault_verdict.h).
//
// Invariants: no two windows cover the same page; Unmap and Teardown run with no window
// open and keep new ones out (KVM: memslot updates wait for mn_active_invalidate_count ==
// 0); user_prot(p) is what the owner asked for page p, and the mapping equals it outside
// windows.
//
// Locks: windows_ (page_range_lock.h) first, then the hub's own locks inside start/end
// (where the host copies' drain waits, briefly). harvest_mu_ serialises dirty-log fetches
// with their MarkDirty. mu_ guards the memslot table pointer and observers (leaf). teardown_mu_:
// Resolve and the host copies hold it shared while they touch RAM, Teardown exclusive
// before unmapping. Order: windows_ -> harvest_mu_ -> mu_; teardown_mu_ is never held
// while waiting on windows_. Threads: every method is thread-safe; none may be called
// from a hub callback or a page-server handler.
#ifndef MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_
#define MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "mmu/primary.h"
#include "mmu/secondary_mmu.h"
#include "notifier/base/host_mapping.h"
#include "notifier/base/mutex.h"
#include "notifier/hub.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/host/host_options.h"
#include "vmm/host/page_range_lock.h"
#include "vmm/memory/guest_memory_access.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {

struct HostCounters;

class HostAddressSpace final : public mmu::Primary, public GuestMemoryAccess {
 public:
  static absl::StatusOr<std::unique_ptr<HostAddressSpace>> Create(
      HostAddressSpaceOptions options);
  ~HostAddressSpace() override;  // Teardown() if not done
  HostAddressSpace(const HostAddressSpace&) = delete;
  HostAddressSpace& operator=(const HostAddressSpace&) = delete;

  // Late attachment of the hypervisor (Machine loads the image before it opens /dev/kvm):
  // registers every memslot with `control`, runs the dirty-log self-check with `log` and
  // `probe` (either may be null), logs the choice. FailedPrecondition if one is attached
  // or torn down. REQUIRES: before guests and operations run; both outlive Teardown().
  absl::Status AttachHypervisor(MemslotControl* control, DirtyLog* log, GuestWriteProbe probe)
      ABSL_LOCKS_EXCLUDED(mu_);
  // The hypervisor is destroyed next, and its memslots with it (KVM frees every slot of a
  // VM it destroys): forgets the memslot control and the dirty log without deleting a
  // slot, so Teardown deletes none either. Deleting them first would cost an SRCU grace
  // period and a shadow-page zap per slot (~0.1 ms each on kvm_pvm) for nothing. RAM stays
  // mapped and served until Teardown, so the VM is destroyed before its memory goes.
  // Idempotent. REQUIRES: no guest runs and no operation runs or starts (the owner's
  // reclaim driver stopped); the owner destroys the VM before Teardown.
  void DetachHypervisor() ABSL_LOCKS_EXCLUDED(mu_);
  // Registers RAM with userfaultfd and starts the handlers (start_page_server_later);
  // pages written before stay resident. FailedPrecondition (started, torn down),
  // PageServer::Start's errors. REQUIRES: no guest and no operation runs.
  absl::Status StartPageServer();
  // stop_guests, waits for open windows, hub Release (once per subscription), page server
  // shut down, memslots deleted (unless DetachHypervisor), store closed, RAM unmapped. Idempotent. REQUIRES: not
  // from a callback or a guest thread; the owner stopped its reclaim driver.
  void Teardown() ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_);
  bool torn_down() const { return torn_down_.load(std::memory_order_acquire); }

  // mmu::Primary: waits out a window on the page, checks protection and memslots, faults
  // the page in (MADV_POPULATE_*: via the page server). Unavailable: a window closed in.
  absl::StatusOr<mmu::PrimaryPage> Resolve(uint64_t address, mmu::Access access) override
      ABSL_LOCKS_EXCLUDED(teardown_mu_, mu_);

  // GuestMemoryAccess (guest_access.cc): page by page over the memslots (OutOfRange),
  // waiting out windows, refusing protected pages (PermissionDenied), each page copy one
  // section of the host copies' in-flight drain (writes NoteHostWrite inside it: see
  // HostCopies). FailedPrecondition after Teardown.
  absl::Status ReadGuest(Gpa gpa, absl::Span<uint8_t> out) override
      ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_);
  absl::Status WriteGuest(Gpa gpa, absl::Span<const uint8_t> in) override
      ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_);
  bool ContainsGuestRange(Gpa gpa, ByteSize len) const override ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Facts about a page (what vmm/machine's guest-fault verdicts are made of) --------
  // The RAM page holding `gpa`; nullopt when no memslot does.
  std::optional<uint64_t> PageOf(Gpa gpa) const ABSL_LOCKS_EXCLUDED(mu_);
  PageProtection protection(uint64_t page) const {  // REQUIRES: page < num_pages()
    // relaxed: the mapping is the truth; a racing reader re-checks after its access fails.
    return static_cast<PageProtection>(user_prot(page).load(std::memory_order_relaxed));
  }
  // Pages the owner protected (kReadOnly or kNone), and the first one.
  uint64_t ProtectedPages(uint64_t* first = nullptr) const;
  // The page server's failure (a poisoned page); OK before it is started.
  absl::Status PageServerFailure() const {
    return page_server_ != nullptr ? page_server_->failure() : absl::OkStatus();
  }
  // The window bookkeeping, read-only: does a window cover a page (IsLocked), wait until
  // none does (WaitUntilUnlocked), windows open now (held), opened/closed counts and the
  // wait for them (counts, WaitForClosed). Only HostWindow takes and releases ranges.
  const PageRangeLock& windows() const { return windows_; }

  // ---- Dirty tracking (dirty_tracking.h) ------------------------------------------------
  // Before a host-side write into guest RAM that no dirty log sees (DMA, VMM copies).
  void NoteHostWrite(PageRange range);
  // The dirty log (in dirty-log mode) into the store's clean bits and the aging bits.
  absl::Status HarvestDirtyLog() ABSL_LOCKS_EXCLUDED(harvest_mu_, mu_);
  const DirtyTrackingChoice& dirty_tracking() const { return dirty_choice_; }
  // Aging: whether a log or NoteHostWrite saw the page written since the last call; clears.
  bool TestAndClearLoggedWrite(uint64_t page);

  // ---- RAM, memslots, hub ---------------------------------------------------------------
  // RAM pages of [gpa, gpa + len); InvalidArgument unless page aligned and in one slot.
  absl::StatusOr<PageRange> PagesOf(Gpa gpa, ByteSize len) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t AddressOf(uint64_t page) const { return base_ + page * kPageSize; }
  uint8_t* PagePointer(uint64_t page) const { return reinterpret_cast<uint8_t*>(AddressOf(page)); }
  uint64_t num_pages() const { return num_pages_; }
  std::shared_ptr<const MemslotTable> memslots() const ABSL_LOCKS_EXCLUDED(mu_);
  // The current memslots as a SecondaryMmu layout (gfn -> host address).
  std::vector<mmu::MemorySlot> SecondaryLayout() const ABSL_LOCKS_EXCLUDED(mu_);
  // Any memslot table as one (what a memslot observer hands to SecondaryMmu::SetLayout).
  static std::vector<mmu::MemorySlot> SecondaryLayoutOf(const MemslotTable& table);
  // After each memslot change (unmap.h, memslot_change.h), on the changing thread with
  // every page still held: no window is open, none opens until the observers return. An
  // observer's error (e.g. a secondary MMU that could not take the new layout) is the
  // change's error; the change itself stays made.
  using MemslotObserver = std::function<absl::Status(const MemslotTable&)>;
  int AddMemslotObserver(MemslotObserver observer) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveMemslotObserver(int id) ABSL_LOCKS_EXCLUDED(mu_);
  notifier::NotifierSubscriptions& hub() { return *hub_; }
  GuestRam* ram() { return ram_.get(); }  // null after Teardown
  SwapStore* store() { return store_.get(); }
  // Null before StartPageServer() (start_page_server_later) and after Teardown.
  PageServer* page_server() { return page_server_.get(); }
  HostStats stats() const;  // REQUIRES: not concurrent with Teardown()

 private:
  friend class HostWindow;    // the operations' handle (host_window.h)
  friend class AllPagesHeld;
  class HostCopies;           // the host copies' subscription (host_address_space_internal.h)

  explicit HostAddressSpace(HostAddressSpaceOptions options);
  absl::Status Init();
  // One page's part of ReadGuest/WriteGuest: [hva, hva + len) inside RAM page `page`.
  absl::Status CopyPage(uint64_t page, uint8_t* hva, uint8_t* buffer, size_t len, bool write)
      ABSL_LOCKS_EXCLUDED(teardown_mu_);
  // One slot's dirty log into the store's clean bits and the aging bits (a slot without
  // KVM_MEM_LOG_DIRTY_PAGES, or no log: nothing).
  absl::Status HarvestSlot(const GuestMemorySlot& slot)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(harvest_mu_);

  HostAddressSpaceOptions options_;
  uint64_t base_ = 0;
  uint64_t num_pages_ = 0;
  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<SwapStore> store_;
  std::unique_ptr<PageServer> page_server_;
  std::unique_ptr<HostCopies> host_copies_;  // registered on hub_, which goes first
  std::unique_ptr<notifier::NotifierSubscriptions> hub_;
  DirtyTrackingChoice dirty_choice_;
  bool attach_later_ = false;  // written by Init only

  mutable PageRangeLock windows_;
  // Two bytes of state per RAM page, in memory that starts zero (so a 1 GiB guest's 512
  // KiB of it costs no page fault until a page's state changes): num_pages_ of the
  // owner's protection (PageProtection, kReadWrite = 0), then num_pages_ of logged writes.
  HostMapping page_state_;  // HostMapping::AnonymousZeroed
  // Written under windows_ for the page's range; read locklessly (protection()).
  std::atomic_ref<uint8_t> user_prot(uint64_t page) const {
    return std::atomic_ref<uint8_t>(page_state_.data()[page]);
  }
  // Pages the dirty log or NoteHostWrite saw written, for aging (relaxed; a lost bit only
  // ages a page one round early).
  std::atomic_ref<uint8_t> logged_write(uint64_t page) const {
    return std::atomic_ref<uint8_t>(page_state_.data()[num_pages_ + page]);
  }

  Mutex harvest_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;
  std::shared_ptr<const MemslotTable> memslots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, MemslotObserver>> observers_ ABSL_GUARDED_BY(mu_);
  int next_observer_ ABSL_GUARDED_BY(mu_) = 1;

  SharedMutex teardown_mu_;
  // release in Teardown pairs with the acquire loads in torn_down()/Resolve.
  std::atomic<bool> torn_down_{false};
  std::atomic<bool> teardown_started_{false};  // relaxed: only makes Teardown run once
  std::unique_ptr<HostCounters> counters_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_
