// FakeAddressSpace: a primary MMU for mmu/ tests. Pages at primary addresses
// [kBase, kBase + npages * kPageSize) are backed by host pages filled with a pattern that
// names the page and a version; every change of backing is bracketed by the hub, and the
// old host page is poisoned (never freed before the fake dies, so a stale reader reads
// poison, not freed memory).
//
// Locks: mu_ (the primary's page-table lock) guards the page map and the pool.
// Threads: everything is thread-safe; the Start/Swap/End halves are for single-threaded
// race-window tests and must be called in that order by one thread.
#ifndef MMUVISOR_TESTS_MMU_FAKE_ADDRESS_SPACE_H_
#define MMUVISOR_TESTS_MMU_FAKE_ADDRESS_SPACE_H_

#include <cstdint>
#include <memory>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/mutex.h"
#include "mmu/primary.h"
#include "notifier/hub.h"

namespace mmuvisor::mmu::testing {

class FakeAddressSpace : public Primary {
 public:
  static constexpr uint64_t kBase = 0x40000000;
  static constexpr uint64_t kPoison = 0xdeaddeaddeaddeadull;
  static constexpr size_t kWords = kPageSize / sizeof(uint64_t);

  FakeAddressSpace(notifier::NotifierSubscriptions& hub, uint64_t npages);
  ~FakeAddressSpace() override;

  static uint64_t Address(uint64_t page) { return kBase + page * kPageSize; }
  // The word every slot of `page`'s backing holds at `version` (never kPoison or 0).
  static uint64_t Word(uint64_t page, uint64_t version) { return (page << 32) | version; }
  // Reads a whole host page with relaxed atomic loads (safe against concurrent poisoning).
  static void ReadPage(uint64_t host_address, uint64_t* words);
  // True if `words` is an intact backing of `page` (any version); sets *version.
  static bool Intact(const uint64_t* words, uint64_t page, uint64_t* version);

  // Primary: faults the page in (version 1) if it has no backing. kNotFound if unmapped or
  // torn down. Read-only pages (SetWritable(false)) resolve with writable = false.
  absl::StatusOr<PrimaryPage> Resolve(uint64_t address, Access access) override;

  // Migrates `page` to a fresh host page (version + 1): start, swap, end. With
  // blockable = false the start may fail with kUnavailable; nothing changes then.
  absl::Status ChangeBacking(uint64_t page, bool blockable = true);
  // Unmaps [first, first + count): start(kUnmap), drop backings, end. Later Resolve of
  // those pages fails kNotFound until Remap.
  absl::Status Unmap(uint64_t first, uint64_t count);
  void Remap(uint64_t first, uint64_t count);
  // Teardown: hub.Release(), then every Resolve fails.
  void Teardown();

  // The three halves of ChangeBacking, for race-window tests.
  absl::Status StartChange(uint64_t page, bool blockable = true);
  void SwapBacking(uint64_t page);
  void EndChange(uint64_t page);

  void SetWritable(uint64_t page, bool writable);
  uint64_t CurrentHost(uint64_t page) const;  // 0 if no backing
  uint64_t resolves() const;

 private:
  struct PageState {
    uint64_t host = 0;  // 0: not faulted in yet
    uint64_t version = 0;
    bool mapped = true;
    bool writable = true;
  };
  uint64_t NewBackingLocked(uint64_t page, uint64_t version) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void PoisonLocked(uint64_t host) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  notifier::NotifierSubscriptions& hub_;
  mutable Mutex mu_;
  std::vector<PageState> pages_ ABSL_GUARDED_BY(mu_);
  std::vector<void*> pool_ ABSL_GUARDED_BY(mu_);  // every host page ever handed out
  bool torn_down_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t resolves_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace mmuvisor::mmu::testing

#endif  // MMUVISOR_TESTS_MMU_FAKE_ADDRESS_SPACE_H_
