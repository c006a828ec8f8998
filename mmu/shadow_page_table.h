// ShadowPageTable: a sparse radix table from guest frame to shadow entry, 512-way per level
// and four levels deep like x86-64's (9 bits per level, 36-bit guest frame numbers).
//
// Invariants
//   - Memory is proportional to what is mapped: a table exists only while some entry below
//     it is present; ZapRange() unlinks tables that become empty (the root stays).
//   - Every table keeps a bitmap of its present slots, so ZapRange/ForEach/aging visit only
//     present slots: zapping a range costs what is mapped in it, not its size.
//   - A leaf slot is 0 (absent) or an encoded ShadowEntry with kPresent set.
//
// Threads and locks
//   - The table has no lock of its own. Map, ZapRange, ForEach, TestYoung, ClearYoung,
//     ReclaimRetired are "writer" calls: the owner serialises them (the MMU lock, held
//     exclusively; ForEach/TestYoung may run under a shared hold, they modify nothing).
//   - Lookup() and MarkAccessed() are lockless and may run concurrently with writers: they
//     walk atomics only. Unlinked tables are not freed at once but retired; the owner calls
//     ReclaimRetired() once no lockless reader can still hold a pointer to them (the owner's
//     read-side sections, see mmu/reader_sections.h).
//
// The directory cache (what makes LookupRaw() two loads instead of four)
//   Each thread remembers the last level-1 table ("directory": 512 leaf pointers, 1 GiB of
//   guest frames) it walked to, keyed by gfn >> 18 and tagged with the table's `token_`.
//   - A directory is cached only if it was linked when the walk read it, and the token the
//     entry carries was loaded BEFORE that walk.
//   - Every ZapRange() that unlinks a directory stores a fresh token (seq_cst) AFTER the
//     unlinks and before the owner's Quiescent() check; tokens come from one process-wide
//     counter, so a token never matches another table or a later state of this one.
//   - LookupRaw() loads the token (seq_cst) after the reader's section began (seq_cst
//     increment). Same Dekker pair as the walk: either Quiescent() sees the section open
//     (nothing is freed), or the section sees the new token and re-walks. A stale cached
//     directory that is unlinked but not yet freed only yields misses: a table is unlinked
//     only once all its slots are 0 and nothing writes to it afterwards.
//   - A missing directory is never cached (a later Map must be seen at once).
#ifndef MMUVISOR_MMU_SHADOW_PAGE_TABLE_H_
#define MMUVISOR_MMU_SHADOW_PAGE_TABLE_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <vector>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "mmu/types.h"

namespace mmuvisor::mmu {

// One shadow mapping: the host page backing a guest frame and its state bits.
struct ShadowEntry {
  uint64_t host_address = 0;  // page aligned
  bool writable = false;
  bool accessed = false;
  bool dirty = false;

  // Encoding in a leaf slot: bits 12..63 the host address, low bits the flags.
  static constexpr uint64_t kPresent = 1u << 0;
  static constexpr uint64_t kWritable = 1u << 1;
  static constexpr uint64_t kAccessed = 1u << 2;
  static constexpr uint64_t kDirty = 1u << 3;
  static constexpr uint64_t kAddressMask = ~(kPageSize - 1);

  uint64_t Encode() const {
    return host_address | kPresent | (writable ? kWritable : 0) |
           (accessed ? kAccessed : 0) | (dirty ? kDirty : 0);
  }
  static ShadowEntry Decode(uint64_t raw) {
    return ShadowEntry{raw & kAddressMask, (raw & kWritable) != 0, (raw & kAccessed) != 0,
                       (raw & kDirty) != 0};
  }
  friend bool operator==(const ShadowEntry&, const ShadowEntry&) = default;
};

class ShadowPageTable {
 public:
  static constexpr unsigned kLevels = 4;
  static constexpr unsigned kBitsPerLevel = 9;
  static constexpr unsigned kFanout = 1u << kBitsPerLevel;  // 512

  ShadowPageTable();
  ~ShadowPageTable();
  ShadowPageTable(const ShadowPageTable&) = delete;
  ShadowPageTable& operator=(const ShadowPageTable&) = delete;

  // Installs (or replaces) the entry for `gfn`. kInvalidArgument if gfn > kMaxGfn or the
  // host address is not page aligned or is 0. Writer call.
  absl::Status Map(Gfn gfn, const ShadowEntry& entry);

  // Removes every entry in `range`; returns how many were present. Tables left empty are
  // unlinked and retired. Writer call.
  uint64_t ZapRange(GfnRange range);

  // Calls fn(gfn, entry) for each present entry in `range`, in gfn order. Writer call
  // (shared hold suffices); fn must not call back into the table.
  void ForEach(GfnRange range, absl::FunctionRef<void(Gfn, const ShadowEntry&)> fn) const;

  // True if any entry in `range` has the accessed bit; stops at the first.
  bool TestYoung(GfnRange range) const;
  // Clears the accessed bit of every entry in `range`; true if any was set.
  bool ClearYoung(GfnRange range);

  // Lockless: the raw encoded entry for gfn, or 0 when absent. Through this thread's
  // directory cache when it is valid (see the header comment), else by a walk from the
  // root that refills it. Table-pointer loads are seq_cst (a plain load on x86): they
  // acquire (pair with the release publish in Map(), so a new table is seen zeroed) and
  // take part in the Dekker pair with the seq_cst unlink in ZapTable() (see
  // reader_sections.h). The leaf load acquires, pairing with the release store of the
  // entry in Map().
  uint64_t LookupRaw(Gfn gfn) const {
    // seq_cst: pairs with the seq_cst token store in ZapRange() (the Dekker pair above).
    const uint64_t token = token_.load(std::memory_order_seq_cst);
    const DirectoryCache& cache = directory_cache_;
    const Table* directory = cache.table;
    if (cache.key != (gfn >> kDirectoryShift) || cache.token != token) [[unlikely]] {
      directory = FillDirectoryCache(gfn, token);
      if (directory == nullptr) return 0;
    }
    const uint64_t leaf = directory->slots[Index(gfn, 1)].load(std::memory_order_seq_cst);
    if (leaf == 0) return 0;
    return reinterpret_cast<const Table*>(leaf)->slots[Index(gfn, 0)].load(
        std::memory_order_acquire);
  }
  std::optional<ShadowEntry> Lookup(Gfn gfn) const {
    const uint64_t raw = LookupRaw(gfn);
    if ((raw & ShadowEntry::kPresent) == 0) return std::nullopt;
    return ShadowEntry::Decode(raw);
  }

  // Lockless: sets the accessed (and, if `dirty`, the dirty) bit of gfn's entry if it
  // still equals `observed` (a value LookupRaw returned). A compare-exchange, so a
  // concurrent zap or replacement is never resurrected or marked by mistake.
  void MarkAccessed(Gfn gfn, uint64_t observed, bool dirty);

  // Frees retired tables. REQUIRES: no lockless reader that started before their unlink
  // is still walking (the owner's grace period has elapsed). Writer call.
  void ReclaimRetired();

  uint64_t mapped_count() const { return mapped_; }
  size_t table_count() const { return tables_; }  // live tables, root included
  size_t retired_count() const { return retired_.size(); }
  // Bytes held by live and retired tables.
  size_t MemoryBytes() const { return (tables_ + retired_.size()) * sizeof(Table); }

 private:
  struct Table {
    // Inner levels: child Table* as an integer (0 = none). Leaf level: encoded entries.
    std::atomic<uint64_t> slots[kFanout] = {};
    // Present-slot bitmap and count: touched by writer calls only.
    uint64_t present[kFanout / 64] = {};
    uint32_t count = 0;
  };

  static unsigned Index(Gfn gfn, unsigned level) {
    return static_cast<unsigned>(gfn >> (level * kBitsPerLevel)) & (kFanout - 1);
  }
  static Gfn LevelSpan(unsigned level) { return Gfn{1} << (level * kBitsPerLevel); }

  // A directory covers 2^18 frames (level 1: 512 leaf tables of 512 entries).
  static constexpr unsigned kDirectoryShift = 2 * kBitsPerLevel;
  // One per thread, for the table it last looked up through (tokens are process-unique).
  struct DirectoryCache {
    uint64_t token;  // 0 (never a live token) until the first fill
    Gfn key;         // gfn >> kDirectoryShift; ~0 (never a valid key) until the first fill
    const Table* table;
  };
  static inline thread_local constinit DirectoryCache directory_cache_{0, ~Gfn{0}, nullptr};
  static uint64_t NextToken();

  // Walks root -> directory for gfn; caches it with `token` (loaded before the walk).
  // nullptr (and nothing cached) if gfn > kMaxGfn or no directory exists for it.
  const Table* FillDirectoryCache(Gfn gfn, uint64_t token) const;
  uint64_t ZapTable(Table* table, unsigned level, Gfn base, GfnRange range,
                    bool& directory_unlinked);
  template <typename Visit>
  bool Walk(const Table* table, unsigned level, Gfn base, GfnRange range,
            const Visit& visit) const;
  void FreeTree(Table* table, unsigned level);

  Table* const root_;
  // Validates every thread's directory cache for this table; replaced (from NextToken())
  // by each ZapRange() that unlinks a directory.
  std::atomic<uint64_t> token_;
  uint64_t mapped_ = 0;
  size_t tables_ = 1;
  std::vector<Table*> retired_;
};

}  // namespace mmuvisor::mmu

#endif  // MMUVISOR_MMU_SHADOW_PAGE_TABLE_H_
