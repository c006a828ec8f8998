#include "vmm/paging/swap_store.h"

#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/proc_counts.h"
#include "support/status_matchers.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

constexpr size_t kPage = 4096;

std::vector<uint8_t> Pattern(uint64_t page, uint8_t salt = 0) {
  std::vector<uint8_t> v(kPage);
  for (size_t i = 0; i < kPage; ++i) v[i] = static_cast<uint8_t>(page * 31 + i * 7 + salt);
  return v;
}

TEST(SwapStore, SaveThenLoadReturnsTheSameBytes) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(16, kPage));
  const auto data = Pattern(5);
  ASSERT_OK(store->Save(5, data.data()));
  EXPECT_TRUE(store->IsSaved(5));
  EXPECT_TRUE(store->IsSavedClean(5));
  EXPECT_FALSE(store->IsSaved(4));
  std::vector<uint8_t> out(kPage);
  ASSERT_OK(store->Load(5, out.data()));
  EXPECT_EQ(out, data);
  const SwapStoreStats s = store->Stats();
  EXPECT_EQ(s.saves, 1u);
  EXPECT_EQ(s.loads, 1u);
  EXPECT_EQ(s.bytes_written, kPage);
  EXPECT_EQ(s.bytes_read, kPage);
  EXPECT_EQ(store->SavedPageCount(), 1u);
}

// The batched load of fault-around: one read of a run, the verified prefix handed over,
// the first bad page's status returned. The run wraps the stripe array (250..265).
TEST(SwapStore, LoadRunIntoHandsOverTheVerifiedPrefixAndNamesTheFirstBadPage) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(300, kPage));
  for (uint64_t p = 250; p < 266; ++p) ASSERT_OK(store->Save(p, Pattern(p).data()));
  std::vector<uint8_t> scratch(16 * kPage);
  uint64_t handed = 0;
  uint64_t verified = 99;
  uint64_t first = 250;  // of the run being loaded
  auto install = [&](const void* data, uint64_t pages) {
    handed = pages;
    for (uint64_t i = 0; i < pages; ++i) {
      const auto* page = static_cast<const uint8_t*>(data) + i * kPage;
      EXPECT_EQ(std::vector<uint8_t>(page, page + kPage), Pattern(first + i)) << "page " << i;
    }
    return absl::OkStatus();
  };
  ASSERT_OK(store->LoadRunInto(250, 16, scratch.data(), install, &verified));
  EXPECT_EQ(verified, 16u);
  EXPECT_EQ(handed, 16u);
  EXPECT_EQ(store->Stats().loads, 16u);

  // A corrupted slot cuts the run: 250..252 handed over, 253 is DataLoss by name.
  const uint8_t junk = 0x5A;
  ASSERT_EQ(pwrite(store->file_descriptor(), &junk, 1, static_cast<off_t>(253 * kPage + 9)), 1);
  EXPECT_THAT(store->LoadRunInto(250, 16, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("page 253")));
  EXPECT_EQ(verified, 3u);
  EXPECT_EQ(handed, 3u);

  // A dropped page cuts it too (NotFound), and an injected read error (DataLoss for EIO).
  ASSERT_OK(store->Drop(251, 1));
  EXPECT_THAT(store->LoadRunInto(250, 3, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page 251")));
  EXPECT_EQ(verified, 1u);
  store->SetReadFaultInjection({.fail_nth = 2});
  first = 254;
  EXPECT_THAT(store->LoadRunInto(254, 4, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kDataLoss, HasSubstr("page 255")));
  EXPECT_EQ(verified, 1u);

  // Nothing handed over when the first page is bad; install's own error wins.
  handed = 99;
  EXPECT_THAT(store->LoadRunInto(251, 2, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page 251")));
  EXPECT_EQ(handed, 99u);
  EXPECT_THAT(store->LoadRunInto(
                  256, 2, scratch.data(),
                  [](const void*, uint64_t) { return absl::InternalError("install"); }, &verified),
              StatusIs(absl::StatusCode::kInternal, HasSubstr("install")));
  EXPECT_THAT(store->LoadRunInto(290, 11, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("[290, 301)")));
  EXPECT_THAT(store->LoadRunInto(0, 257, scratch.data(), install, &verified),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("more than 256")));
}

TEST(SwapStore, LoadOfAnUnsavedPageIsNotFound) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(4, kPage));
  std::vector<uint8_t> out(kPage);
  EXPECT_THAT(store->Load(2, out.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page 2 is not saved")));
}

TEST(SwapStore, PagesOutsideTheStoreAreOutOfRange) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(4, kPage));
  const auto data = Pattern(0);
  EXPECT_THAT(store->Save(4, data.data()),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("page 4")));
  EXPECT_THAT(store->Drop(3, 2), StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("[3, 5)")));
}

TEST(SwapStore, CreateRejectsBadGeometry) {
  EXPECT_THAT(SwapStore::Create(0, kPage).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("num_pages=0")));
  EXPECT_THAT(SwapStore::Create(4, 3000).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("page_size=3000")));
  // Sizes that wrap: the file (num_pages * page_size) and the tables (5 bytes a page) would
  // come out small, and the slots past them would be written out of bounds.
  for (const uint64_t pages : {uint64_t{UINT64_MAX}, uint64_t{1} << 52,
                               uint64_t{0x3333333333333334}}) {
    EXPECT_THAT(SwapStore::Create(pages, kPage).status(),
                StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("more than a file")))
        << pages;
  }
}

// LoadInto hands the caller the saved copy, or nullptr for a page the store does not hold,
// in both cases with the slot held (the page server zero-fills inside it).
TEST(SwapStore, LoadIntoHandsOverTheCopyOrNothing) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(8, kPage));
  const auto data = Pattern(2);
  ASSERT_OK(store->Save(2, data.data()));
  std::vector<uint8_t> scratch(kPage);
  std::vector<uint8_t> got;
  int nulls = 0;
  auto install = [&](const void* d) {
    if (d == nullptr) {
      ++nulls;
    } else {
      got.assign(static_cast<const uint8_t*>(d), static_cast<const uint8_t*>(d) + kPage);
    }
    return absl::OkStatus();
  };
  ASSERT_OK(store->LoadInto(2, scratch.data(), install));
  EXPECT_EQ(got, data);
  EXPECT_EQ(nulls, 0);
  ASSERT_OK(store->LoadInto(3, scratch.data(), install));
  EXPECT_EQ(nulls, 1);
  ASSERT_OK(store->Drop(2, 1));
  got.clear();
  ASSERT_OK(store->LoadInto(2, scratch.data(), install));
  EXPECT_EQ(nulls, 2);
  EXPECT_TRUE(got.empty());
  EXPECT_THAT(store->LoadInto(8, scratch.data(), install),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("page 8")));
  EXPECT_THAT(store->LoadInto(2, scratch.data(),
                              [](const void*) { return absl::AbortedError("install said no"); }),
              StatusIs(absl::StatusCode::kAborted, HasSubstr("install said no")));
}

TEST(SwapStore, CorruptedSlotIsDataLossNamingThePage) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(8, kPage));
  const auto data = Pattern(3);
  ASSERT_OK(store->Save(3, data.data()));
  const uint8_t junk = static_cast<uint8_t>(data[100] ^ 0xFF);
  ASSERT_EQ(pwrite(store->file_descriptor(), &junk, 1, 3 * kPage + 100), 1);
  std::vector<uint8_t> out(kPage);
  EXPECT_THAT(store->Load(3, out.data()),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("page 3 "), HasSubstr("checksum mismatch"))));
  EXPECT_EQ(store->Stats().checksum_failures, 1u);
}

TEST(SwapStore, FailedWriteLeavesNothingHalfRecorded) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(8, kPage));
  const auto old_data = Pattern(1, 0);
  ASSERT_OK(store->Save(1, old_data.data()));
  // The re-save of page 1 (guest wrote it) tears the slot on disk, then fails with ENOSPC.
  store->SetWriteFaultInjection({.fail_nth = 1, .error = ENOSPC, .partial = true});
  const auto new_data = Pattern(1, 99);
  EXPECT_THAT(store->Save(1, new_data.data()),
              StatusIs(absl::StatusCode::kResourceExhausted,
                       AllOf(HasSubstr("page 1"), HasSubstr("ENOSPC"), HasSubstr("2048 of 4096"))));
  // Neither the torn new copy nor the stale old one may be served.
  EXPECT_FALSE(store->IsSaved(1));
  std::vector<uint8_t> out(kPage);
  EXPECT_THAT(store->Load(1, out.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page 1")));
  const SwapStoreStats s = store->Stats();
  EXPECT_EQ(s.saves, 1u);
  EXPECT_EQ(s.save_failures, 1u);
  // The injection fired once: the next save works.
  ASSERT_OK(store->Save(1, new_data.data()));
  ASSERT_OK(store->Load(1, out.data()));
  EXPECT_EQ(out, new_data);
}

TEST(SwapStore, WriteEioIsUnavailableAndReadEioIsDataLoss) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(8, kPage));
  const auto data = Pattern(2);
  store->SetWriteFaultInjection({.fail_nth = 1, .error = EIO});
  EXPECT_THAT(store->Save(2, data.data()), StatusIs(absl::StatusCode::kUnavailable,
                                                    AllOf(HasSubstr("page 2"), HasSubstr("EIO"))));
  ASSERT_OK(store->Save(2, data.data()));
  store->SetReadFaultInjection({.fail_nth = 1, .error = EIO});
  std::vector<uint8_t> out(kPage);
  EXPECT_THAT(
      store->Load(2, out.data()),
      StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("load page 2"), HasSubstr("EIO"))));
  EXPECT_EQ(store->Stats().load_failures, 1u);
  ASSERT_OK(store->Load(2, out.data()));  // the injection fired once
  EXPECT_EQ(out, data);
}

TEST(SwapStore, ProbabilisticInjectionFailsSomeWritesAndEachFailureIsNotSaved) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(256, kPage));
  store->SetWriteFaultInjection({.probability = 0.3, .error = EIO, .seed = 42});
  int failed = 0;
  for (uint64_t p = 0; p < 256; ++p) {
    const auto data = Pattern(p);
    const absl::Status s = store->Save(p, data.data());
    EXPECT_EQ(s.ok(), store->IsSaved(p)) << "page " << p;
    if (!s.ok()) ++failed;
  }
  EXPECT_GT(failed, 0);
  EXPECT_LT(failed, 256);
  EXPECT_EQ(store->Stats().save_failures, static_cast<uint64_t>(failed));
  EXPECT_EQ(store->SavedPageCount(), static_cast<uint64_t>(256 - failed));
  store->ClearFaultInjection();
  std::vector<uint8_t> out(kPage);
  for (uint64_t p = 0; p < 256; ++p) {
    if (!store->IsSaved(p)) continue;
    ASSERT_OK(store->Load(p, out.data()));
    EXPECT_EQ(out, Pattern(p)) << "page " << p;
  }
}

TEST(SwapStore, MarkDirtyClearsCleanButKeepsTheCopy) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(8, kPage));
  const auto data = Pattern(6);
  ASSERT_OK(store->Save(6, data.data()));
  store->MarkDirty(4, 4);
  EXPECT_TRUE(store->IsSaved(6));
  EXPECT_FALSE(store->IsSavedClean(6));
  ASSERT_OK(store->Save(6, data.data()));
  EXPECT_TRUE(store->IsSavedClean(6));
}

TEST(SwapStore, DropForgetsThePagesAndReturnsTheSpace) {
  ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(64, kPage));
  for (uint64_t p = 0; p < 64; ++p) ASSERT_OK(store->Save(p, Pattern(p).data()));
  struct stat before {};
  ASSERT_EQ(fstat(store->file_descriptor(), &before), 0);
  ASSERT_OK(store->Drop(0, 64));
  struct stat after {};
  ASSERT_EQ(fstat(store->file_descriptor(), &after), 0);
  EXPECT_EQ(store->SavedPageCount(), 0u);
  EXPECT_EQ(store->Stats().drops, 64u);
  EXPECT_LT(after.st_blocks, before.st_blocks);
  EXPECT_EQ(after.st_size, before.st_size);
  std::vector<uint8_t> out(kPage);
  EXPECT_THAT(store->Load(10, out.data()),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("page 10")));
}

TEST(SwapStore, FileInAChosenDirectoryIsInvisibleAndGoneAfterDestruction) {
  char tmpl[] = "/tmp/mmuvisor-swap-test-XXXXXX";
  ASSERT_NE(mkdtemp(tmpl), nullptr);
  const std::string dir = tmpl;
  {
    ASSERT_OK_AND_ASSIGN(auto store, SwapStore::Create(32, kPage, {.directory = dir}));
    ASSERT_OK(store->Save(31, Pattern(31).data()));
    EXPECT_EQ(testing::CountDirEntries(dir.c_str()), 0);  // O_TMPFILE or unlinked: no name on disk
  }
  EXPECT_EQ(testing::CountDirEntries(dir.c_str()), 0);
  EXPECT_EQ(rmdir(dir.c_str()), 0) << std::strerror(errno);
}

TEST(SwapStore, MissingDirectoryIsReportedWithItsPath) {
  EXPECT_THAT(SwapStore::Create(4, kPage, {.directory = "/nonexistent/mmuvisor"}).status(),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("/nonexistent/mmuvisor")));
}

}  // namespace
}  // namespace mmuvisor::vmm
