// ShadowPageTable: mapping, lookup, zapping (and freeing empty tables), iteration, aging,
// and that memory follows what is mapped.
#include "mmu/shadow_page_table.h"

#include <memory>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

ShadowEntry EntryFor(Gfn gfn, bool writable = true) {
  return ShadowEntry{(gfn + 1) << kPageShift, writable, false, false};
}

TEST(ShadowPageTableTest, MapThenLookup) {
  ShadowPageTable spt;
  ASSERT_THAT(spt.Map(7, EntryFor(7)), IsOk());
  ASSERT_THAT(spt.Map(kMaxGfn, EntryFor(1, false)), IsOk());
  EXPECT_EQ(spt.Lookup(7), EntryFor(7));
  EXPECT_EQ(spt.Lookup(kMaxGfn), EntryFor(1, false));
  EXPECT_EQ(spt.Lookup(8), std::nullopt);
  EXPECT_EQ(spt.Lookup(kMaxGfn + 1), std::nullopt);
  EXPECT_EQ(spt.mapped_count(), 2u);
  // Replacing an entry does not count twice.
  ASSERT_THAT(spt.Map(7, EntryFor(9)), IsOk());
  EXPECT_EQ(spt.Lookup(7), EntryFor(9));
  EXPECT_EQ(spt.mapped_count(), 2u);
}

TEST(ShadowPageTableTest, MapRejectsBadInput) {
  ShadowPageTable spt;
  EXPECT_THAT(spt.Map(kMaxGfn + 1, EntryFor(1)),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("beyond 2^36")));
  EXPECT_THAT(spt.Map(1, ShadowEntry{0x1001, true, false, false}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("not page aligned")));
  EXPECT_THAT(spt.Map(1, ShadowEntry{}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("null")));
  EXPECT_EQ(spt.mapped_count(), 0u);
}

TEST(ShadowPageTableTest, MemoryIsProportionalToWhatIsMapped) {
  ShadowPageTable spt;
  EXPECT_EQ(spt.table_count(), 1u);  // the root
  ASSERT_THAT(spt.Map(0, EntryFor(0)), IsOk());
  EXPECT_EQ(spt.table_count(), 4u);  // one table per level
  ASSERT_THAT(spt.Map(511, EntryFor(511)), IsOk());
  EXPECT_EQ(spt.table_count(), 4u);  // same leaf
  ASSERT_THAT(spt.Map(512, EntryFor(512)), IsOk());
  EXPECT_EQ(spt.table_count(), 5u);  // new leaf
  ASSERT_THAT(spt.Map(Gfn{1} << 27, EntryFor(1)), IsOk());
  EXPECT_EQ(spt.table_count(), 8u);  // new path below the root
}

TEST(ShadowPageTableTest, ZapRangeRemovesOnlyTheRangeAndFreesEmptyTables) {
  ShadowPageTable spt;
  for (Gfn gfn = 0; gfn < 2048; ++gfn) ASSERT_THAT(spt.Map(gfn, EntryFor(gfn)), IsOk());
  EXPECT_EQ(spt.table_count(), 3u + 4u);
  EXPECT_EQ(spt.ZapRange({10, 1024}), 1014u);
  EXPECT_EQ(spt.mapped_count(), 2048u - 1014u);
  EXPECT_EQ(spt.Lookup(9), EntryFor(9));
  EXPECT_EQ(spt.Lookup(10), std::nullopt);
  EXPECT_EQ(spt.Lookup(1023), std::nullopt);
  EXPECT_EQ(spt.Lookup(1024), EntryFor(1024));
  // Leaf [512, 1024) became empty: unlinked and retired, then freed.
  EXPECT_EQ(spt.table_count(), 6u);
  EXPECT_EQ(spt.retired_count(), 1u);
  spt.ReclaimRetired();
  EXPECT_EQ(spt.retired_count(), 0u);
  // Zapping everything frees every table but the root.
  EXPECT_EQ(spt.ZapRange({0, kMaxGfn + 1}), 2048u - 1014u);
  spt.ReclaimRetired();
  EXPECT_EQ(spt.table_count(), 1u);
  EXPECT_EQ(spt.mapped_count(), 0u);
  EXPECT_EQ(spt.ZapRange({0, ~Gfn{0}}), 0u);
}

TEST(ShadowPageTableTest, ZapRangeWorksAcrossLevelBoundaries) {
  ShadowPageTable spt;
  const std::vector<Gfn> gfns = {0, (Gfn{1} << 18) - 1, Gfn{1} << 18, (Gfn{1} << 27) + 5,
                                 kMaxGfn};
  for (Gfn gfn : gfns) ASSERT_THAT(spt.Map(gfn, EntryFor(gfn)), IsOk());
  EXPECT_EQ(spt.ZapRange({(Gfn{1} << 18) - 1, (Gfn{1} << 27) + 6}), 3u);
  EXPECT_EQ(spt.Lookup(0), EntryFor(0));
  EXPECT_EQ(spt.Lookup(kMaxGfn), EntryFor(kMaxGfn));
  EXPECT_EQ(spt.mapped_count(), 2u);
  EXPECT_EQ(spt.ZapRange({5, 5}), 0u);  // empty range
}

TEST(ShadowPageTableTest, ForEachVisitsPresentEntriesInOrder) {
  ShadowPageTable spt;
  const std::vector<Gfn> gfns = {3, 600, 70000, Gfn{1} << 30};
  for (Gfn gfn : gfns) ASSERT_THAT(spt.Map(gfn, EntryFor(gfn)), IsOk());
  std::vector<Gfn> seen;
  spt.ForEach({0, kMaxGfn + 1}, [&](Gfn gfn, const ShadowEntry& entry) {
    EXPECT_EQ(entry, EntryFor(gfn));
    seen.push_back(gfn);
  });
  EXPECT_EQ(seen, gfns);
  seen.clear();
  spt.ForEach({4, 70001}, [&](Gfn gfn, const ShadowEntry&) { seen.push_back(gfn); });
  EXPECT_EQ(seen, (std::vector<Gfn>{600, 70000}));
}

TEST(ShadowPageTableTest, AgingReportsAndClearsAccessedBits) {
  ShadowPageTable spt;
  ASSERT_THAT(spt.Map(1, EntryFor(1)), IsOk());
  ASSERT_THAT(spt.Map(2, EntryFor(2)), IsOk());
  EXPECT_FALSE(spt.TestYoung({0, 10}));
  spt.MarkAccessed(2, spt.LookupRaw(2), /*dirty=*/true);
  EXPECT_TRUE(spt.Lookup(2)->accessed);
  EXPECT_TRUE(spt.Lookup(2)->dirty);
  EXPECT_FALSE(spt.TestYoung({0, 2}));
  EXPECT_TRUE(spt.TestYoung({0, 10}));
  EXPECT_TRUE(spt.ClearYoung({0, 10}));
  EXPECT_FALSE(spt.Lookup(2)->accessed);
  EXPECT_TRUE(spt.Lookup(2)->dirty);  // aging leaves dirty alone
  EXPECT_FALSE(spt.ClearYoung({0, 10}));
}

TEST(ShadowPageTableTest, MarkAccessedNeverResurrectsAZappedEntry) {
  ShadowPageTable spt;
  ASSERT_THAT(spt.Map(1, EntryFor(1)), IsOk());
  const uint64_t observed = spt.LookupRaw(1);
  spt.ZapRange({1, 2});
  spt.MarkAccessed(1, observed, /*dirty=*/false);
  EXPECT_EQ(spt.LookupRaw(1), 0u);
  ASSERT_THAT(spt.Map(1, EntryFor(5)), IsOk());
  spt.MarkAccessed(1, observed, /*dirty=*/false);  // stale observation: no effect
  EXPECT_FALSE(spt.Lookup(1)->accessed);
}

// A write's Translate observed the entry young and clean; aging clears A before its
// MarkAccessed: the entry is the same mapping, so the write's A and D must still land.
TEST(ShadowPageTableTest, MarkAccessedAfterAConcurrentClearYoungKeepsTheWritesBits) {
  ShadowPageTable spt;
  ASSERT_THAT(spt.Map(3, EntryFor(3)), IsOk());
  spt.MarkAccessed(3, spt.LookupRaw(3), /*dirty=*/false);
  const uint64_t observed = spt.LookupRaw(3);  // present, writable, A, not D
  ASSERT_TRUE(spt.ClearYoung({3, 4}));
  spt.MarkAccessed(3, observed, /*dirty=*/true);
  EXPECT_TRUE(spt.Lookup(3)->accessed);
  EXPECT_TRUE(spt.Lookup(3)->dirty);
}

// The per-thread directory cache (shadow_page_table.h): each test fills it with a lookup,
// changes the table, and checks the next lookup sees the change.

TEST(ShadowPageTableTest, DirectoryCacheIsInvalidatedByAZapThatUnlinksTheDirectory) {
  ShadowPageTable spt;
  const Gfn gfn = (Gfn{3} << 18) + 7;  // directory 3
  ASSERT_THAT(spt.Map(gfn, EntryFor(gfn)), IsOk());
  EXPECT_EQ(spt.Lookup(gfn), EntryFor(gfn));  // caches directory 3
  EXPECT_EQ(spt.ZapRange({gfn, gfn + 1}), 1u);  // unlinks leaf, directory, level 2
  EXPECT_EQ(spt.retired_count(), 3u);  // not reclaimed: the old directory stays readable
  EXPECT_EQ(spt.Lookup(gfn), std::nullopt);
  ASSERT_THAT(spt.Map(gfn, EntryFor(gfn + 100)), IsOk());  // a new directory
  // With a stale cache this would read the retired (all-zero) directory: a miss forever.
  EXPECT_EQ(spt.Lookup(gfn), EntryFor(gfn + 100));
  spt.ReclaimRetired();
  EXPECT_EQ(spt.Lookup(gfn), EntryFor(gfn + 100));
}

TEST(ShadowPageTableTest, DirectoryCacheSeesZapsAndMapsInsideALiveDirectory) {
  ShadowPageTable spt;
  ASSERT_THAT(spt.Map(0, EntryFor(0)), IsOk());
  ASSERT_THAT(spt.Map(1, EntryFor(1)), IsOk());
  EXPECT_EQ(spt.Lookup(1), EntryFor(1));   // caches directory 0
  EXPECT_EQ(spt.ZapRange({1, 2}), 1u);     // the directory stays linked
  EXPECT_EQ(spt.Lookup(1), std::nullopt);  // a zapped entry is never returned
  EXPECT_EQ(spt.Lookup(5000), std::nullopt);
  ASSERT_THAT(spt.Map(5000, EntryFor(5000)), IsOk());  // new leaf in the cached directory
  EXPECT_EQ(spt.Lookup(5000), EntryFor(5000));
  const Gfn far = Gfn{9} << 18;
  EXPECT_EQ(spt.Lookup(far), std::nullopt);  // no directory: nothing cached
  ASSERT_THAT(spt.Map(far, EntryFor(far)), IsOk());
  EXPECT_EQ(spt.Lookup(far), EntryFor(far));
  EXPECT_EQ(spt.Lookup(kMaxGfn + 1), std::nullopt);
  EXPECT_EQ(spt.Lookup(~Gfn{0}), std::nullopt);
}

TEST(ShadowPageTableTest, DirectoryCacheNeverServesAnotherTable) {
  auto first = std::make_unique<ShadowPageTable>();
  ShadowPageTable second;
  ASSERT_THAT(first->Map(4, EntryFor(4)), IsOk());
  ASSERT_THAT(second.Map(4, EntryFor(40)), IsOk());
  for (int i = 0; i < 3; ++i) {  // alternate: same key, different tables
    EXPECT_EQ(first->Lookup(4), EntryFor(4));
    EXPECT_EQ(second.Lookup(4), EntryFor(40));
  }
  // A table created after another was destroyed (perhaps at its address) starts with a
  // fresh token; under ASan a stale cache here is a heap-use-after-free.
  EXPECT_EQ(first->Lookup(4), EntryFor(4));
  first.reset();
  auto third = std::make_unique<ShadowPageTable>();
  EXPECT_EQ(third->Lookup(4), std::nullopt);
  ASSERT_THAT(third->Map(4, EntryFor(44)), IsOk());
  EXPECT_EQ(third->Lookup(4), EntryFor(44));
}

}  // namespace
}  // namespace mmuvisor::mmu
