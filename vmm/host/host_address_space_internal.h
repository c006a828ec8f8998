// Internal pieces of vmm/host shared by the space and its operations. Not installed.
#ifndef MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_INTERNAL_H_
#define MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_INTERNAL_H_

#include <sys/mman.h>

#include <atomic>
#include <cstdint>

#include "mmu/inflight_drain.h"
#include "notifier/subscription.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/host_options.h"

namespace mmuvisor::vmm {

// HostStats as relaxed counters: increments with no ordering partner.
struct HostCounters {
  std::atomic<uint64_t> reclaims{0}, reclaimed_pages{0}, written_back{0}, skipped_clean{0},
      skipped_not_resident{0}, save_failures{0}, discards{0}, discarded_pages{0}, migrates{0},
      migrated_pages{0}, migrate_failures{0}, protects{0}, unmaps{0}, memslot_adds{0},
      memslot_moves{0}, oom_reaps{0}, oom_eagain_retries{0}, oom_skipped{0}, dirty_harvests{0},
      dirty_pages_logged{0}, host_writes_noted{0}, swapped_in_at_teardown{0};
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
};

// The host's own copies of guest RAM (ReadGuest/WriteGuest; Linux: access_process_vm) as
// a subscriber of the space's hub, with the tree's one in-flight drain (mmu::InflightDrain,
// mmu/README.md): each page copy is a section that first checks that no window holds the
// page; a window locks its pages before its start, and this start waits for the copies in
// flight (blockable) or refuses with EAGAIN while one is (non-blockable: the OOM reaper
// then retries). Either the start sees a copy counted and waits for it (the bytes, and a
// write's NoteHostWrite, land before the window changes the page), or the copy sees the
// window's page lock and waits the window out. The window's page lock is this drain's
// "zap". No end, so it may refuse (notifier/README.md, rule 2). Registered first on the
// hub, so it is walked last.
class HostAddressSpace::HostCopies final : public notifier::Subscription {
 public:
  HostCopies()
      : notifier::Subscription(
            {notifier::Op::kInvalidateRangeStart, notifier::Op::kStartMayFail}, "host-copies") {}
  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override {
    if (range.blockable) {
      drain_.Wait();
      return notifier::StartResult::kOk;
    }
    return drain_.TryWait() ? notifier::StartResult::kOk : notifier::StartResult::kAgain;
  }
  mmu::InflightDrain& drain() { return drain_; }

 private:
  mmu::InflightDrain drain_;
};

inline int ProtFlags(PageProtection prot) {
  switch (prot) {
    case PageProtection::kReadWrite:
      return PROT_READ | PROT_WRITE;
    case PageProtection::kReadOnly:
      return PROT_READ;
    case PageProtection::kNone:
      return PROT_NONE;
  }
  return 0;
}

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_INTERNAL_H_
