// Internal pieces of vmm/host shared by the space and its operations. Not installed.
#ifndef MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_INTERNAL_H_
#define MMUVISOR_VMM_HOST_HOST_ADDRESS_SPACE_INTERNAL_H_

#include <sys/mman.h>

#include <atomic>
#include <cstdint>

#include "vmm/host/host_options.h"

namespace mmuvisor::vmm {

// HostStats as relaxed counters: increments with no ordering partner.
struct HostCounters {
  std::atomic<uint64_t> reclaims{0}, reclaimed_pages{0}, written_back{0}, skipped_clean{0},
      skipped_not_resident{0}, save_failures{0}, discards{0}, discarded_pages{0}, migrates{0},
      migrated_pages{0}, migrate_failures{0}, protects{0}, unmaps{0}, oom_reaps{0},
      oom_eagain_retries{0}, oom_skipped{0}, dirty_harvests{0}, dirty_pages_logged{0},
      host_writes_noted{0}, swapped_in_at_teardown{0};
  static void Add(std::atomic<uint64_t>& c, uint64_t n) {
    c.fetch_add(n, std::memory_order_relaxed);
  }
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
