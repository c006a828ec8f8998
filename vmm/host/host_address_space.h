// HostAddressSpace: the host side of guest memory, and the only code that changes what
// backs it (vmm/host/README.md). It owns guest RAM (GuestRam: memfd-shared by default,
// anonymous as an option), the notifier hub for it (hub addresses are host-virtual
// addresses of guest RAM, as Linux's mm addresses are), the memslot view (MemslotTable),
// the swap store and the userfaultfd page server. It is the mmu::Primary of the
// SecondaryMmus subscribed to its hub.
//
// Every operation is bracketed by the hub, with the event Linux would use:
//   Reclaim   kClear          save each resident page not saved-and-clean, then discard
//   Discard   kClear          drop the contents (balloon): next access reads zeros
//   Protect   kProtectionVma  mprotect; a guest write then fails (KVM_RUN: EFAULT)
//   Migrate   kMigrate        contents move to new backing pages (save, discard, fault back)
//   Unmap     kUnmap          memslot removal, with every other window closed first
//   OomReap   kClear, non-blockable; on EAGAIN the range is untouched, retried, skipped
//   Teardown  Release once per subscription, after the guests are stopped
// A window is: lock the pages (PageRangeLock) -> hub start -> change -> hub end -> unlock.
// A failed start (only non-blockable ones fail) changes nothing and calls no end.
//
// Why writes cannot be lost between "save" and "discard": inside Reclaim/Migrate windows
// the range is mapped read-only (mprotect), before the dirty log is harvested and the
// pages are copied. (memfd RAM drops the range's page-table entries just before, so the
// read-only step rewrites none and the window costs one page-table pass; the pages are
// then copied with pread and freed with a hole punch: see README.md, "Cost".) A vCPU store then fails (KVM_RUN -> EFAULT): the VMM asks
// ClassifyGuestFault(), waits with WaitForPage() and re-enters (kRetry), or reports a
// guest write to user-protected memory (kProtected). Reads keep working: before the
// discard they see the page, after it the page server brings back the saved copy.
// Device accesses go through a SecondaryMmu whose mappings the start zapped, and hold the
// device-access gate (DeviceAccess, shared) around translate + copy; every window that
// changes pages drains the gate after the start, before touching the mapping (a TLB
// shootdown: no device copy that used an old translation is still running, so none can
// fault on the read-only mapping or land between save and discard). DmaPort does this.
//
// Invariants
//   - No two windows of this object cover the same page; Unmap and Teardown run with no
//     window open and keep new ones out (KVM: memslot updates wait for
//     mn_active_invalidate_count == 0).
//   - A page is discarded by Reclaim/Migrate/OomReap only if the store holds a checksummed
//     copy equal to it (Save succeeded in this window, or saved-and-clean per a verified
//     dirty log). A failed save leaves that page resident; the window still ends.
//   - user_prot_[p] is what the owner asked for page p; the mapping equals it outside
//     windows.
//
// Locks: windows_ (page ranges; see page_range_lock.h) is taken first by every operation;
// then the hub's own locks inside start/end. harvest_mu_ serialises dirty-log fetches with
// their MarkDirty (a page's "written" bit is never in flight between two harvesters).
// mu_ guards the memslot table pointer and observers (leaf). teardown_mu_: Resolve holds
// it shared while it touches RAM; Teardown takes it exclusive before unmapping.
// Order: windows_ -> harvest_mu_ -> mu_; teardown_mu_ is never held while waiting on
// windows_.
//
// Threads: every method is thread-safe. Operations may sleep (I/O, hub callbacks, page
// server round trips); none may be called from a hub callback or a page-server handler.
// Resolve is called by faulting threads of secondary MMUs.
#ifndef MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_
#define MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "mmu/primary.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "notifier/range.h"
#include "vmm/host/dirty_tracking.h"
#include "notifier/base/mutex.h"
#include "vmm/host/memslot_control.h"
#include "vmm/host/page_range_lock.h"
#include "vmm/memory/address.h"
#include "vmm/memory/guest_memory_access.h"
#include "vmm/memory/memslot_table.h"
#include "vmm/paging/guest_ram.h"
#include "vmm/paging/page_server.h"
#include "vmm/paging/swap_store.h"

namespace mmuvisor::vmm {

class ReclaimDriver;
struct ReclaimDriverOptions;

enum class PageProtection : uint8_t { kReadWrite, kReadOnly, kNone };
const char* PageProtectionName(PageProtection prot);

// One memslot carved out of guest RAM: guest-physical [gpa, gpa + num_pages pages) is
// RAM pages [first_page, first_page + num_pages).
struct RamSlot {
  uint32_t slot = 0;
  Gpa gpa;
  uint64_t first_page = 0;
  uint64_t num_pages = 0;
  uint32_t flags = 0;  // KVM_MEM_* (KVM_MEM_LOG_DIRTY_PAGES is added when a log is given)
};

// Test hook points inside every window (fault injection: delays in the race windows).
enum class WindowPoint : uint8_t { kAfterStart, kBeforeEnd };
using WindowHook = std::function<void(WindowPoint point, const notifier::Range& range)>;

struct OomReapOptions {
  int max_attempts = 5;
  absl::Duration initial_backoff = absl::Microseconds(200);
  absl::Duration max_backoff = absl::Milliseconds(20);
};

struct HostAddressSpaceOptions {
  uint64_t ram_bytes = 64ull << 20;
  MemoryBacking backing = MemoryBacking::kMemfd;
  std::vector<RamSlot> slots;  // empty: slot 0 = all of RAM at gpa 0
  notifier::HubOptions hub;
  SwapStoreOptions swap;
  int page_server_threads = 1;
  // Page-server fault-around (vmm/paging): followers installed with each fault. Pages under
  // an open window are never installed by fault-around (the space vetoes them).
  uint32_t fault_around_pages = kDefaultFaultAroundPages;
  uint32_t page_server_spin_ns = 0;   // PageServerOptions::spin_before_block_ns
  std::vector<int> page_server_cpus;  // PageServerOptions::handler_cpus
  PageServerFailureCallback on_page_server_failure;  // "stop the VM"; from a handler
  MemslotControl* memslot_control = nullptr;  // not owned; null: no hypervisor (tests)
  DirtyLog* dirty_log = nullptr;              // not owned; null: always write back
  // The owner writes the boot image first and then calls StartPageServer() (Machine): the
  // boot pages (page tables, GDT, image, stacks) are then plain page-cache pages, not one
  // page-server zero-fill each. Until then no operation may run and guests must not run.
  bool start_page_server_later = false;
  // The owner will call AttachHypervisor after Create (Machine): Create does not log the
  // (provisional) dirty-tracking choice, the attachment does.
  bool attach_hypervisor_later = false;
  GuestWriteProbe dirty_probe;                // the self-check's guest write
  std::function<void()> stop_guests;          // Teardown's first step
  OomReapOptions oom;
  // Map Reclaim/Migrate/OomReap ranges read-only for the window (see above). false is only
  // correct while nothing writes guest RAM except through DeviceAccess (vCPUs paused); it
  // saves the mprotect pair (on memfd RAM two page-table walks that rewrite no entry;
  // on anonymous RAM two full passes: bench_host_reclaim).
  bool write_protect_windows = true;
  WindowHook window_hook;  // tests only
};

struct ReclaimResult {
  uint64_t reclaimed = 0;     // pages discarded (their copy is in the store)
  uint64_t written_back = 0;  // pages saved in this window
  uint64_t skipped_clean = 0; // resident, saved-and-clean: discarded without a write
  uint64_t not_resident = 0;  // nothing to do
  uint64_t save_failures = 0; // stayed resident
  absl::Status first_save_error;
};

struct OomReapResult {
  bool reaped = false;
  int attempts = 0;
  uint64_t eagain_retries = 0;
  ReclaimResult reclaim;
};

enum class GuestFaultKind : uint8_t {
  kRetry,      // a window covers the page (or did): WaitForPage, then re-enter KVM_RUN
  kProtected,  // the owner protected it: report a guest write to protected memory
  kPoisoned,   // the page server failed: stop the VM with failure()
  kNotMapped,  // no memslot: report
};
struct GuestFaultVerdict {
  GuestFaultKind kind = GuestFaultKind::kRetry;
  std::string detail;
};
const char* GuestFaultKindName(GuestFaultKind kind);

// Statistics: relaxed counters, exact once quiescent.
struct HostStats {
  uint64_t reclaims = 0, reclaimed_pages = 0, written_back = 0, skipped_clean = 0,
           skipped_not_resident = 0, save_failures = 0;
  uint64_t discards = 0, discarded_pages = 0;
  uint64_t migrates = 0, migrated_pages = 0, migrate_failures = 0;
  uint64_t protects = 0, unmaps = 0;
  uint64_t oom_reaps = 0, oom_eagain_retries = 0, oom_skipped = 0;
  uint64_t dirty_harvests = 0, dirty_pages_logged = 0, host_writes_noted = 0;
  uint64_t swapped_in = 0;  // pages the page server copied from the store (PagesFromStore)
};

class HostAddressSpace final : public mmu::Primary, public GuestMemoryAccess {
 public:
  static absl::StatusOr<std::unique_ptr<HostAddressSpace>> Create(
      HostAddressSpaceOptions options);
  // Teardown() if not done.
  ~HostAddressSpace() override;
  HostAddressSpace(const HostAddressSpace&) = delete;
  HostAddressSpace& operator=(const HostAddressSpace&) = delete;

  // Late attachment of the hypervisor, for a VMM that creates guest RAM (and loads the
  // image into it) before it opens /dev/kvm: registers every memslot with `control`, then
  // runs the dirty-log self-check with `log` and `probe` (either may be null) and logs the
  // choice. FailedPrecondition if a control is already attached or torn down.
  // REQUIRES: before any guest runs and before any operation; control/log outlive
  // Teardown() (call Teardown before destroying the VM).
  absl::Status AttachHypervisor(MemslotControl* control, DirtyLog* log, GuestWriteProbe probe)
      ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Operations (errors: InvalidArgument bad range, FailedPrecondition torn down) ----
  // Blockable. The result counts what happened per page; save errors are in it, not in
  // the status (a failed page is not an error of the call).
  absl::StatusOr<ReclaimResult> Reclaim(PageRange range) ABSL_LOCKS_EXCLUDED(harvest_mu_);
  // Drops store copies first, then the pages: no later fault can bring old data back.
  absl::Status Discard(PageRange range);
  absl::Status Protect(PageRange range, PageProtection prot);
  absl::Status Unprotect(PageRange range) { return Protect(range, PageProtection::kReadWrite); }
  // reclaimed = pages moved to new backing pages; save_failures stayed where they were.
  absl::StatusOr<ReclaimResult> Migrate(PageRange range) ABSL_LOCKS_EXCLUDED(harvest_mu_);
  // NotFound: no such slot. Memslot observers run after the window, on this thread.
  absl::Status Unmap(uint32_t slot) ABSL_LOCKS_EXCLUDED(mu_);
  // Never blocks on a busy range or a callback; reaped=false after max_attempts.
  absl::StatusOr<OomReapResult> OomReap(PageRange range) ABSL_LOCKS_EXCLUDED(harvest_mu_);
  // Stops the reclaim driver, calls stop_guests, waits for open windows, Release()s the
  // hub (each subscription's Release exactly once), shuts the page server down, deletes
  // the memslots (MemslotControl), closes the store and unmaps RAM. Idempotent.
  // REQUIRES: not called from a callback or a guest thread.
  void Teardown() ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_);
  bool torn_down() const { return torn_down_.load(std::memory_order_acquire); }

  // ---- mmu::Primary ---------------------------------------------------------------------
  // Waits for a window covering the page to close, checks protection and memslots, then
  // faults the page in from this thread (MADV_POPULATE_READ/WRITE: through the page
  // server when it is swapped out). Unavailable when a window closed in on it (retry).
  absl::StatusOr<mmu::PrimaryPage> Resolve(uint64_t address, mmu::Access access) override
      ABSL_LOCKS_EXCLUDED(teardown_mu_, mu_);

  // ---- What the VMM needs for KVM_RUN = EFAULT -----------------------------------------
  GuestFaultVerdict ClassifyGuestFault(Gpa gpa, bool write) const ABSL_LOCKS_EXCLUDED(mu_);
  void WaitForPage(Gpa gpa) const ABSL_LOCKS_EXCLUDED(mu_);
  // For a fault whose address the kernel did not report (Linux 6.1: a bare EFAULT):
  // `at_entry` = window_counts() taken before the KVM_RUN that failed. If no window was
  // open at entry or now and none opened in between, no window caused it: kProtected when
  // any page is user-protected (the detail names how many and the first), else
  // kNotMapped ("not a host operation's doing"). Otherwise kRetry: call
  // WaitForWindowsOpenedBy(window_counts().opened) and re-enter.
  GuestFaultVerdict ClassifyAddresslessGuestFault(PageRangeLock::Counts at_entry) const
      ABSL_LOCKS_EXCLUDED(mu_);
  PageRangeLock::Counts window_counts() const { return windows_.counts(); }
  // Waits until at least `opened` windows have closed (so every window open at the time
  // `opened` was read has, or as many others), at most `timeout`; returns whether.
  bool WaitForWindowsOpenedBy(uint64_t opened, absl::Duration timeout) const {
    return windows_.WaitForClosed(opened, timeout);
  }
  // Pages the owner protected (Protect with kReadOnly or kNone), and the first one.
  uint64_t ProtectedPages(uint64_t* first = nullptr) const;

  // ---- GuestMemoryAccess: host copies to and from guest RAM -------------------------
  // Bounds-checked over the memslots (OutOfRange), page by page: waits while a window
  // covers the page, refuses user-protected pages (PermissionDenied: kNone for reads,
  // anything but read-write for writes), and copies holding the device-access gate, so
  // no window changes the page during the copy (a discarded page is faulted back by the
  // page server). WriteGuest calls NoteHostWrite for each page inside that hold. FailedPrecondition after
  // Teardown; the page server's error if it failed. REQUIRES: not inside a window's hook,
  // a hub callback or a page-server handler.
  absl::Status ReadGuest(Gpa gpa, absl::Span<uint8_t> out) override
      ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_, device_gate_);
  absl::Status WriteGuest(Gpa gpa, absl::Span<const uint8_t> in) override
      ABSL_LOCKS_EXCLUDED(mu_, teardown_mu_, device_gate_);
  bool ContainsGuestRange(Gpa gpa, ByteSize len) const override ABSL_LOCKS_EXCLUDED(mu_);

  // ---- Device accesses (DMA) ----------------------------------------------------------
  // Held (shared) by a device while it translates through its SecondaryMmu and copies.
  // REQUIRES: not held across SecondaryMmu::Fault or Resolve (a window waiting to drain
  // the gate would wait for the fault, which waits for the window).
  class DeviceAccess {
   public:
    explicit DeviceAccess(HostAddressSpace& space) : lock_(&space.device_gate_) {}
    DeviceAccess(const DeviceAccess&) = delete;
    DeviceAccess& operator=(const DeviceAccess&) = delete;

   private:
    ReaderMutexLock lock_;
  };
  uint64_t device_drain_refusals() const {
    return drain_refusals_.load(std::memory_order_relaxed);  // relaxed: statistic
  }

  // ---- Dirty tracking ---------------------------------------------------------------------
  // A host-side write into guest RAM that no dirty log sees (DMA, VMM copies). Call before
  // writing.
  void NoteHostWrite(PageRange range);
  // Fetches the dirty log (if in dirty-log mode) into the store's clean bits and the
  // aging bits. Reclaim/Migrate call it inside their windows.
  absl::Status HarvestDirtyLog() ABSL_LOCKS_EXCLUDED(harvest_mu_, mu_);
  const DirtyTrackingChoice& dirty_tracking() const { return dirty_choice_; }
  // Aging input: true if the dirty log (or NoteHostWrite) saw the page written since the
  // last call for it; clears.
  bool TestAndClearLoggedWrite(uint64_t page);

  // ---- Reclaim driver (owned; stopped by Teardown) -----------------------------------
  absl::Status StartReclaimDriver(const ReclaimDriverOptions& options);
  ReclaimDriver* reclaim_driver() { return driver_.get(); }

  // ---- Views --------------------------------------------------------------------------
  // RAM pages of [gpa, gpa + len); InvalidArgument unless page aligned and in one slot.
  absl::StatusOr<PageRange> PagesOf(Gpa gpa, ByteSize len) const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t AddressOf(uint64_t page) const { return base_ + page * kPageSize; }
  uint8_t* PagePointer(uint64_t page) const { return reinterpret_cast<uint8_t*>(AddressOf(page)); }
  uint64_t num_pages() const { return num_pages_; }
  std::shared_ptr<const MemslotTable> memslots() const ABSL_LOCKS_EXCLUDED(mu_);
  // The current memslots as a SecondaryMmu layout (gfn -> host address).
  std::vector<mmu::MemorySlot> SecondaryLayout() const ABSL_LOCKS_EXCLUDED(mu_);
  using MemslotObserver = std::function<void(const MemslotTable&)>;
  int AddMemslotObserver(MemslotObserver observer) ABSL_LOCKS_EXCLUDED(mu_);
  void RemoveMemslotObserver(int id) ABSL_LOCKS_EXCLUDED(mu_);

  notifier::NotifierSubscriptions& hub() { return *hub_; }
  // Null after Teardown.
  GuestRam* ram() { return ram_.get(); }
  SwapStore* store() { return store_.get(); }
  // Null before StartPageServer() (start_page_server_later) and after Teardown.
  PageServer* page_server() { return page_server_.get(); }
  // Registers guest RAM with userfaultfd and starts the handlers (start_page_server_later).
  // Pages written before are resident and stay so. Errors: FailedPrecondition (already
  // started, torn down), PageServer::Start's. REQUIRES: no guest runs, no operation runs.
  absl::Status StartPageServer();
  size_t open_windows() const { return windows_.held(); }
  // REQUIRES: not concurrent with Teardown().
  HostStats stats() const;

 private:
  struct Counters;
  class Window;

  explicit HostAddressSpace(HostAddressSpaceOptions options);
  absl::Status Init();
  // The page server's failure, OK before it is started.
  absl::Status PageServerFailure() const {
    return page_server_ != nullptr ? page_server_->failure() : absl::OkStatus();
  }

  absl::Status CheckRange(PageRange range) const;
  notifier::Range HubRange(PageRange range, notifier::Event event, bool blockable) const;
  // The window body shared by Reclaim, Migrate and OomReap.
  // REQUIRES: `range` locked in windows_ by the caller.
  absl::StatusOr<ReclaimResult> SaveAndDiscardLocked(PageRange range, notifier::Event event,
                                                     bool blockable, bool refault)
      ABSL_LOCKS_EXCLUDED(harvest_mu_);
  // mprotect of [first, first+count) pages. REQUIRES: range locked.
  absl::Status MapProtection(PageRange range, int prot) const;
  // Back to user_prot_ for every page of the range. REQUIRES: range locked.
  absl::Status RestoreProtection(PageRange range) const;
  void RunHook(WindowPoint point, const notifier::Range& range) const;
  // Waits until no DeviceAccess is in flight (blockable), or checks it (non-blockable:
  // false when one is). REQUIRES: inside a window (the secondaries already zapped).
  bool DrainDeviceAccesses(bool blockable) ABSL_LOCKS_EXCLUDED(device_gate_);
  // One page's part of ReadGuest/WriteGuest: [hva, hva + len) inside RAM page `page`.
  absl::Status CopyPage(uint64_t page, uint8_t* hva, uint8_t* buffer, size_t len, bool write)
      ABSL_LOCKS_EXCLUDED(teardown_mu_, device_gate_);

  HostAddressSpaceOptions options_;
  uint64_t base_ = 0;
  uint64_t num_pages_ = 0;
  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<SwapStore> store_;
  std::unique_ptr<PageServer> page_server_;
  std::unique_ptr<notifier::NotifierSubscriptions> hub_;
  DirtyTrackingChoice dirty_choice_;
  bool attach_later_ = false;  // written by Init only
  std::unique_ptr<ReclaimDriver> driver_;

  mutable PageRangeLock windows_;
  // Written under windows_ for the page's range; read locklessly (relaxed: the mapping
  // itself is the truth; a racing reader re-checks after its access fails).
  std::unique_ptr<std::atomic<uint8_t>[]> user_prot_;
  // Pages the dirty log or NoteHostWrite saw written, for aging (relaxed; a lost bit only
  // ages a page one round early).
  std::unique_ptr<std::atomic<uint8_t>[]> logged_write_;

  Mutex harvest_mu_ ABSL_ACQUIRED_BEFORE(mu_);

  mutable Mutex mu_;
  std::shared_ptr<const MemslotTable> memslots_ ABSL_GUARDED_BY(mu_);
  std::vector<std::pair<int, MemslotObserver>> observers_ ABSL_GUARDED_BY(mu_);
  int next_observer_ ABSL_GUARDED_BY(mu_) = 1;

  SharedMutex device_gate_;
  std::atomic<uint64_t> drain_refusals_{0};
  SharedMutex teardown_mu_;
  // release in Teardown pairs with the acquire loads in torn_down()/Resolve.
  std::atomic<bool> torn_down_{false};
  std::atomic<bool> teardown_started_{false};  // relaxed: only makes Teardown run once
  std::unique_ptr<Counters> counters_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_H_
