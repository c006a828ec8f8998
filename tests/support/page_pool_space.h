// PagePoolSpace: a test primary over a pool of real pages, harsher than vmm/host's
// HostAddressSpace as an oracle for stale accesses: every page a host operation frees is
// poisoned and goes back to a LIFO free list, so a stale translation reads poison or
// another page's data at once (HostAddressSpace punches a hole instead, which reads as
// zeros or is swapped back in, so a stale read there can look right). The DMA tests
// (tests/vmm/dma) count poison reads with it. Stress runs use HostAddressSpace in both
// modes; this is test-only.
// It is an mmu::Primary, owns the notifier hub of its address space, and every change to
// what backs a page is bracketed by the hub:
//   Reclaim(range)   kClear    save each resident page to the swap copy, free the page
//   Discard(range)   kClear    drop the page and its swap copy (next access reads zeros)
//   Migrate(range)   kMigrate  copy each resident page to a fresh page, free the old one
//   Protect(range)   kProtectionPage  write-protect (dirty tracking): the next write fault
//                              makes the page writable again
//   OomReap(range)   kClear, non-blockable: on EAGAIN the range is left untouched and the
//                    reaper retries with backoff up to `reap_attempts` times, then skips
// Resolve() (the fault side) swaps pages back in from their copy (a swap-in) or hands out
// zeroed pages. Pages are never returned to the OS while the space lives, so stale
// accesses are wrong, never undefined.
//
// Addresses: the primary address of gpa g is base() + g; guest frame = gpa >> 12.
// Locks: mu_ guards the page table, swap copies and the free list. It is never held while
// the hub is called (callbacks take MMU locks; the MMUs call Resolve without theirs).
// Threads: every method from any thread. Page contents are read and written with relaxed
// atomic words (vmm/dma/dma_memory.h).
#ifndef MMUVISOR_TESTS_SUPPORT_PAGE_POOL_SPACE_H_
#define MMUVISOR_TESTS_SUPPORT_PAGE_POOL_SPACE_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "mmu/primary.h"
#include "notifier/hub.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::testing {

struct PagePoolSpaceOptions {
  uint64_t pages = 1024;  // guest RAM = pages * 4 KiB
  notifier::HubOptions hub;
  uint64_t poison = 0xdeadbeefdeadbeefull;
  int reap_attempts = 3;
};

struct PagePoolStats {
  uint64_t invalidations = 0;  // hub starts attempted
  uint64_t eagain = 0;         // starts that returned Unavailable
  uint64_t reap_skipped = 0;   // reaps given up after reap_attempts
  uint64_t swap_outs = 0;      // pages saved by Reclaim/OomReap
  uint64_t swap_ins = 0;       // pages restored from their copy by Resolve
  uint64_t zero_fills = 0;     // pages handed out zeroed
  uint64_t migrated = 0;
  uint64_t discarded = 0;
  uint64_t protected_pages = 0;
  uint64_t resident = 0;       // pages backed right now
};

class PagePoolSpace : public mmu::Primary {
 public:
  static constexpr uint64_t kBase = uint64_t{1} << 40;  // primary address of gpa 0

  explicit PagePoolSpace(PagePoolSpaceOptions options);
  ~PagePoolSpace() override;  // REQUIRES: Teardown() called (or the hub never used)
  PagePoolSpace(const PagePoolSpace&) = delete;
  PagePoolSpace& operator=(const PagePoolSpace&) = delete;

  notifier::NotifierSubscriptions& hub() { return hub_; }
  uint64_t base() const { return kBase; }
  uint64_t pages() const { return options_.pages; }
  uint64_t ram_size() const { return options_.pages * 4096; }

  // Host operations over guest-physical [gpa, gpa + len), page aligned, inside RAM
  // (InvalidArgument otherwise). Reclaim/Discard/Migrate/Protect always open a window;
  // OomReap may end with Unavailable (every attempt got EAGAIN; nothing changed).
  absl::Status Reclaim(uint64_t gpa, uint64_t len) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Discard(uint64_t gpa, uint64_t len) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Migrate(uint64_t gpa, uint64_t len) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status Protect(uint64_t gpa, uint64_t len) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status OomReap(uint64_t gpa, uint64_t len) ABSL_LOCKS_EXCLUDED(mu_);
  // Releases the hub (every subscription's release, once). Idempotent.
  void Teardown();

  // mmu::Primary. kNotFound outside RAM.
  absl::StatusOr<mmu::PrimaryPage> Resolve(uint64_t address, mmu::Access access) override
      ABSL_LOCKS_EXCLUDED(mu_);

  // Test access to the current contents (faulting the page in like a CPU would).
  absl::StatusOr<uint64_t> ReadWordForTesting(uint64_t gpa) ABSL_LOCKS_EXCLUDED(mu_);
  absl::Status WriteWordForTesting(uint64_t gpa, uint64_t value) ABSL_LOCKS_EXCLUDED(mu_);

  PagePoolStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  struct PageState {
    uint64_t* page = nullptr;              // resident backing page, or null
    std::unique_ptr<uint64_t[]> saved;     // swap copy, or null
    bool write_protected = false;
  };
  enum class Kind { kReclaim, kDiscard, kMigrate, kProtect };

  absl::Status CheckRange(uint64_t gpa, uint64_t len) const;
  absl::Status Bracketed(uint64_t gpa, uint64_t len, Kind kind, bool blockable);
  void Apply(uint64_t first, uint64_t end, Kind kind) ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t* AllocPage() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void FreePage(uint64_t* page) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  uint64_t* ResidentPage(uint64_t gfn) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const PagePoolSpaceOptions options_;
  notifier::NotifierSubscriptions hub_;

  mutable Mutex mu_;  // notifier/mutex.h: TSan-visible
  std::vector<PageState> table_ ABSL_GUARDED_BY(mu_);
  struct FreeDeleter {
    void operator()(uint64_t* p) const;
  };
  std::vector<std::unique_ptr<uint64_t, FreeDeleter>> chunks_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t*> free_ ABSL_GUARDED_BY(mu_);
  uint64_t resident_ ABSL_GUARDED_BY(mu_) = 0;
  bool torn_down_ = false;  // owner thread only

  std::atomic<uint64_t> invalidations_{0}, eagain_{0}, reap_skipped_{0}, swap_outs_{0},
      swap_ins_{0}, zero_fills_{0}, migrated_{0}, discarded_{0}, protected_{0};
};

}  // namespace mmuvisor::testing

#endif  // MMUVISOR_TESTS_SUPPORT_PAGE_POOL_SPACE_H_
