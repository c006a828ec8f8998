// ShadowPageTable: the machinery (radix walks over present-slot bitmaps).
#include "mmu/shadow_page_table.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_cat.h"

namespace mmuvisor::mmu {
namespace {

// Calls f(index) for each set bit of `bits` in [lo, hi] (inclusive) in ascending order,
// until f returns false. Returns false if f stopped the iteration. f may clear bits.
template <typename F>
bool ForEachSetBit(const uint64_t* bits, unsigned lo, unsigned hi, const F& f) {
  for (unsigned w = lo / 64; w <= hi / 64; ++w) {
    uint64_t word = bits[w];
    if (w == lo / 64) word &= ~uint64_t{0} << (lo % 64);
    if (w == hi / 64 && hi % 64 != 63) word &= (uint64_t{1} << (hi % 64 + 1)) - 1;
    while (word != 0) {
      const unsigned index = w * 64 + static_cast<unsigned>(std::countr_zero(word));
      word &= word - 1;
      if (!f(index)) return false;
    }
  }
  return true;
}

}  // namespace

uint64_t ShadowPageTable::NextToken() {
  // relaxed: only uniqueness matters; the publication order is token_'s own seq_cst store.
  static std::atomic<uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

ShadowPageTable::ShadowPageTable() : root_(new Table()), token_(NextToken()) {}

const ShadowPageTable::Table* ShadowPageTable::FillDirectoryCache(Gfn gfn,
                                                                  uint64_t token) const {
  if (gfn > kMaxGfn) return nullptr;
  const Table* table = root_;
  for (unsigned level = kLevels - 1; level > 1; --level) {
    // seq_cst: as in LookupRaw (reader side of the Dekker pair).
    const uint64_t child = table->slots[Index(gfn, level)].load(std::memory_order_seq_cst);
    if (child == 0) return nullptr;
    table = reinterpret_cast<const Table*>(child);
  }
  // `token` was loaded before this walk: if the directory is unlinked after we read it,
  // ZapRange stores a newer token and this entry stops matching.
  directory_cache_ = DirectoryCache{token, gfn >> kDirectoryShift, table};
  return table;
}

ShadowPageTable::~ShadowPageTable() {
  FreeTree(root_, kLevels - 1);
  ReclaimRetired();
}

void ShadowPageTable::FreeTree(Table* table, unsigned level) {
  if (level > 0) {
    ForEachSetBit(table->present, 0, kFanout - 1, [&](unsigned i) {
      FreeTree(reinterpret_cast<Table*>(table->slots[i].load(std::memory_order_relaxed)),
               level - 1);
      return true;
    });
  }
  delete table;
}

absl::Status ShadowPageTable::Map(Gfn gfn, const ShadowEntry& entry) {
  if (gfn > kMaxGfn) {
    return absl::InvalidArgumentError(
        absl::StrCat("ShadowPageTable::Map gfn=0x", absl::Hex(gfn), ": beyond 2^",
                     kGfnBits, " frames"));
  }
  if (entry.host_address == 0 || (entry.host_address & (kPageSize - 1)) != 0) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ShadowPageTable::Map gfn=0x", absl::Hex(gfn), ": host address 0x",
        absl::Hex(entry.host_address), " is null or not page aligned"));
  }
  Table* table = root_;
  for (unsigned level = kLevels - 1; level > 0; --level) {
    const unsigned i = Index(gfn, level);
    uint64_t child = table->slots[i].load(std::memory_order_relaxed);
    if (child == 0) {
      auto* fresh = new Table();
      ++tables_;
      child = reinterpret_cast<uint64_t>(fresh);
      // Release pairs with the acquire load in LookupRaw(): readers see a zeroed table.
      table->slots[i].store(child, std::memory_order_release);
      table->present[i / 64] |= uint64_t{1} << (i % 64);
      ++table->count;
    }
    table = reinterpret_cast<Table*>(child);
  }
  const unsigned i = Index(gfn, 0);
  if ((table->present[i / 64] & (uint64_t{1} << (i % 64))) == 0) {
    table->present[i / 64] |= uint64_t{1} << (i % 64);
    ++table->count;
    ++mapped_;
  }
  // Release pairs with the acquire load in LookupRaw().
  table->slots[i].store(entry.Encode(), std::memory_order_release);
  return absl::OkStatus();
}

uint64_t ShadowPageTable::ZapRange(GfnRange range) {
  range.end = std::min(range.end, kMaxGfn + 1);
  if (range.empty()) return 0;
  bool directory_unlinked = false;
  const uint64_t zapped = ZapTable(root_, kLevels - 1, 0, range, directory_unlinked);
  if (directory_unlinked) {
    // After every unlink, before the owner's Quiescent(): seq_cst pairs with the seq_cst
    // token load in LookupRaw (header comment), so no thread keeps using a directory that
    // could be freed.
    token_.store(NextToken(), std::memory_order_seq_cst);
  }
  return zapped;
}

uint64_t ShadowPageTable::ZapTable(Table* table, unsigned level, Gfn base, GfnRange range,
                                   bool& directory_unlinked) {
  const Gfn span = LevelSpan(level);
  const Gfn first = std::max(range.start, base);
  const Gfn last = std::min(range.end, base + span * kFanout) - 1;
  const auto lo = static_cast<unsigned>((first - base) / span);
  const auto hi = static_cast<unsigned>((last - base) / span);
  uint64_t zapped = 0;
  ForEachSetBit(table->present, lo, hi, [&](unsigned i) {
    if (level == 0) {
      // Readers see 0 (absent) from here on; MarkAccessed's CAS fails on it.
      table->slots[i].store(0, std::memory_order_release);
    } else {
      auto* child = reinterpret_cast<Table*>(table->slots[i].load(std::memory_order_relaxed));
      zapped += ZapTable(child, level - 1, base + i * span, range, directory_unlinked);
      if (child->count != 0) return true;
      // Unlink; lockless readers may still be inside `child`, so retire, don't free.
      // seq_cst: the reclaim side of the Dekker pair in reader_sections.h.
      table->slots[i].store(0, std::memory_order_seq_cst);
      if (level - 1 == 1) directory_unlinked = true;
      retired_.push_back(child);
      --tables_;
    }
    table->present[i / 64] &= ~(uint64_t{1} << (i % 64));
    --table->count;
    if (level == 0) ++zapped;
    return true;
  });
  if (level == 0) mapped_ -= zapped;
  return zapped;
}

template <typename Visit>
bool ShadowPageTable::Walk(const Table* table, unsigned level, Gfn base, GfnRange range,
                           const Visit& visit) const {
  const Gfn span = LevelSpan(level);
  const Gfn first = std::max(range.start, base);
  const Gfn last = std::min(range.end, base + span * kFanout) - 1;
  const auto lo = static_cast<unsigned>((first - base) / span);
  const auto hi = static_cast<unsigned>((last - base) / span);
  return ForEachSetBit(table->present, lo, hi, [&](unsigned i) {
    if (level == 0) {
      return visit(base + i, const_cast<std::atomic<uint64_t>&>(table->slots[i]));
    }
    const auto* child =
        reinterpret_cast<const Table*>(table->slots[i].load(std::memory_order_relaxed));
    return Walk(child, level - 1, base + i * span, range, visit);
  });
}

void ShadowPageTable::ForEach(GfnRange range,
                              absl::FunctionRef<void(Gfn, const ShadowEntry&)> fn) const {
  range.end = std::min(range.end, kMaxGfn + 1);
  if (range.empty()) return;
  Walk(root_, kLevels - 1, 0, range, [&](Gfn gfn, std::atomic<uint64_t>& slot) {
    fn(gfn, ShadowEntry::Decode(slot.load(std::memory_order_relaxed)));
    return true;
  });
}

bool ShadowPageTable::TestYoung(GfnRange range) const {
  range.end = std::min(range.end, kMaxGfn + 1);
  if (range.empty()) return false;
  // Walk returns false when the visitor stopped it, i.e. at the first young entry.
  return !Walk(root_, kLevels - 1, 0, range, [](Gfn, std::atomic<uint64_t>& slot) {
    return (slot.load(std::memory_order_relaxed) & ShadowEntry::kAccessed) == 0;
  });
}

bool ShadowPageTable::ClearYoung(GfnRange range) {
  range.end = std::min(range.end, kMaxGfn + 1);
  if (range.empty()) return false;
  bool young = false;
  Walk(root_, kLevels - 1, 0, range, [&](Gfn, std::atomic<uint64_t>& slot) {
    // An atomic RMW: MarkAccessed() may set the bit concurrently (lockless).
    young |= (slot.fetch_and(~ShadowEntry::kAccessed, std::memory_order_relaxed) &
              ShadowEntry::kAccessed) != 0;
    return true;
  });
  return young;
}

void ShadowPageTable::MarkAccessed(Gfn gfn, uint64_t observed, bool dirty) {
  if (gfn > kMaxGfn || (observed & ShadowEntry::kPresent) == 0) return;
  const uint64_t bits = ShadowEntry::kAccessed | (dirty ? ShadowEntry::kDirty : 0);
  if ((observed & bits) == bits) return;
  const Table* table = root_;
  for (unsigned level = kLevels - 1; level > 0; --level) {
    // seq_cst: same walk as LookupRaw (reader side of the Dekker pair).
    const uint64_t child = table->slots[Index(gfn, level)].load(std::memory_order_seq_cst);
    if (child == 0) return;
    table = reinterpret_cast<const Table*>(child);
  }
  auto& slot = const_cast<std::atomic<uint64_t>&>(table->slots[Index(gfn, 0)]);
  // Gives up if the entry was zapped or replaced since `observed` was read; retries when
  // only its A/D bits changed (a concurrent ClearYoung), so that the bits of the access
  // being made are never lost.
  constexpr uint64_t kAgeBits = ShadowEntry::kAccessed | ShadowEntry::kDirty;
  uint64_t expected = observed;
  while (!slot.compare_exchange_weak(expected, expected | bits, std::memory_order_relaxed)) {
    if ((expected & ~kAgeBits) != (observed & ~kAgeBits) || (expected & bits) == bits) return;
  }
}

void ShadowPageTable::ReclaimRetired() {
  for (Table* table : retired_) delete table;
  retired_.clear();
}

}  // namespace mmuvisor::mmu
