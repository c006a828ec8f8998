// The plain types of vmm/host: a page's protection, the memslots carved out of guest RAM,
// HostAddressSpace's creation options and its statistics. No behaviour here; the space is
// in host_address_space.h, the operations in their own files (reclaim.h, discard.h, ...).
#ifndef MMUVISOR_VMM_HOST_HOST_OPTIONS_H_
#define MMUVISOR_VMM_HOST_HOST_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <vector>

#include "absl/time/time.h"
#include "notifier/hub.h"
#include "notifier/range.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/host/memslot_control.h"
#include "vmm/memory/address.h"
#include "vmm/paging/guest_ram.h"
#include "vmm/paging/page_server.h"
#include "vmm/paging/swap_store.h"

namespace mmuvisor::vmm {

// What the owner asked for a page (Protect); the mapping equals it outside windows.
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

// OomReap (oom_reap.h): how often a busy or refused range is tried again.
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
  uint32_t fault_around_max_pages = kDefaultFaultAroundMaxPages;  // a sequential stream's ramp
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
  // Map Reclaim/Migrate/OomReap ranges read-only for the window (reclaim.h). false is only
  // correct while nothing writes guest RAM except in an in-flight drain's section (mmu/
  // README.md: drained secondary MMUs, the host copies) and the vCPUs are paused; it
  // saves the mprotect pair (on memfd RAM two page-table walks that rewrite no entry;
  // on anonymous RAM two full passes: bench_host_reclaim).
  bool write_protect_windows = true;
  WindowHook window_hook;  // tests only
  // Tests only: called by ReadGuest/WriteGuest for each page just before its copy's checks
  // (protection, open windows), on the copying thread. May run host operations.
  std::function<void(uint64_t page)> test_before_host_copy;
};

// Statistics: relaxed counters, exact once quiescent.
struct HostStats {
  uint64_t reclaims = 0, reclaimed_pages = 0, written_back = 0, skipped_clean = 0,
           skipped_not_resident = 0, save_failures = 0;
  uint64_t discards = 0, discarded_pages = 0;
  uint64_t migrates = 0, migrated_pages = 0, migrate_failures = 0;
  uint64_t protects = 0, unmaps = 0, memslot_adds = 0, memslot_moves = 0;
  uint64_t oom_reaps = 0, oom_eagain_retries = 0, oom_skipped = 0;
  uint64_t dirty_harvests = 0, dirty_pages_logged = 0, host_writes_noted = 0;
  uint64_t swapped_in = 0;  // pages the page server copied from the store (PagesFromStore)
  // Non-blockable starts the host copies' subscription refused (EAGAIN: a ReadGuest or
  // WriteGuest page copy was in flight).
  uint64_t host_copy_refusals = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_OPTIONS_H_
