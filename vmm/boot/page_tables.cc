// Identity page-table builder and a software walker. See page_tables.h.
#include "vmm/boot/page_tables.h"

#include <cstring>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/page.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kLargePageSize = 2ull << 20;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint64_t kPml4Span = 512 * kGiB;
// Accessed set at every level and Dirty on every leaf, as Linux's early page tables do: a
// walk then never has to write an entry. On a shadow-paging KVM (kvm_pvm) the walk is
// KVM's software walker, which writes A/D through the host mapping of the guest's tables;
// while a host window holds them read-only (reclaim, migrate) that write fails, and KVM
// turns the failure into a #PF injected into the guest instead of an exit (vmm/boot/README,
// "Page tables"). Dirty is set on leaves only: in a non-leaf entry of AMD's long mode it is
// not defined as ignored everywhere.
constexpr uint64_t kTableFlags = kPtePresent | kPteWritable | kPteUser | kPteAccessed;
constexpr uint64_t kLeafFlags = kTableFlags | kPteDirty;

uint64_t DivRoundUp(uint64_t a, uint64_t b) { return a / b + (a % b != 0); }

// Entries are read and written with memcpy: the host mapping need not be 8-byte aligned.
uint64_t LoadEntry(const GuestRamView& ram, uint64_t table, uint64_t index) {
  uint64_t e;
  std::memcpy(&e, ram.At(table + index * 8), sizeof(e));
  return e;
}
void StoreEntry(const GuestRamView& ram, uint64_t table, uint64_t index, uint64_t e) {
  std::memcpy(ram.At(table + index * 8), &e, sizeof(e));
}

// Hands out zeroed table pages from the page-table area, in order.
class TableAllocator {
 public:
  explicit TableAllocator(const GuestRamView& ram) : ram_(ram) {}
  uint64_t Allocate() {
    const uint64_t page = next_;
    next_ += kPageSize;
    std::memset(ram_.At(page), 0, kPageSize);
    return page;
  }

 private:
  const GuestRamView& ram_;
  uint64_t next_ = MMV_PAGE_TABLE_GPA;
};

// Returns the table `parent[index]` points at, allocating and linking it when absent.
uint64_t ChildTable(const GuestRamView& ram, TableAllocator& alloc, uint64_t parent,
                    uint64_t index) {
  const uint64_t e = LoadEntry(ram, parent, index);
  if (e & kPtePresent) return e & kPteAddressMask;
  const uint64_t child = alloc.Allocate();
  StoreEntry(ram, parent, index, child | kTableFlags);
  return child;
}

constexpr uint64_t kWindowLimit = 1ull << 46;

absl::Status CheckWindow(const GuestRamView& ram, const IdentityWindow& w) {
  if (w.size == 0 || w.gpa % kLargePageSize != 0 || w.size % kLargePageSize != 0 ||
      w.gpa < ram.size || w.gpa > kWindowLimit || w.size > kWindowLimit - w.gpa) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "page tables: window [%#x, +%#x) must be non-empty, 2 MiB aligned, above guest RAM "
        "(%#x) and below %#x", w.gpa, w.size, ram.size, kWindowLimit));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<uint64_t> BuildIdentityPageTables(const GuestRamView& ram,
                                                 absl::Span<const IdentityWindow> windows) {
  if (ram.size == 0 || ram.size % kPageSize != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "page tables: guest RAM size %#x is not a non-zero multiple of 4 KiB", ram.size));
  }
  if (ram.size < MMV_PAGE_TABLE_END_GPA) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "page tables: guest RAM size %#x does not cover the page-table area [%#x, %#x)",
        ram.size, MMV_PAGE_TABLE_GPA, MMV_PAGE_TABLE_END_GPA));
  }
  // Count first, so an oversized RAM is rejected before anything is written.
  const bool ragged_tail = ram.size % kLargePageSize != 0 && ram.size > kLargePageSize;
  uint64_t pages_needed = 1 + DivRoundUp(ram.size, kPml4Span) + DivRoundUp(ram.size, kGiB) +
                          1 + (ragged_tail ? 1 : 0);
  for (const IdentityWindow& w : windows) {
    if (absl::Status s = CheckWindow(ram, w); !s.ok()) return s;
    // At most: a PDPT per 512 GiB crossed and a PD per GiB crossed.
    pages_needed += DivRoundUp(w.size, kPml4Span) + 1 + DivRoundUp(w.size, kGiB) + 1;
  }
  const uint64_t pages_available = (MMV_PAGE_TABLE_END_GPA - MMV_PAGE_TABLE_GPA) / kPageSize;
  if (pages_needed > pages_available) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "page tables: guest RAM size %#x needs %u table pages, the area [%#x, %#x) holds %u",
        ram.size, pages_needed, MMV_PAGE_TABLE_GPA, MMV_PAGE_TABLE_END_GPA, pages_available));
  }

  TableAllocator alloc(ram);
  const uint64_t pml4 = alloc.Allocate();
  for (uint64_t gpa = 0; gpa < ram.size; gpa += kLargePageSize) {
    const uint64_t pdpt = ChildTable(ram, alloc, pml4, (gpa >> 39) & 511);
    const uint64_t pd = ChildTable(ram, alloc, pdpt, (gpa >> 30) & 511);
    const uint64_t pd_index = (gpa >> 21) & 511;
    if (gpa != 0 && ram.size - gpa >= kLargePageSize) {
      StoreEntry(ram, pd, pd_index, gpa | kLeafFlags | kPteLargePage);
      continue;
    }
    // 4 KiB pages: the first 2 MiB (page 0 stays not present) and a ragged tail.
    const uint64_t pt = ChildTable(ram, alloc, pd, pd_index);
    const uint64_t end = ram.size - gpa < kLargePageSize ? ram.size : gpa + kLargePageSize;
    for (uint64_t page = gpa; page < end; page += kPageSize) {
      if (page == 0) continue;
      StoreEntry(ram, pt, (page >> 12) & 511, page | kLeafFlags);
    }
  }
  for (const IdentityWindow& w : windows) {
    for (uint64_t gpa = w.gpa; gpa < w.gpa + w.size; gpa += kLargePageSize) {
      const uint64_t pdpt = ChildTable(ram, alloc, pml4, (gpa >> 39) & 511);
      const uint64_t pd = ChildTable(ram, alloc, pdpt, (gpa >> 30) & 511);
      StoreEntry(ram, pd, (gpa >> 21) & 511, gpa | kLeafFlags | kPteLargePage);
    }
  }
  return pml4;
}

absl::StatusOr<uint64_t> WalkPageTables(const GuestRamView& ram, uint64_t cr3, uint64_t gva,
                                        bool* user) {
  bool all_user = true;
  uint64_t table = cr3 & kPteAddressMask;
  // Level 4 (PML4) down to level 1 (PT); shift is the bit position the level indexes.
  for (int level = 4; level >= 1; --level) {
    const int shift = 12 + 9 * (level - 1);
    if (!ram.Contains(table, kPageSize)) {
      return absl::OutOfRangeError(absl::StrFormat(
          "page walk of %#x: level-%d table at %#x lies outside guest RAM", gva, level, table));
    }
    const uint64_t e = LoadEntry(ram, table, (gva >> shift) & 511);
    if (!(e & kPtePresent)) {
      return absl::NotFoundError(absl::StrFormat(
          "page walk of %#x: level-%d entry not present", gva, level));
    }
    all_user = all_user && (e & kPteUser);
    const bool leaf = level == 1 || ((level == 2 || level == 3) && (e & kPteLargePage));
    if (leaf) {
      const uint64_t offset_mask = (1ull << shift) - 1;
      *user = all_user;
      return (e & kPteAddressMask & ~offset_mask) | (gva & offset_mask);
    }
    table = e & kPteAddressMask;
  }
  return absl::InternalError("unreachable");
}

}  // namespace mmuvisor::vmm
