// PageServer tests: host threads play the guest by touching registered memory, which is the
// real userfaultfd fault path (no KVM needed). Each test runs on both backings.
#include "vmm/paging/page_server.h"

#include <dirent.h>
#include <poll.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "notifier/base/mutex.h"
#include "support/proc_counts.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/paging/guest_ram.h"
#include "vmm/paging/swap_store.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::AllOf;
using ::testing::HasSubstr;

uint8_t PatternByte(uint64_t page, size_t i) {
  return static_cast<uint8_t>(page * 37 + i * 11 + 1);
}

void FillPattern(uint8_t* p, uint64_t page, size_t size) {
  for (size_t i = 0; i < size; ++i) p[i] = PatternByte(page, i);
}

bool HasPattern(const uint8_t* p, uint64_t page, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != PatternByte(page, i)) return false;
  }
  return true;
}

bool IsZero(const uint8_t* p, size_t size) {
  for (size_t i = 0; i < size; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

// Reads a guest page through the kernel (copy_from_user), as KVM's GUP does: a failed access
// comes back as EFAULT instead of SIGSEGV. Returns 0 or the errno.
int KernelRead(const uint8_t* page, size_t size, std::vector<uint8_t>* out) {
  const int fd = memfd_create("kernel-read", MFD_CLOEXEC);
  if (fd < 0) return errno;
  const ssize_t n = pwrite(fd, page, size, 0);
  int e = n == static_cast<ssize_t>(size) ? 0 : (n < 0 ? errno : EIO);
  if (e == 0) {
    out->resize(size);
    if (pread(fd, out->data(), size, 0) != static_cast<ssize_t>(size)) e = EIO;
  }
  close(fd);
  return e;
}

// Waits until the userfaultfd has a message queued (a thread is blocked in a fault).
bool WaitForQueuedFault(int uffd) {
  for (int i = 0; i < 3000; ++i) {
    pollfd p{uffd, POLLIN, 0};
    if (poll(&p, 1, 10) == 1) return true;
  }
  return false;
}

// Waits (bounded, 10 s) for handler-side bookkeeping that is done after the faulting or
// discarding thread resumed (remove events, fault-around, latency samples).
template <typename Pred>
bool Eventually(Pred pred) {
  for (int i = 0; i < 10000 && !pred(); ++i) usleep(1000);
  return pred();
}

class FailureRecorder {
 public:
  PageServerFailureCallback Callback() {
    return [this](const absl::Status& s) {
      MutexLock lock(&mu_);
      ++calls_;
      status_ = s;
    };
  }
  int calls() {
    MutexLock lock(&mu_);
    return calls_;
  }
  absl::Status status() {
    MutexLock lock(&mu_);
    return status_;
  }

 private:
  Mutex mu_;
  int calls_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Status status_ ABSL_GUARDED_BY(mu_);
};

// The one-page-per-fault server most tests count faults with; the default (fault-around on)
// has its own tests below.
PageServerOptions OnePage() {
  PageServerOptions o;
  o.fault_around_pages = 0;
  return o;
}

class PageServerTest : public ::testing::TestWithParam<MemoryBacking> {
 protected:
  void Start(uint64_t pages, PageServerOptions options = OnePage(),
             SwapStoreOptions store_options = {}) {
    ASSERT_OK_AND_ASSIGN(ram_, GuestRam::Create(pages * PageSize(), GetParam()));
    ASSERT_OK_AND_ASSIGN(store_, SwapStore::Create(pages, PageSize(), store_options));
    options.on_failure = failures_.Callback();
    ASSERT_OK_AND_ASSIGN(server_, PageServer::Start({ram_->base(), pages, PageSize()}, store_.get(),
                                                    std::move(options)));
  }
  static size_t PageSize() { return static_cast<size_t>(sysconf(_SC_PAGESIZE)); }
  uint8_t* Page(uint64_t p) { return ram_->PageAddress(p); }

  // What the HostAddressSpace's reclaim does: save each page, discard only the saved ones.
  // Returns how many pages could not be saved (they stay resident).
  int Reclaim(uint64_t first, uint64_t count) {
    int kept = 0;
    for (uint64_t p = first; p < first + count; ++p) {
      if (!store_->Save(p, Page(p)).ok()) {
        ++kept;
        continue;
      }
      EXPECT_OK(ram_->Discard(p, 1));
    }
    return kept;
  }

  std::unique_ptr<GuestRam> ram_;
  std::unique_ptr<SwapStore> store_;
  FailureRecorder failures_;
  std::unique_ptr<PageServer> server_;  // destroyed first
};

TEST_P(PageServerTest, SaveDiscardTouchReturnsTheSavedDataAsASwapIn) {
  Start(8);
  for (uint64_t p = 0; p < 8; ++p) FillPattern(Page(p), p, PageSize());
  EXPECT_EQ(server_->Stats().zero_fills, 8u);  // first touches
  ASSERT_EQ(Reclaim(0, 8), 0);
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 8));
  EXPECT_EQ(resident, std::vector<uint8_t>(8, 0));
  for (uint64_t p = 0; p < 8; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << "page " << p;
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.swap_ins, 8u);
  EXPECT_EQ(s.faults, 16u);
  EXPECT_TRUE(Eventually([&] { return server_->Stats().removed_pages == 8; }));
  EXPECT_EQ(server_->Stats().remove_events, 8u);
  EXPECT_EQ(s.failures, 0u);
  EXPECT_TRUE(store_->IsSavedClean(3));  // swap-in installs the saved copy
  ASSERT_OK_AND_ASSIGN(resident, server_->Residency(0, 8));
  EXPECT_EQ(resident, std::vector<uint8_t>(8, 1));
  EXPECT_TRUE(Eventually([&] { return server_->FaultLatency().count == 16; }));
}

TEST_P(PageServerTest, NeverSavedPageReadsZero) {
  Start(4);
  EXPECT_TRUE(IsZero(Page(2), PageSize()));
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.faults, 1u);
  EXPECT_EQ(s.zero_fills, 1u);
  EXPECT_EQ(s.swap_ins, 0u);
}

TEST_P(PageServerTest, DiscardWithTheStoreDroppedReadsZeroAgain) {
  Start(4);
  FillPattern(Page(1), 1, PageSize());
  ASSERT_EQ(Reclaim(1, 1), 0);
  ASSERT_TRUE(HasPattern(Page(1), 1, PageSize()));
  // Balloon discard: drop the store copy first, then the page.
  ASSERT_OK(store_->Drop(1, 1));
  ASSERT_OK(ram_->Discard(1, 1));
  EXPECT_TRUE(IsZero(Page(1), PageSize()));
  EXPECT_TRUE(Eventually([&] { return server_->Stats().remove_events == 2; }));
}

TEST_P(PageServerTest, CorruptedStoreIsReportedWithThePageAndNeverReadsWrongData) {
  Start(8);
  FillPattern(Page(3), 3, PageSize());
  FillPattern(Page(4), 4, PageSize());
  ASSERT_EQ(Reclaim(3, 2), 0);
  const uint8_t junk = 0x5A;
  ASSERT_EQ(pwrite(store_->file_descriptor(), &junk, 1, static_cast<off_t>(3 * PageSize() + 17)),
            1);

  std::vector<uint8_t> got;
  EXPECT_EQ(KernelRead(Page(3), PageSize(), &got), EFAULT);
  EXPECT_EQ(failures_.calls(), 1);
  EXPECT_THAT(failures_.status(),
              StatusIs(absl::StatusCode::kDataLoss,
                       AllOf(HasSubstr("page 3 "), HasSubstr("checksum mismatch"))));
  EXPECT_THAT(server_->failure(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("page 3 ")));
  EXPECT_EQ(server_->Stats().failures, 1u);
  // The healthy neighbour is still served correctly.
  ASSERT_EQ(KernelRead(Page(4), PageSize(), &got), 0);
  EXPECT_TRUE(HasPattern(got.data(), 4, PageSize()));
}

TEST_P(PageServerTest, OnFailureIsCalledOnceAndTheFirstErrorIsKept) {
  Start(4, {.handler_threads = 2});
  for (uint64_t p = 0; p < 2; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 2), 0);
  const uint8_t junk = 0x5A;
  for (uint64_t p = 0; p < 2; ++p) {
    ASSERT_EQ(pwrite(store_->file_descriptor(), &junk, 1, static_cast<off_t>(p * PageSize())), 1);
  }
  std::vector<uint8_t> got;
  EXPECT_EQ(KernelRead(Page(0), PageSize(), &got), EFAULT);
  EXPECT_EQ(KernelRead(Page(1), PageSize(), &got), EFAULT);
  EXPECT_EQ(server_->Stats().failures, 2u);
  EXPECT_EQ(failures_.calls(), 1);
  EXPECT_THAT(server_->failure(), StatusIs(absl::StatusCode::kDataLoss, HasSubstr("page 0 ")));
}

TEST_P(PageServerTest, StoreReadErrorStopsTheFaultWithEfaultNotZeros) {
  Start(4);
  FillPattern(Page(2), 2, PageSize());
  ASSERT_EQ(Reclaim(2, 1), 0);
  store_->SetReadFaultInjection({.fail_nth = 1, .error = EIO});
  std::vector<uint8_t> got;
  EXPECT_EQ(KernelRead(Page(2), PageSize(), &got), EFAULT);
  EXPECT_THAT(server_->failure(),
              StatusIs(absl::StatusCode::kDataLoss, AllOf(HasSubstr("page 2 "), HasSubstr("EIO"))));
  EXPECT_EQ(failures_.calls(), 1);
  // The saved copy is intact: nothing was lost, the page was only made inaccessible.
  std::vector<uint8_t> copy(PageSize());
  ASSERT_OK(store_->Load(2, copy.data()));
  EXPECT_TRUE(HasPattern(copy.data(), 2, PageSize()));
}

TEST_P(PageServerTest, FailingStoreLosesNothing) {
  constexpr uint64_t kPages = 64;
  Start(kPages);
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(Page(p), p, PageSize());
  store_->SetWriteFaultInjection({.fail_nth = 5, .error = ENOSPC, .partial = true});
  EXPECT_EQ(Reclaim(0, kPages / 2), 1);
  store_->SetWriteFaultInjection({.probability = 0.25, .error = EIO, .seed = 7});
  const int kept = Reclaim(kPages / 2, kPages / 2);
  EXPECT_GT(kept, 0);
  EXPECT_FALSE(store_->IsSaved(4));
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(4, 1));
  EXPECT_EQ(resident[0], 1);  // the page whose save failed stayed resident
  store_->ClearFaultInjection();
  for (uint64_t p = 0; p < kPages; ++p)
    EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << "page " << p;
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.swap_ins, kPages - 1 - static_cast<uint64_t>(kept));
  EXPECT_EQ(s.failures, 0u);
  EXPECT_EQ(store_->Stats().save_failures, 1u + static_cast<uint64_t>(kept));
}

TEST_P(PageServerTest, RemoveEventsCoverTheDiscardedRange) {
  Start(16);
  for (uint64_t p = 0; p < 16; ++p) Page(p)[0] = 1;
  ASSERT_OK(ram_->Discard(4, 8));
  EXPECT_TRUE(Eventually([&] { return server_->Stats().remove_events == 1; }));
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.remove_events, 1u);
  EXPECT_EQ(s.removed_pages, 8u);
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 16));
  for (uint64_t p = 0; p < 16; ++p) EXPECT_EQ(resident[p], p < 4 || p >= 12 ? 1 : 0) << p;
  EXPECT_EQ(Page(5)[0], 0);  // never saved: zeros
}

TEST_P(PageServerTest, FaultAroundBringsBackTheFollowingSavedPages) {
  Start(16, {.fault_around_pages = 4});
  for (uint64_t p = 0; p < 16; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 16), 0);
  ASSERT_OK(store_->Drop(3, 1));  // page 3 is not saved: fault-around leaves it alone
  ASSERT_OK(ram_->Discard(3, 1));
  const uint64_t faults_before = server_->Stats().faults;
  EXPECT_TRUE(HasPattern(Page(0), 0, PageSize()));
  EXPECT_TRUE(Eventually([&] { return server_->Stats().fault_around_pages == 3; }));  // 1, 2, 4
  EXPECT_EQ(server_->Stats().faults, faults_before + 1);
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 6));
  EXPECT_EQ(resident, (std::vector<uint8_t>{1, 1, 1, 0, 1, 0}));
  EXPECT_TRUE(HasPattern(Page(1), 1, PageSize()));
  EXPECT_TRUE(HasPattern(Page(4), 4, PageSize()));
  EXPECT_EQ(server_->Stats().faults, faults_before + 1);  // no fault for 1, 2, 4
}

TEST_P(PageServerTest, DefaultFaultAroundBringsTheClusterWithOneFault) {
  Start(64, PageServerOptions{});
  ASSERT_GT(kDefaultFaultAroundPages, 0u);
  for (uint64_t p = 0; p < 64; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 64), 0);
  const uint64_t faults_before = server_->Stats().faults;
  const uint64_t cluster = 1 + kDefaultFaultAroundPages;
  EXPECT_TRUE(HasPattern(Page(0), 0, PageSize()));
  PageServerStats s = server_->Stats();
  // Counted before the one wake: nothing to wait for.
  EXPECT_EQ(s.fault_around_pages, cluster - 1);
  EXPECT_EQ(s.swap_ins, 1u);
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, cluster + 1));
  std::vector<uint8_t> want(cluster + 1, 1);
  want.back() = 0;
  EXPECT_EQ(resident, want);
  for (uint64_t p = 1; p < cluster; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << p;
  EXPECT_EQ(server_->Stats().faults, faults_before + 1);  // the cluster arrived with page 0
  EXPECT_EQ(store_->Stats().loads, cluster);              // every page checksummed
}

// The ramp: each fault on the page right after the previous cluster doubles the next one,
// up to fault_around_max_pages + 1; a fault anywhere else starts again at 16.
TEST_P(PageServerTest, ASequentialStreamsClusterDoublesUpToTheMaxAndAScatteredFaultStartsOver) {
  constexpr uint64_t kPages = 512;
  Start(kPages, {.fault_around_pages = 15, .fault_around_max_pages = 63});
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, kPages), 0);
  const uint64_t faults_before = server_->Stats().faults;
  const uint64_t sequential_before = server_->Stats().sequential_faults;  // none: fills
  auto resident_run = [&](uint64_t first, uint64_t n) {  // every page of [first, first + n)
    absl::StatusOr<std::vector<uint8_t>> r = server_->Residency(0, kPages);
    if (!r.ok()) return false;
    for (uint64_t p = 0; p < kPages; ++p) {
      if (p >= first && p < first + n && (*r)[p] != 1) return false;
    }
    return true;
  };
  // 0 (cold): 16 pages; 16 continues: 32; 48: 64; 112: 64 again (the max).
  const std::vector<std::pair<uint64_t, uint64_t>> stream = {{0, 16}, {16, 32}, {48, 64},
                                                             {112, 64}};
  for (const auto& [page, cluster] : stream) {
    EXPECT_TRUE(HasPattern(Page(page), page, PageSize())) << page;
    EXPECT_TRUE(resident_run(page, cluster)) << page;
    ASSERT_OK_AND_ASSIGN(auto next, server_->Residency(page + cluster, 1));
    EXPECT_EQ(next[0], 0) << "the cluster of " << page << " went past " << cluster << " pages";
  }
  EXPECT_EQ(server_->Stats().faults, faults_before + stream.size());
  EXPECT_EQ(server_->Stats().sequential_faults, sequential_before + stream.size() - 1);
  // A fault elsewhere is not part of the stream: 16 pages, then 16 again somewhere else.
  EXPECT_TRUE(HasPattern(Page(400), 400, PageSize()));
  EXPECT_TRUE(resident_run(400, 16));
  ASSERT_OK_AND_ASSIGN(auto after400, server_->Residency(416, 1));
  EXPECT_EQ(after400[0], 0);
  EXPECT_TRUE(HasPattern(Page(300), 300, PageSize()));
  ASSERT_OK_AND_ASSIGN(auto after300, server_->Residency(316, 1));
  EXPECT_EQ(after300[0], 0);
  EXPECT_EQ(server_->Stats().sequential_faults, sequential_before + stream.size() - 1);
  for (uint64_t p = 0; p < 176; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << p;
  EXPECT_EQ(server_->Stats().faults, faults_before + stream.size() + 2);  // no more faults
}

TEST_P(PageServerTest, WithTheMaxAtTheBaseEveryClusterIsTheBase) {
  Start(64, {.fault_around_pages = 7, .fault_around_max_pages = 7});
  for (uint64_t p = 0; p < 64; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 64), 0);
  const uint64_t faults_before = server_->Stats().faults;
  for (uint64_t p = 0; p < 64; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << p;
  EXPECT_EQ(server_->Stats().faults, faults_before + 8);
  EXPECT_EQ(server_->Stats().sequential_faults, 0u);
}

TEST_P(PageServerTest, FaultAroundNeverInstallsAPageTheFilterRefusesOrTheStoreLacks) {
  // Pages 4..7 stand for pages under an open invalidation window; page 10 is not saved.
  std::atomic<int> filter_calls{0};
  Start(32, {.fault_around_pages = 15, .fault_around_filter = [&](uint64_t first, uint64_t n) {
               filter_calls.fetch_add(1);
               return first + n <= 4 || first >= 8;
             }});
  for (uint64_t p = 0; p < 32; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 32), 0);
  ASSERT_OK(store_->Drop(10, 1));
  ASSERT_OK(ram_->Discard(10, 1));
  EXPECT_TRUE(HasPattern(Page(0), 0, PageSize()));
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 17));
  EXPECT_EQ(resident, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0}));
  PageServerStats s = server_->Stats();
  EXPECT_EQ(s.fault_around_skipped, 4u);
  EXPECT_EQ(s.fault_around_pages, 10u);  // 1-3, 8, 9, 11-15
  EXPECT_GT(filter_calls.load(), 1);     // the cluster, then page by page
  // The refused and the missing pages are served by their own faults.
  EXPECT_TRUE(HasPattern(Page(5), 5, PageSize()));
  EXPECT_TRUE(IsZero(Page(10), PageSize()));
  EXPECT_EQ(server_->Stats().failures, 0u);
}

// An owner's mprotect splits the range into several mappings; UFFDIO_COPY of a run must
// stay inside one, so a run across the split is copied page by page (ENOENT otherwise).
TEST_P(PageServerTest, FaultAroundRunAcrossAMappingSplitStillInstallsEveryPage) {
  Start(16, {.fault_around_pages = 15});
  for (uint64_t p = 0; p < 16; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 16), 0);
  ASSERT_EQ(mprotect(Page(6), 2 * PageSize(), PROT_READ), 0);
  EXPECT_TRUE(HasPattern(Page(0), 0, PageSize()));
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 16));
  EXPECT_EQ(resident, std::vector<uint8_t>(16, 1));
  EXPECT_EQ(server_->Stats().failures, 0u);
  for (uint64_t p = 1; p < 16; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << p;
  ASSERT_EQ(mprotect(Page(6), 2 * PageSize(), PROT_READ | PROT_WRITE), 0);
}

TEST_P(PageServerTest, FaultAroundLeavesACorruptNeighbourToItsOwnFault) {
  Start(16, {.fault_around_pages = 7});
  for (uint64_t p = 0; p < 16; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 16), 0);
  const uint8_t junk = 0x5A;
  ASSERT_EQ(pwrite(store_->file_descriptor(), &junk, 1, static_cast<off_t>(3 * PageSize() + 5)), 1);
  EXPECT_TRUE(HasPattern(Page(0), 0, PageSize()));  // its run is cut at 3, then resumes
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(0, 9));
  EXPECT_EQ(resident, (std::vector<uint8_t>{1, 1, 1, 0, 1, 1, 1, 1, 0}));
  EXPECT_EQ(server_->Stats().failures, 0u);
  std::vector<uint8_t> got;
  EXPECT_EQ(KernelRead(Page(3), PageSize(), &got), EFAULT);  // never the wrong data
  EXPECT_THAT(server_->failure(), StatusIs(absl::StatusCode::kDataLoss,
                                           AllOf(HasSubstr("page 3"), HasSubstr("checksum"))));
}

TEST_P(PageServerTest, FaultAroundZeroFillsAnUnsavedFaultingPageAndBringsItsNeighbours) {
  Start(16, {.fault_around_pages = 3});
  for (uint64_t p = 0; p < 16; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 16), 0);
  ASSERT_OK(store_->Drop(4, 1));
  ASSERT_OK(ram_->Discard(4, 1));
  EXPECT_TRUE(IsZero(Page(4), PageSize()));
  ASSERT_OK_AND_ASSIGN(auto resident, server_->Residency(4, 5));
  EXPECT_EQ(resident, (std::vector<uint8_t>{1, 1, 1, 1, 0}));
  EXPECT_TRUE(HasPattern(Page(7), 7, PageSize()));
}

// Threads blocked on pages of one cluster are all woken by the cluster's one UFFDIO_WAKE: the
// handler is held inside the first fault (in the filter) while the others queue up; a wake
// removes a waiter's unread message, so every schedule ends with exactly one fault served.
TEST_P(PageServerTest, OneWakeAfterDontwakeCopiesWakesEveryWaiterOfTheCluster) {
  std::mutex mu;
  std::condition_variable cv;
  bool armed = false;  // hold the first fault-around after the reclaim
  bool entered = false;
  bool release = false;
  Start(16, {.fault_around_pages = 7, .fault_around_filter = [&](uint64_t, uint64_t) {
               std::unique_lock<std::mutex> lock(mu);
               if (!armed || entered) return true;
               entered = true;
               cv.notify_all();
               cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; });
               return true;
             }});
  for (uint64_t p = 0; p < 16; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 16), 0);
  {
    std::lock_guard<std::mutex> lock(mu);
    armed = true;
  }
  const uint64_t faults_before = server_->Stats().faults;
  std::atomic<int> done{0};
  std::atomic<int> bad{0};
  std::vector<std::thread> guests;
  auto reader = [&](uint64_t p) {
    std::vector<uint8_t> got;
    if (KernelRead(Page(p), PageSize(), &got) != 0 || !HasPattern(got.data(), p, PageSize())) {
      bad.fetch_add(1);
    }
    done.fetch_add(1);
  };
  guests.emplace_back(reader, 0);
  // No ASSERT while readers are joinable (std::terminate): a failure stops adding readers,
  // lets the handler go, and is reported after the joins.
  bool was_entered = false;
  {
    std::unique_lock<std::mutex> lock(mu);
    was_entered = cv.wait_for(lock, std::chrono::seconds(10), [&] { return entered; });
  }
  if (was_entered) {
    for (uint64_t p = 1; p <= 3; ++p) guests.emplace_back(reader, p);
    // At least one of them is queued behind the held handler (usually all three).
    EXPECT_TRUE(WaitForQueuedFault(server_->userfaultfd()));
  }
  {
    std::lock_guard<std::mutex> lock(mu);
    release = true;
  }
  cv.notify_all();
  const int readers = static_cast<int>(guests.size());
  const bool all_done = Eventually([&] { return done.load() == readers; });
  if (!all_done) server_->Shutdown();  // fail, but never hang: the readers get EFAULT
  for (auto& g : guests) g.join();
  ASSERT_TRUE(was_entered) << "the first fault never reached the fault-around filter";
  EXPECT_TRUE(all_done);
  EXPECT_EQ(bad.load(), 0);
  EXPECT_EQ(server_->Stats().faults, faults_before + 1);
  EXPECT_EQ(server_->Stats().fault_around_pages, 7u);
}

// Two threads fault on one never-saved page. The handler of the first is held right before
// its zero-fill while the second's handler serves the page; the guest then writes it and a
// reclaim saves and discards it. The held zero-fill is let go once that reclaim is done
// (the old bug: the fill was decided outside the slot) or its Save reports that it waits
// for the slot the fill holds (SwapStoreOptions::test_save_waits, as it must), and must not
// wipe the saved data: the page still reads what was written. Once with the page served
// alone, once through fault-around's cluster (a saved follower), whose zero-fill paths go
// the same way.
TEST_P(PageServerTest, AZeroFillHeldAcrossAReclaimNeverWipesTheSavedPage) {
  std::mutex mu;
  std::condition_variable cv;
  bool held = false;
  bool release = false;
  bool save_waits = false;  // the reclaim's Save of page 0 waits for the held fill's slot
  bool reclaimed = false;
  int calls = 0;
  for (const uint32_t around : {0u, 3u}) {
    SCOPED_TRACE(around == 0 ? "one page" : "fault-around");
    server_.reset();  // the last round's handlers are gone before its flags are reset
    held = release = save_waits = reclaimed = false;
    calls = 0;
    PageServerOptions o;
    o.handler_threads = 2;
    o.fault_around_pages = around;
    o.test_before_zero_fill = [&](uint64_t page) {
      std::unique_lock<std::mutex> lock(mu);
      if (page != 0 || ++calls != 1) return;  // hold only the first zero-fill of page 0
      held = true;
      cv.notify_all();
      cv.wait_for(lock, std::chrono::seconds(10), [&] { return release; });
    };
    SwapStoreOptions store_options;
    store_options.test_save_waits = [&](uint64_t page) {
      if (page != 0) return;
      std::lock_guard<std::mutex> lock(mu);
      save_waits = true;
      cv.notify_all();
    };
    Start(4, std::move(o), std::move(store_options));
    if (around > 0) {  // a saved, non-resident follower sends the fault through the cluster
      FillPattern(Page(1), 1, PageSize());
      ASSERT_EQ(Reclaim(1, 1), 0);
    }
    std::atomic<int> zero_reads{0};
    auto reader = [&] {
      std::vector<uint8_t> got;
      if (KernelRead(Page(0), PageSize(), &got) == 0 && IsZero(got.data(), PageSize())) {
        zero_reads.fetch_add(1);
      }
    };
    std::thread first(reader);
    bool was_held = false;
    {
      std::unique_lock<std::mutex> lock(mu);
      was_held = cv.wait_for(lock, std::chrono::seconds(10), [&] { return held; });
    }
    std::thread second(reader);  // served by the other handler, which wakes both
    // (No ASSERT while the readers are joinable: a failure shuts the server down below,
    // which ends their reads, and is reported after the joins.)
    const bool both_read = was_held && Eventually([&] { return zero_reads.load() == 2; });
    // The guest writes the page; a reclaim window saves it and discards it.
    std::thread reclaim;
    bool reclaim_reached = false;  // it returned, or its Save waits for the held fill
    bool reclaimed_first = false;
    if (both_read) {
      FillPattern(Page(0), 0, PageSize());
      reclaim = std::thread([&] {
        EXPECT_EQ(Reclaim(0, 1), 0);
        std::lock_guard<std::mutex> lock(mu);
        reclaimed = true;
        cv.notify_all();
      });
      std::unique_lock<std::mutex> lock(mu);
      reclaim_reached = cv.wait_for(lock, std::chrono::seconds(10),
                                    [&] { return reclaimed || save_waits; });
      reclaimed_first = reclaimed;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      release = true;
    }
    cv.notify_all();
    bool reclaim_done = !both_read;
    if (both_read) {
      std::unique_lock<std::mutex> lock(mu);
      reclaim_done = cv.wait_for(lock, std::chrono::seconds(10), [&] { return reclaimed; });
    }
    if (!both_read || !reclaim_done) server_->Shutdown();  // fail, but never hang
    first.join();
    second.join();
    if (reclaim.joinable()) reclaim.join();
    ASSERT_TRUE(was_held) << "the first zero-fill of page 0 never reached the hook";
    ASSERT_TRUE(both_read);
    ASSERT_TRUE(reclaim_reached) << "the reclaim neither returned nor waited for the fill";
    EXPECT_FALSE(reclaimed_first)
        << "the reclaim saved page 0 while a zero-fill of it was pending (decided outside "
           "its slot)";
    ASSERT_TRUE(reclaim_done);
    std::vector<uint8_t> got;
    ASSERT_EQ(KernelRead(Page(0), PageSize(), &got), 0);
    EXPECT_TRUE(HasPattern(got.data(), 0, PageSize()))
        << "page 0 lost what the guest wrote: it reads "
        << (IsZero(got.data(), PageSize()) ? "all zeros" : "neither that nor zeros");
    EXPECT_EQ(failures_.calls(), 0);
  }
}

TEST_P(PageServerTest, ManyThreadsFaultingConcurrentlyGetTheirData) {
  constexpr uint64_t kPages = 512;
  constexpr int kThreads = 4;
  Start(kPages, {.handler_threads = kThreads, .fault_around_pages = 0});
  for (uint64_t p = 0; p < kPages; p += 2) FillPattern(Page(p), p, PageSize());
  for (uint64_t p = 0; p < kPages; p += 2) {
    ASSERT_OK(store_->Save(p, Page(p)));
  }
  ASSERT_OK(ram_->Discard(0, kPages));
  std::atomic<int> bad{0};
  std::vector<std::thread> guests;
  // Every thread touches every page, each from a different start: pages are raced for.
  for (int t = 0; t < kThreads; ++t) {
    guests.emplace_back([&, t] {
      for (uint64_t i = 0; i < kPages; ++i) {
        const uint64_t p = (i + static_cast<uint64_t>(t) * kPages / kThreads) % kPages;
        const bool ok =
            p % 2 == 0 ? HasPattern(Page(p), p, PageSize()) : IsZero(Page(p), PageSize());
        if (!ok) bad.fetch_add(1);
      }
    });
  }
  for (auto& g : guests) g.join();
  EXPECT_EQ(bad.load(), 0);
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.swap_ins, kPages / 2);                 // each page installed exactly once
  EXPECT_EQ(s.zero_fills, kPages / 2 + kPages / 2);  // first touches + the odd pages
  EXPECT_EQ(s.faults, s.swap_ins + s.zero_fills + s.copy_races);
  EXPECT_EQ(s.failures, 0u);
}

// Reclaim (save + discard) races with readers: REMOVE events arrive while faults are in
// flight (UFFDIO_COPY gets EAGAIN and pumps events), copies race (EEXIST). The contents of
// every page are constant, so any read that is not the pattern is corruption.
TEST_P(PageServerTest, ReclaimStormWhileThreadsReadNeverShowsWrongData) {
  constexpr uint64_t kPages = 64;
  Start(kPages, {.handler_threads = 2, .fault_around_pages = 2});
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(Page(p), p, PageSize());
  std::atomic<bool> stop{false};
  std::atomic<int> bad{0};
  std::vector<std::thread> readers;
  for (int t = 0; t < 2; ++t) {
    readers.emplace_back([&, t] {
      uint64_t x = 12345 + static_cast<uint64_t>(t);
      while (!stop.load(std::memory_order_relaxed)) {
        x = x * 6364136223846793005ull + 1442695040888963407ull;
        const uint64_t p = (x >> 33) % kPages;
        if (!HasPattern(Page(p), p, PageSize())) bad.fetch_add(1);
      }
    });
  }
  uint64_t x = 99;
  for (int i = 0; i < 2000; ++i) {
    x = x * 6364136223846793005ull + 1442695040888963407ull;
    const uint64_t p = (x >> 33) % kPages;
    ASSERT_OK(store_->Save(p, Page(p)));  // may itself fault the page back in: same contents
    ASSERT_OK(ram_->Discard(p, 1));
  }
  stop.store(true);
  for (auto& r : readers) r.join();
  EXPECT_EQ(bad.load(), 0);
  for (uint64_t p = 0; p < kPages; ++p) EXPECT_TRUE(HasPattern(Page(p), p, PageSize())) << p;
  const PageServerStats s = server_->Stats();
  EXPECT_EQ(s.failures, 0u);
  EXPECT_GT(s.swap_ins, 0u);
  EXPECT_TRUE(Eventually([&] { return server_->Stats().remove_events == 2000; }));
}

// Migrate as the HostAddressSpace does it: save, discard (old backing page freed), then
// populate the new page from the copy. A fault in between would get the saved copy.
TEST_P(PageServerTest, PopulateInstallsAMissingPageAndRefusesAPresentOne) {
  Start(4);
  FillPattern(Page(2), 2, PageSize());
  std::vector<uint8_t> copy(Page(2), Page(2) + PageSize());
  ASSERT_OK(store_->Save(2, copy.data()));
  ASSERT_OK(ram_->Discard(2, 1));
  ASSERT_OK(server_->Populate(2, copy.data()));
  const uint64_t faults = server_->Stats().faults;
  EXPECT_TRUE(HasPattern(Page(2), 2, PageSize()));
  EXPECT_EQ(server_->Stats().faults, faults);  // no fault: the page was there
  EXPECT_THAT(server_->Populate(2, copy.data()),
              StatusIs(absl::StatusCode::kAlreadyExists, HasSubstr("page 2")));
  EXPECT_THAT(server_->Populate(4, copy.data()),
              StatusIs(absl::StatusCode::kOutOfRange, HasSubstr("page 4")));
}

// A hang is the failure under test, so the blocked thread is waited for with a bound: a
// thread still in its fault then is reported and the binary aborts (it cannot be joined).
TEST_P(PageServerTest, ShutdownWithAThreadBlockedInAFaultNeverHangs) {
  Start(4, {.handler_threads = 0, .fault_around_pages = 0});
  int result = -1;
  std::atomic<bool> returned{false};
  std::thread guest([&] {
    std::vector<uint8_t> got;
    result = KernelRead(Page(1), PageSize(), &got);
    returned.store(true);
  });
  // No ASSERT while `guest` is joinable: Shutdown below ends its read either way.
  EXPECT_TRUE(WaitForQueuedFault(server_->userfaultfd())) << "the read never faulted";
  server_->Shutdown();
  if (!::mmuvisor::testing::WaitUntil([&] { return returned.load(); })) {
    ADD_FAILURE() << "a thread blocked in a fault did not return within "
                  << ::mmuvisor::testing::kTestWaitLimit << " of Shutdown: it hangs";
    std::fflush(nullptr);
    std::abort();
  }
  guest.join();
  EXPECT_EQ(result, EFAULT);  // failed, not zero-filled
  EXPECT_EQ(server_->Stats().shutdown_aborted_faults, 1u);
  // The rest of the range is plain memory again.
  Page(2)[0] = 7;
  EXPECT_EQ(Page(2)[0], 7);
}

// A discard of a registered range blocks in the kernel until a handler reads its REMOVE
// event. After the only handler's read fails (injected EIO: the range is poisoned), it must
// still read them, or the discard, and the reclaim window around it, never return. Each
// discard runs on its own thread, waited for with a bound; Shutdown reads a stuck one's
// event, so a failure is reported and the thread joined.
TEST_P(PageServerTest, DiscardsStillReturnAfterAFatalReadError) {
  auto reads = std::make_shared<std::atomic<int>>(0);
  PageServerOptions options = OnePage();
  options.test_read_errno = [reads] { return reads->fetch_add(1) == 0 ? EIO : 0; };
  Start(8, std::move(options));
  for (uint64_t page : {2, 5}) {
    std::atomic<bool> returned{false};
    absl::Status discarded;
    std::thread discard([&] {
      discarded = ram_->Discard(page, 1);
      returned.store(true);
    });
    const bool in_time = ::mmuvisor::testing::WaitUntil([&] { return returned.load(); });
    if (!in_time) server_->Shutdown();
    discard.join();
    ASSERT_TRUE(in_time) << "the discard of page " << page << " hangs";
    EXPECT_OK(discarded);
  }
  EXPECT_EQ(reads->load(), 1);  // the handler serves nothing after the error
  EXPECT_THAT(server_->failure(), StatusIs(absl::StatusCode::kInternal,  // EIO
                                           AllOf(HasSubstr("the whole range"),
                                                 HasSubstr("read(userfaultfd)"))));
  EXPECT_EQ(failures_.calls(), 1);
  EXPECT_TRUE(Eventually([&] { return server_->Stats().remove_events == 2; }));
}

TEST_P(PageServerTest, NoFdOrThreadLeaks) {
  // Sanitizer runtimes start helper threads at the first pthread_create: do that first.
  std::thread([] {}).join();
  const int fds_before = ::mmuvisor::testing::OpenFdCount();
  // Earlier tests' threads reaped first.
  const int threads_before = ::mmuvisor::testing::SettledThreadCount(1);
  Start(32, {.handler_threads = 3, .fault_around_pages = 0});
  EXPECT_EQ(::mmuvisor::testing::ThreadCount(), threads_before + 3);
  for (uint64_t p = 0; p < 32; ++p) FillPattern(Page(p), p, PageSize());
  ASSERT_EQ(Reclaim(0, 32), 0);
  for (uint64_t p = 0; p < 32; ++p) ASSERT_TRUE(HasPattern(Page(p), p, PageSize()));
  server_.reset();
  store_.reset();
  ram_.reset();
  EXPECT_EQ(::mmuvisor::testing::OpenFdCount(), fds_before);
  EXPECT_EQ(::mmuvisor::testing::SettledThreadCount(threads_before), threads_before);
}

TEST_P(PageServerTest, StartRejectsAStoreSmallerThanTheRange) {
  ASSERT_OK_AND_ASSIGN(ram_, GuestRam::Create(8 * PageSize(), GetParam()));
  ASSERT_OK_AND_ASSIGN(store_, SwapStore::Create(4, PageSize()));
  EXPECT_THAT(PageServer::Start({ram_->base(), 8, PageSize()}, store_.get(), {}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("smaller than the range")));
}

INSTANTIATE_TEST_SUITE_P(Backings, PageServerTest,
                         ::testing::Values(MemoryBacking::kMemfd,
                                           MemoryBacking::kAnonymous),
                         [](const ::testing::TestParamInfo<MemoryBacking>& param_info) {
                           return param_info.param == MemoryBacking::kMemfd ? "Memfd"
                                                                                    : "Anon";
                         });

}  // namespace
}  // namespace mmuvisor::vmm
