// MemslotTable validation: alignment, wrap-around, guest overlap, host aliases, KVM
// limits; and translation on a valid table.
#include "vmm/memory/memslot_table.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;

GuestMemorySlot Slot(uint32_t id, uint64_t gpa, uint64_t size, uint64_t hva) {
  return GuestMemorySlot{.slot = id, .gpa = Gpa{gpa}, .size = ByteSize{size}, .hva = Hva{hva}};
}

TEST(MemslotTableTest, AcceptsDisjointSlotsAndSortsThem) {
  ASSERT_OK_AND_ASSIGN(MemslotTable table,
                       MemslotTable::Create({Slot(1, 4 * kMiB, kMiB, 0x7f0000400000),
                                             Slot(0, 0, 2 * kMiB, 0x7f0000000000)}));
  ASSERT_EQ(table.slots().size(), 2u);
  EXPECT_EQ(table.slots()[0].slot, 0u);
  EXPECT_EQ(table.slots()[1].slot, 1u);
}

TEST(MemslotTableTest, RejectsOverlappingGuestRanges) {
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0x7f0000000000),
                                    Slot(1, kMiB, 2 * kMiB, 0x7f1000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("slot=1 gpa=0x100000 size=0x200000 hva=0x7f1000000000: "
                                 "guest range overlaps memslot slot=0")));
}

TEST(MemslotTableTest, AdjacentGuestRangesDoNotOverlap) {
  // Half-open ranges: [0, 2M) and [2M, 3M) touch but do not overlap.
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0x7f0000000000),
                                    Slot(1, 2 * kMiB, kMiB, 0x7f1000000000)}),
              IsOk());
}

// Aliases (`--aliases K`): slots over the same host pages at other guest addresses, as
// KVM allows and its mmu_stress_test does. Reverse gives the lowest gpa, GpasOf all.
TEST(MemslotTableTest, AcceptsAliasesOfTheSameHostPages) {
  ASSERT_OK_AND_ASSIGN(MemslotTable table,
                       MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0x7f0000000000),
                                             Slot(1, 1024 * kMiB, 2 * kMiB, 0x7f0000000000),
                                             Slot(2, 8 * kMiB, kMiB, 0x7f0000100000)}));
  EXPECT_EQ(table.Translate(Gpa{1024 * kMiB + 16}, ByteSize{8}), Hva{0x7f0000000010});
  EXPECT_EQ(table.Reverse(Hva{0x7f0000100010}), Gpa{kMiB + 16});
  EXPECT_THAT(table.GpasOf(Hva{0x7f0000100010}),
              ::testing::ElementsAre(Gpa{kMiB + 16}, Gpa{8 * kMiB + 16},
                                     Gpa{1025 * kMiB + 16}));
  EXPECT_THAT(table.GpasOf(Hva{0x7f0000000010}),
              ::testing::ElementsAre(Gpa{16}, Gpa{1024 * kMiB + 16}));
  EXPECT_TRUE(table.GpasOf(Hva{0x7f0000200000}).empty());
}

TEST(MemslotTableTest, RejectsMisalignment) {
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0x1800, kMiB, 0x7f0000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("gpa is not page aligned")));
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, kMiB + 1, 0x7f0000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size is not page aligned")));
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, kMiB, 0x7f0000000010)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("hva is not page aligned")));
}

TEST(MemslotTableTest, RejectsWrapAround) {
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0xfffffffffff00000, 2 * kMiB, 0x7f0000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("guest range wraps around")));
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0xfffffffffff00000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("host range wraps around")));
}

TEST(MemslotTableTest, RejectsGuestRangeAboveMaxPhysAddr) {
  EXPECT_THAT(MemslotTable::Create({Slot(0, (1ull << 52) - kMiB, 2 * kMiB, 0x7f0000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("guest range ends above the limit 0x10000000000000")));
}

TEST(MemslotTableTest, RejectsZeroSizeDuplicateIdsAndKvmLimits) {
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, 0, 0x7f0000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("size is zero")));
  EXPECT_THAT(MemslotTable::Create({Slot(3, 0, kMiB, 0x7f0000000000),
                                    Slot(3, 4 * kMiB, kMiB, 0x7f1000000000)}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slot id used twice")));
  MemslotLimits limits;
  limits.max_slots = 2;
  EXPECT_THAT(MemslotTable::Create({Slot(2, 0, kMiB, 0x7f0000000000)}, limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("slot id beyond KVM's 2 slots")));
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, kMiB, 0x7f0000000000),
                                    Slot(1, 4 * kMiB, kMiB, 0x7f1000000000),
                                    Slot(2, 8 * kMiB, kMiB, 0x7f2000000000)},
                                   limits),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("3 memslots requested, KVM allows 2")));
  limits = MemslotLimits{};
  limits.max_slot_pages = 256;  // 1 MiB
  EXPECT_THAT(MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0x7f0000000000)}, limits),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("larger than KVM's 256 pages per slot")));
}

TEST(MemslotTableTest, TranslatesInsideOneSlotOnly) {
  ASSERT_OK_AND_ASSIGN(MemslotTable table,
                       MemslotTable::Create({Slot(0, 0, 2 * kMiB, 0x7f0000000000),
                                             Slot(1, 2 * kMiB, kMiB, 0x7f1000000000)}));
  EXPECT_EQ(table.Translate(Gpa{0x1234}, ByteSize{8}), Hva{0x7f0000001234});
  EXPECT_EQ(table.Translate(Gpa{2 * kMiB + 16}, ByteSize{16}), Hva{0x7f1000000010});
  // The last byte of slot 0 is fine; one more byte spans into slot 1: not contiguous.
  EXPECT_EQ(table.Translate(Gpa{2 * kMiB - 1}, ByteSize{1}), Hva{0x7f00001fffff});
  EXPECT_EQ(table.Translate(Gpa{2 * kMiB - 1}, ByteSize{2}), std::nullopt);
  EXPECT_EQ(table.Translate(Gpa{3 * kMiB}, ByteSize{1}), std::nullopt);
  EXPECT_EQ(table.Translate(Gpa{0}, ByteSize{~0ull}), std::nullopt);
  EXPECT_EQ(table.Reverse(Hva{0x7f1000000010}), Gpa{2 * kMiB + 16});
  EXPECT_EQ(table.Reverse(Hva{0x7f1000100000}), std::nullopt);
  EXPECT_EQ(table.Find(Gpa{3 * kMiB}), nullptr);
}

// RAM carved into slots (`--slots N`): a range runs on into the next slot when that slot
// continues it in guest-physical and host addresses, and stops at a gap or a jump in either.
TEST(MemslotTableTest, TranslatesAcrossSlotsThatContinueEachOther) {
  constexpr uint64_t kHva = 0x7f0000000000;
  ASSERT_OK_AND_ASSIGN(
      MemslotTable table,
      MemslotTable::Create({Slot(0, 0, kMiB, kHva), Slot(1, kMiB, kMiB, kHva + kMiB),
                            Slot(2, 2 * kMiB, kMiB, kHva + 2 * kMiB),
                            Slot(3, 3 * kMiB, kMiB, kHva + 8 * kMiB),  // host jump
                            Slot(4, 5 * kMiB, kMiB, kHva + 9 * kMiB)}));  // guest gap
  EXPECT_EQ(table.Translate(Gpa{kMiB - 8}, ByteSize{16}), Hva{kHva + kMiB - 8});
  EXPECT_EQ(table.Translate(Gpa{16}, ByteSize{3 * kMiB - 16}), Hva{kHva + 16});
  EXPECT_EQ(table.Translate(Gpa{16}, ByteSize{3 * kMiB - 15}), std::nullopt);  // into slot 3
  EXPECT_EQ(table.Translate(Gpa{3 * kMiB}, ByteSize{kMiB}), Hva{kHva + 8 * kMiB});
  EXPECT_EQ(table.Translate(Gpa{4 * kMiB - 1}, ByteSize{2}), std::nullopt);  // gap after 3
  EXPECT_EQ(table.Translate(Gpa{0}, ByteSize{~0ull}), std::nullopt);
}

}  // namespace
}  // namespace mmuvisor::vmm
