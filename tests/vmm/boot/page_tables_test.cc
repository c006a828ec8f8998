// BuildIdentityPageTables, checked by walking the built tables in software.
#include "vmm/boot/page_tables.h"

#include <sys/mman.h>

#include <cstdint>
#include <cstring>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ull << 20;
constexpr uint64_t kGiB = 1ull << 30;

// Guest RAM as a sparse anonymous mapping: only the pages the builder writes get memory.
class SparseRam {
 public:
  explicit SparseRam(uint64_t size) : size_(size) {
    void* p = mmap(nullptr, size, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    host_ = p == MAP_FAILED ? nullptr : static_cast<uint8_t*>(p);
  }
  ~SparseRam() {
    if (host_) munmap(host_, size_);
  }
  SparseRam(const SparseRam&) = delete;
  SparseRam& operator=(const SparseRam&) = delete;
  GuestRamView view() const { return GuestRamView{host_, size_}; }
  bool ok() const { return host_ != nullptr; }

 private:
  uint8_t* host_ = nullptr;
  uint64_t size_;
};

uint64_t Entry(const GuestRamView& ram, uint64_t table, uint64_t index) {
  uint64_t e;
  std::memcpy(&e, ram.At(table + 8 * index), sizeof(e));
  return e;
}

void ExpectIdentity(const GuestRamView& ram, uint64_t cr3, uint64_t gva) {
  bool user = false;
  absl::StatusOr<uint64_t> gpa = WalkPageTables(ram, cr3, gva, &user);
  ASSERT_TRUE(gpa.ok()) << "gva " << std::hex << gva << ": " << gpa.status();
  EXPECT_EQ(*gpa, gva);
  EXPECT_TRUE(user) << "gva " << std::hex << gva << " lacks the U bit somewhere";
}

class IdentityMapTest : public ::testing::TestWithParam<uint64_t> {};

TEST_P(IdentityMapTest, MapsAllRamExceptPageZero) {
  const uint64_t size = GetParam();
  SparseRam ram(size);
  ASSERT_TRUE(ram.ok());
  ASSERT_OK_AND_ASSIGN(uint64_t cr3, BuildIdentityPageTables(ram.view()));
  EXPECT_EQ(cr3, MMV_PAGE_TABLE_GPA);

  bool user = false;
  EXPECT_THAT(WalkPageTables(ram.view(), cr3, 0, &user),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("level-1 entry not present")));
  EXPECT_THAT(WalkPageTables(ram.view(), cr3, 0xfff, &user),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not present")));
  for (uint64_t gva : {uint64_t{0x1000}, uint64_t{MMV_GDT_GPA}, uint64_t{MMV_UCALL_GPA + 8},
                       uint64_t{MMV_IMAGE_GPA}, 2 * kMiB - 1, 2 * kMiB, 2 * kMiB + 0x1234,
                       size / 2, size - 4096, size - 1}) {
    if (gva < size) ExpectIdentity(ram.view(), cr3, gva);
  }
  // Every 4 KiB page in RAM translates (sampled every 64 KiB plus both ends of each 2 MiB).
  for (uint64_t gva = 0x1000; gva < size; gva += 64 * 1024) ExpectIdentity(ram.view(), cr3, gva);
  // Nothing beyond RAM is mapped.
  EXPECT_THAT(WalkPageTables(ram.view(), cr3, size, &user),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("not present")));
}

INSTANTIATE_TEST_SUITE_P(Sizes, IdentityMapTest,
                         ::testing::Values(1 * kMiB + 64 * 1024,        // below 2 MiB
                                           4 * kMiB,                    // 2 MiB multiple
                                           64 * kMiB + 4096,            // ragged 4 KiB tail
                                           kGiB + 6 * kMiB,             // crosses a PD page
                                           3 * kGiB + 2 * kMiB + 4096));  // tail in PD #3

TEST(PageTablesTest, UsesLargePagesAboveTheFirstTwoMiBAndTablesStayInTheirArea) {
  SparseRam ram(8 * kMiB);
  ASSERT_TRUE(ram.ok());
  const GuestRamView view = ram.view();
  ASSERT_OK_AND_ASSIGN(uint64_t cr3, BuildIdentityPageTables(view));
  const uint64_t pml4e = Entry(view, cr3, 0);
  ASSERT_TRUE(pml4e & kPtePresent);
  const uint64_t pdpt = pml4e & kPteAddressMask;
  const uint64_t pd = Entry(view, pdpt, 0) & kPteAddressMask;
  for (uint64_t table : {pdpt, pd}) {
    EXPECT_GE(table, MMV_PAGE_TABLE_GPA);
    EXPECT_LT(table, MMV_PAGE_TABLE_END_GPA);
  }
  // PD[0] points at a 4 KiB table (page 0 unmapped); PD[1..3] are 2 MiB pages; PD[4] absent.
  // Accessed at every level, Dirty on leaves: no page walk has to write an entry.
  constexpr uint64_t kTable = kPtePresent | kPteWritable | kPteUser | kPteAccessed;
  constexpr uint64_t kLeaf = kTable | kPteDirty;
  EXPECT_EQ(pml4e & ~kPteAddressMask, kTable);
  EXPECT_EQ(Entry(view, pdpt, 0) & ~kPteAddressMask, kTable);
  EXPECT_EQ(Entry(view, pd, 0) & ~kPteAddressMask, kTable);
  for (uint64_t i = 1; i < 4; ++i) {
    EXPECT_EQ(Entry(view, pd, i), (i * 2 * kMiB) | kLeaf | kPteLargePage);
  }
  EXPECT_EQ(Entry(view, pd, 4), 0u);
  const uint64_t pt = Entry(view, pd, 0) & kPteAddressMask;
  EXPECT_EQ(Entry(view, pt, 0), 0u);
  EXPECT_EQ(Entry(view, pt, 1), 0x1000 | kLeaf);
}

TEST(PageTablesTest, OverwritesStaleTableContents) {
  std::vector<uint8_t> bytes(4 * kMiB, 0xff);  // every "entry" looks present
  GuestRamView view{bytes.data(), bytes.size()};
  ASSERT_OK_AND_ASSIGN(uint64_t cr3, BuildIdentityPageTables(view));
  bool user = false;
  EXPECT_THAT(WalkPageTables(view, cr3, 0, &user), StatusIs(absl::StatusCode::kNotFound,
                                                            HasSubstr("not present")));
  EXPECT_THAT(WalkPageTables(view, cr3, 4 * kMiB, &user),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("level-2 entry not present")));
}

TEST(PageTablesTest, RejectsRamTooLargeForTheTableArea) {
  // The builder fails before writing, so a small buffer stands in for the huge RAM.
  std::vector<uint8_t> bytes(MMV_PAGE_TABLE_END_GPA, 0);
  GuestRamView view{bytes.data(), 256 * kGiB};
  EXPECT_THAT(BuildIdentityPageTables(view),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       HasSubstr("needs 259 table pages, the area [0x10000, 0x100000) holds 240")));
  EXPECT_EQ(bytes[MMV_PAGE_TABLE_GPA], 0);
}

TEST(PageTablesTest, RejectsBadRamSizes) {
  std::vector<uint8_t> bytes(2 * kMiB, 0);
  EXPECT_THAT(BuildIdentityPageTables(GuestRamView{bytes.data(), 2 * kMiB - 1}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 4 KiB")));
  EXPECT_THAT(BuildIdentityPageTables(GuestRamView{bytes.data(), 0}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("multiple of 4 KiB")));
  EXPECT_THAT(BuildIdentityPageTables(GuestRamView{bytes.data(), 512 * 1024}),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("does not cover the page-table area")));
}

// Windows beyond RAM (aliases, the churned spare slot) are identity mapped with 2 MiB
// pages; what lies between them and RAM stays unmapped.
TEST(PageTablesTest, MapsWindowsBeyondRam) {
  SparseRam ram(64 * kMiB);
  ASSERT_TRUE(ram.ok());
  const IdentityWindow windows[] = {{1 * kGiB, 64 * kMiB}, {4 * kGiB, 2 * kMiB}};
  ASSERT_OK_AND_ASSIGN(uint64_t cr3, BuildIdentityPageTables(ram.view(), windows));
  for (uint64_t gva : {1 * kGiB, 1 * kGiB + 0x3008, 1 * kGiB + 64 * kMiB - 8, 4 * kGiB + 0x3000,
                       64 * kMiB - 8}) {
    ExpectIdentity(ram.view(), cr3, gva);
  }
  bool user = false;
  for (uint64_t gva : {64 * kMiB, 1 * kGiB + 64 * kMiB, 4 * kGiB + 2 * kMiB, 5 * kGiB}) {
    EXPECT_THAT(WalkPageTables(ram.view(), cr3, gva, &user),
                StatusIs(absl::StatusCode::kNotFound, HasSubstr("not present")))
        << std::hex << gva;
  }
  const IdentityWindow overlapping[] = {{32 * kMiB, 2 * kMiB}};
  EXPECT_THAT(BuildIdentityPageTables(ram.view(), overlapping),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("above guest RAM")));
  const IdentityWindow misaligned[] = {{kGiB + 4096, 2 * kMiB}};
  EXPECT_THAT(BuildIdentityPageTables(ram.view(), misaligned),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("2 MiB aligned")));
}

TEST(PageTablesTest, WalkReportsTablesOutsideRam) {
  std::vector<uint8_t> bytes(2 * kMiB, 0);
  bool user = false;
  EXPECT_THAT(WalkPageTables(GuestRamView{bytes.data(), bytes.size()}, 4 * kMiB, 0x1000, &user),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("level-4 table at 0x400000")));
}

}  // namespace
}  // namespace mmuvisor::vmm
