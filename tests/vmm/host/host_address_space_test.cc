// HostAddressSpace without KVM: the test thread plays the guest (touching guest RAM
// directly, faulting through the page server); DmaPort is the secondary-MMU reader.
#include "vmm/host/host_address_space.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "host_test_support.h"
#include "mmu/mirror.h"
#include "support/dma_port.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/discard.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/migrate.h"
#include "vmm/host/oom_reap.h"
#include "vmm/host/protect.h"
#include "vmm/host/reclaim.h"
#include "vmm/host/reclaim_driver.h"
#include "vmm/host/unmap.h"
#include "vmm/machine/guest_fault_verdict.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::vmm::testing::DmaPort;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::FakeDirtyLog;
using ::mmuvisor::vmm::testing::FillPattern;
using ::mmuvisor::vmm::testing::FirstMismatch;
using ::mmuvisor::vmm::testing::IsZeroPage;
using ::mmuvisor::vmm::testing::OpenFdCount;
using ::mmuvisor::vmm::testing::RecordingMemslotControl;
using ::mmuvisor::vmm::testing::SettledThreadCount;
using ::mmuvisor::vmm::testing::ThreadCount;

constexpr uint64_t kPages = 64;

HostAddressSpaceOptions SmallOptions(MemoryBacking backing = MemoryBacking::kMemfd) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.backing = backing;
  return o;
}

void FillAll(HostAddressSpace& space, uint64_t version) {
  for (uint64_t p = 0; p < space.num_pages(); ++p) FillPattern(space.PagePointer(p), p, version);
}

uint64_t ResidentCount(HostAddressSpace& space) {
  absl::StatusOr<std::vector<uint8_t>> r = space.page_server()->Residency(0, space.num_pages());
  EXPECT_THAT(r.status(), IsOk());
  uint64_t n = 0;
  for (uint8_t b : *r) n += b;
  return n;
}

class BackingTest : public ::testing::TestWithParam<MemoryBacking> {};

TEST_P(BackingTest, ReclaimAllThenRereadGivesIdenticalDataWithSwapIns) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions(GetParam())));
  EXPECT_EQ(space->dirty_tracking().mode, DirtyTrackingMode::kAlwaysWriteBack);
  FillAll(*space, 1);
  ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(r.written_back, kPages);
  EXPECT_EQ(r.reclaimed, kPages);
  EXPECT_EQ(r.save_failures, 0u);
  EXPECT_EQ(ResidentCount(*space), 0u);
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 1), -1) << "page " << p;
  }
  EXPECT_EQ(space->stats().swapped_in, kPages);
  EXPECT_EQ(space->stats().reclaimed_pages, kPages);
  EXPECT_EQ(space->windows().held(), 0u);
}

TEST_P(BackingTest, DiscardGivesZerosEvenForSwappedOutPages) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions(GetParam())));
  FillAll(*space, 2);
  ASSERT_THAT(Reclaim(*space, PageRange{0, kPages / 2}).status(), IsOk());  // half swapped out
  ASSERT_THAT(Discard(*space, PageRange{0, kPages}), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_TRUE(IsZeroPage(space->PagePointer(p))) << p;
  EXPECT_EQ(space->store()->SavedPageCount(), 0u);
  EXPECT_EQ(space->stats().discarded_pages, kPages);
}

// A balloon may discard pages the owner protected. Before Linux 6.7, madvise(MADV_REMOVE)
// refused a shared range mapped read-only or none (EACCES) after Discard had dropped the
// store's copies: the swapped-out pages read zeros, the resident ones kept their data.
// Either outcome must be whole; the discard must succeed and every page read zeros.
TEST_P(BackingTest, DiscardOfAProtectedRangeGivesZerosEverywhere) {
  for (PageProtection prot : {PageProtection::kReadOnly, PageProtection::kNone}) {
    SCOPED_TRACE(static_cast<int>(prot));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                         HostAddressSpace::Create(SmallOptions(GetParam())));
    FillAll(*space, 4);
    ASSERT_THAT(Reclaim(*space, PageRange{0, 16}).status(), IsOk());  // half swapped out
    ASSERT_THAT(Protect(*space, PageRange{0, 32}, prot), IsOk());
    // This kernel may accept MADV_REMOVE on that range; what an older one cannot refuse is
    // a hole punch, which raises no REMOVE event. The page server's one handler counts an
    // event after the kernel has seen it read, so the count is bracketed by two one-page
    // probes outside the range: once a probe's madvise returns, the handler has read it,
    // hence finished counting every earlier event. Between the first probe's return and
    // the second's, the count can grow by the two probes at most; a MADV_REMOVE of the 32
    // discarded pages would add 32.
    const bool memfd = GetParam() == MemoryBacking::kMemfd;
    uint64_t removed_before = 0;
    if (memfd) {
      ASSERT_EQ(madvise(space->PagePointer(40), kPageSize, MADV_REMOVE), 0) << errno;
      removed_before = space->page_server()->Stats().removed_pages;
    }
    ASSERT_THAT(Discard(*space, PageRange{0, 32}), IsOk());
    EXPECT_EQ(space->store()->SavedPageCount(), 0u);
    if (memfd) {
      ASSERT_EQ(madvise(space->PagePointer(41), kPageSize, MADV_REMOVE), 0) << errno;
      EXPECT_LE(space->page_server()->Stats().removed_pages - removed_before, 2u);
    }
    ASSERT_THAT(Protect(*space, PageRange{0, 32}, PageProtection::kReadWrite), IsOk());
    for (uint64_t p = 0; p < 32; ++p) ASSERT_TRUE(IsZeroPage(space->PagePointer(p))) << p;
    for (uint64_t p = 32; p < kPages; ++p) {
      if ((p == 40 || p == 41) && memfd) continue;  // the probes
      ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 4), -1) << "page " << p;
    }
    EXPECT_EQ(space->stats().discarded_pages, 32u);
  }
}

TEST_P(BackingTest, MigrateKeepsDataAndLeavesPagesResident) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions(GetParam())));
  FillAll(*space, 3);
  ASSERT_OK_AND_ASSIGN(ReclaimResult r, Migrate(*space, PageRange{8, 16}));
  EXPECT_EQ(r.reclaimed, 16u);
  EXPECT_EQ(ResidentCount(*space), kPages);  // faulted back into new pages in the window
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 3), -1) << "page " << p;
  }
  EXPECT_EQ(space->stats().migrated_pages, 16u);
}

// Mappings (lines of /proc/self/maps) that overlap guest RAM.
int GuestRamMappings(HostAddressSpace& space) {
  const uint64_t begin = space.AddressOf(0), end = space.AddressOf(space.num_pages());
  std::ifstream maps("/proc/self/maps");
  int count = 0;
  std::string line;
  while (std::getline(maps, line)) {
    uint64_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64, &lo, &hi) == 2 && lo < end &&
        hi > begin) {
      ++count;
    }
  }
  return count;
}

TEST_P(BackingTest, RepeatedReclaimsLeaveGuestRamOneMapping) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions(GetParam())));
  ASSERT_EQ(GuestRamMappings(*space), 1);
  for (uint64_t round = 1; round <= 40; ++round) {
    FillAll(*space, round);
    // Inner, leading, trailing and whole ranges: each window splits the mapping; it must
    // merge back.
    const PageRange range = round % 4 == 0   ? PageRange{0, kPages}
                            : round % 4 == 1 ? PageRange{8, 16}
                            : round % 4 == 2 ? PageRange{0, 5}
                                             : PageRange{kPages - 7, 7};
    ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*space, range));
    ASSERT_EQ(r.reclaimed, range.count) << "round " << round;
    ASSERT_EQ(GuestRamMappings(*space), 1) << "round " << round;
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, round), -1) << "round " << round
                                                                     << " page " << p;
    }
  }
}

// Inside a reclaim window, after the discard: reads of the range are served from the
// store (never a fresh zero page), and a store through the kernel fails (EFAULT).
TEST_P(BackingTest, InsideTheWindowReadsSeeSavedDataAndWritesFail) {
  HostAddressSpaceOptions o = SmallOptions(GetParam());
  HostAddressSpace* self = nullptr;
  int checked = 0;
  int64_t mismatch = -1;
  int write_errno = 0;
  o.window_hook = [&](WindowPoint point, const notifier::Range& range) {
    if (point != WindowPoint::kBeforeEnd || self == nullptr) return;
    for (uint64_t a = range.start; a < range.end; a += kPageSize) {
      const uint64_t p = (a - self->AddressOf(0)) / kPageSize;
      if (FirstMismatch(self->PagePointer(p), p, 7) != -1) mismatch = static_cast<int64_t>(p);
      ++checked;
    }
    uint8_t data[16] = {1};
    iovec local{self->PagePointer((range.start - self->AddressOf(0)) / kPageSize), sizeof(data)};
    iovec remote{data, sizeof(data)};
    if (syscall(SYS_process_vm_readv, getpid(), &local, 1UL, &remote, 1UL, 0UL) < 0) {
      write_errno = errno;
    }
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(std::move(o)));
  FillAll(*space, 7);
  self = space.get();
  const uint64_t swap_ins = space->stats().swapped_in;
  ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*space, PageRange{4, 16}));
  self = nullptr;
  EXPECT_EQ(r.reclaimed, 16u);
  EXPECT_EQ(checked, 16);
  EXPECT_EQ(mismatch, -1);
  EXPECT_EQ(write_errno, EFAULT);
  EXPECT_EQ(space->stats().swapped_in - swap_ins, 16u);  // every in-window read: page server
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 7), -1) << "page " << p;
  }
}

// Fault-around (on by default) never installs a page an open window covers: a fault on
// page 4 while a window holds [8, 12) brings 5-7 and 12-19 from the store, not 8-11.
TEST_P(BackingTest, FaultAroundSkipsThePagesOfAnOpenWindow) {
  HostAddressSpaceOptions o = SmallOptions(GetParam());
  ASSERT_EQ(o.fault_around_pages, kDefaultFaultAroundPages);
  o.fault_around_pages = 15;
  HostAddressSpace* self = nullptr;
  std::vector<uint8_t> resident;
  int64_t mismatch = -1;
  o.window_hook = [&](WindowPoint point, const notifier::Range&) {
    if (point != WindowPoint::kAfterStart || self == nullptr) return;
    mismatch = FirstMismatch(self->PagePointer(4), 4, 3);  // faults page 4 in
    resident = *self->page_server()->Residency(4, 16);
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(std::move(o)));
  FillAll(*space, 3);
  ASSERT_OK_AND_ASSIGN(ReclaimResult all, Reclaim(*space, PageRange{0, kPages}));
  ASSERT_EQ(all.reclaimed, kPages);
  self = space.get();
  ASSERT_OK(Reclaim(*space, PageRange{8, 4}).status());
  self = nullptr;
  EXPECT_EQ(mismatch, -1);
  EXPECT_EQ(resident, (std::vector<uint8_t>{1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1}));
  EXPECT_EQ(space->page_server()->Stats().fault_around_skipped, 4u);
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 3), -1) << "page " << p;
  }
}

// The space passes the page server its stream ramp: with the defaults, reading all of RAM
// in order after a reclaim takes 3 faults (clusters of 16, 32, then the last 16 of a 64);
// with fault_around_max_pages at the base, 4 faults of 16.
PageServerStats SequentialReadAfterReclaim(MemoryBacking backing, uint32_t max_pages) {
  HostAddressSpaceOptions o = SmallOptions(backing);
  o.fault_around_max_pages = max_pages;
  absl::StatusOr<std::unique_ptr<HostAddressSpace>> space =
      HostAddressSpace::Create(std::move(o));
  EXPECT_OK(space.status());
  if (!space.ok()) return {};
  FillAll(**space, 5);
  absl::StatusOr<ReclaimResult> all = Reclaim(**space, PageRange{0, kPages});
  EXPECT_TRUE(all.ok() && all->reclaimed == kPages);
  const PageServerStats before = (*space)->page_server()->Stats();
  for (uint64_t p = 0; p < kPages; ++p) {
    EXPECT_EQ(FirstMismatch((*space)->PagePointer(p), p, 5), -1) << "page " << p;
  }
  PageServerStats d = (*space)->page_server()->Stats();
  d.faults -= before.faults;
  d.sequential_faults -= before.sequential_faults;
  return d;
}

TEST_P(BackingTest, ASequentialReadAfterAReclaimGrowsTheClustersUnlessTheRampIsOff) {
  ASSERT_EQ(kPages, 64u);
  ASSERT_EQ(HostAddressSpaceOptions{}.fault_around_pages, kDefaultFaultAroundPages);
  const PageServerStats ramp = SequentialReadAfterReclaim(GetParam(), kDefaultFaultAroundMaxPages);
  EXPECT_EQ(ramp.faults, 3u);
  EXPECT_EQ(ramp.sequential_faults, 2u);
  const PageServerStats flat = SequentialReadAfterReclaim(GetParam(), kDefaultFaultAroundPages);
  EXPECT_EQ(flat.faults, 4u);
  EXPECT_EQ(flat.sequential_faults, 0u);
}

INSTANTIATE_TEST_SUITE_P(Backings, BackingTest,
                         ::testing::Values(MemoryBacking::kMemfd,
                                           MemoryBacking::kAnonymous),
                         [](const auto& param_info) {
                           return param_info.param == MemoryBacking::kMemfd ? "memfd"
                                                                              : "anonymous";
                         });

TEST(HostAddressSpaceTest, VerifiedDirtyLogSkipsCleanPagesAndWritesBackLoggedOnes) {
  FakeDirtyLog log;
  HostAddressSpaceOptions o = SmallOptions();
  o.dirty_log = &log;
  o.dirty_probe = [&log](const GuestMemorySlot& slot) {
    log.MarkWritten(slot.gpa);  // the "guest" write the self-check looks for
    return absl::OkStatus();
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_EQ(space->dirty_tracking().mode, DirtyTrackingMode::kDirtyLog)
      << space->dirty_tracking().reason;
  FillAll(*space, 1);
  ASSERT_OK_AND_ASSIGN(ReclaimResult first, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(first.written_back, kPages);  // never saved: always written
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 1), -1);
  // Swapped back in, not written: the second reclaim writes nothing.
  ASSERT_OK_AND_ASSIGN(ReclaimResult second, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(second.written_back, 0u);
  EXPECT_EQ(second.skipped_clean, kPages);
  // The guest writes page 5 (and the log says so): only that page is written back.
  for (uint64_t p = 0; p < kPages; ++p) (void)*static_cast<volatile uint8_t*>(space->PagePointer(p));
  FillPattern(space->PagePointer(5), 5, 2);
  log.MarkWritten(Gpa{5 * kPageSize});
  ASSERT_OK_AND_ASSIGN(ReclaimResult third, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(third.written_back, 1u);
  EXPECT_EQ(third.skipped_clean, kPages - 1);
  EXPECT_EQ(FirstMismatch(space->PagePointer(5), 5, 2), -1);
  EXPECT_EQ(FirstMismatch(space->PagePointer(6), 6, 1), -1);
}

TEST(HostAddressSpaceTest, DirtyLogThatMissesTheProbeFallsBackToAlwaysWriteBack) {
  FakeDirtyLog log;
  HostAddressSpaceOptions o = SmallOptions();
  o.dirty_log = &log;
  o.dirty_probe = [](const GuestMemorySlot&) { return absl::OkStatus(); };  // the write is never logged
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  EXPECT_EQ(space->dirty_tracking().mode, DirtyTrackingMode::kAlwaysWriteBack);
  EXPECT_THAT(space->dirty_tracking().reason, ::testing::HasSubstr("missed a guest write"));
  FillAll(*space, 1);
  ASSERT_THAT(Reclaim(*space, PageRange{0, kPages}).status(), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) (void)*static_cast<volatile uint8_t*>(space->PagePointer(p));
  ASSERT_OK_AND_ASSIGN(ReclaimResult again, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(again.written_back, kPages);  // nothing trusted: every page written again
}

TEST(HostAddressSpaceTest, FailingStoreLosesNothingAndEveryWindowEnds) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  FillAll(*space, 4);
  space->store()->SetWriteFaultInjection(IoFaultInjection{.probability = 1.0, .error = ENOSPC});
  ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(r.save_failures, kPages);
  EXPECT_EQ(r.reclaimed, 0u);
  EXPECT_THAT(r.first_save_error, StatusIs(absl::StatusCode::kResourceExhausted, ::testing::_));
  EXPECT_EQ(ResidentCount(*space), kPages);
  // Every third write fails, half-written (a torn slot on disk): those pages stay.
  space->store()->SetWriteFaultInjection(
      IoFaultInjection{.fail_nth = 3, .error = EIO, .partial = true});
  ASSERT_OK_AND_ASSIGN(ReclaimResult r2, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(r2.save_failures, 1u);
  EXPECT_EQ(r2.reclaimed, kPages - 1);
  space->store()->ClearFaultInjection();
  for (uint64_t p = 0; p < kPages; ++p) {
    std::vector<uint8_t> buf(kPageSize);
    ASSERT_THAT(dma->Read(Gpa{p * kPageSize}, absl::MakeSpan(buf)), IsOk());
    ASSERT_EQ(FirstMismatch(buf.data(), p, 4), -1) << "page " << p;
  }
  EXPECT_EQ(space->windows().held(), 0u);
  EXPECT_EQ(dma->mmu().in_progress(), 0);
  EXPECT_EQ(space->hub().pairing_summary().open, 0);
  EXPECT_EQ(space->hub().pairing_summary().violations, 0u);
}

// A space whose page 5 is swapped out and whose store then fails every read (EIO): the
// first access to page 5 makes the page server fail and poison it. Null (and a test
// failure) if it cannot be set up.
std::unique_ptr<HostAddressSpace> SpaceWithAnUnservablePage5() {
  absl::StatusOr<std::unique_ptr<HostAddressSpace>> space =
      HostAddressSpace::Create(SmallOptions());
  EXPECT_THAT(space.status(), IsOk());
  if (!space.ok()) return nullptr;
  FillAll(**space, 7);
  absl::StatusOr<ReclaimResult> r = Reclaim(**space, PageRange{5, 1});
  EXPECT_TRUE(r.ok() && r->reclaimed == 1u) << r.status();
  if (!r.ok() || r->reclaimed != 1u) return nullptr;
  (*space)->store()->SetReadFaultInjection(IoFaultInjection{.probability = 1.0, .error = EIO});
  return *std::move(space);
}

// A host copy that is the first to touch a swapped-out page the page server cannot serve
// (its slot reads EIO) gets the server's error. The server poisons such a page
// (PROT_NONE): a copy that went straight to memcpy ended the process with SIGSEGV.
TEST(HostAddressSpaceTest, AHostCopyOfAPageTheServerCannotServeIsAnErrorNotACrash) {
  for (const bool write : {false, true}) {
    SCOPED_TRACE(write ? "write" : "read");
    std::unique_ptr<HostAddressSpace> space = SpaceWithAnUnservablePage5();
    ASSERT_NE(space, nullptr);
    std::vector<uint8_t> buf(64, 0xab);
    const absl::Status s = write ? space->WriteGuest(Gpa{5 * kPageSize + 128}, buf)
                                 : space->ReadGuest(Gpa{5 * kPageSize + 128}, absl::MakeSpan(buf));
    EXPECT_THAT(s, StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("page 5 ")));
    // The failure is the address space's from now on: every later copy reports it.
    EXPECT_THAT(space->PageServerFailure(), StatusIs(absl::StatusCode::kDataLoss, ::testing::_));
    space->store()->ClearFaultInjection();
  }
}

// Whether a store through the kernel into `page` (as KVM_RUN or a device would make it)
// fails with EFAULT: the page is PROT_NONE. Nothing is written: the pipe reads the page.
bool KernelSeesNoAccess(HostAddressSpace& space, uint64_t page) {
  int fds[2];
  if (pipe(fds) != 0) return false;
  const ssize_t n = write(fds[1], space.PagePointer(page), 64);
  const int err = errno;
  close(fds[0]);
  close(fds[1]);
  return n < 0 && err == EFAULT;
}

// The page server leaves a page it could not serve PROT_NONE (vmm/paging/README.md,
// "Failure policy"). A later window over it restores or changes the owner's protection of
// its range; the poisoned page must stay inaccessible, not be served again.
TEST(HostAddressSpaceTest, APoisonedPageStaysInaccessibleAcrossLaterWindows) {
  std::unique_ptr<HostAddressSpace> space = SpaceWithAnUnservablePage5();
  ASSERT_NE(space, nullptr);
  std::vector<uint8_t> buf(64);
  ASSERT_THAT(space->ReadGuest(Gpa{5 * kPageSize}, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kDataLoss, ::testing::HasSubstr("page 5 ")));
  space->store()->ClearFaultInjection();  // the store could serve it now: it must not
  ASSERT_TRUE(KernelSeesNoAccess(*space, 5));

  ASSERT_THAT(Reclaim(*space, PageRange{0, 16}).status(), IsOk());  // restores on close
  EXPECT_TRUE(KernelSeesNoAccess(*space, 5)) << "un-poisoned by Reclaim's window";
  ASSERT_THAT(Protect(*space, PageRange{4, 4}, PageProtection::kReadOnly), IsOk());
  EXPECT_TRUE(KernelSeesNoAccess(*space, 5)) << "un-poisoned by Protect(kReadOnly)";
  ASSERT_THAT(Protect(*space, PageRange{4, 4}, PageProtection::kReadWrite), IsOk());
  EXPECT_TRUE(KernelSeesNoAccess(*space, 5)) << "un-poisoned by Protect(kReadWrite)";
  // Its neighbours keep the owner's protection and their data.
  for (uint64_t p : {4, 6, 7}) {
    EXPECT_FALSE(KernelSeesNoAccess(*space, p)) << p;
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 7), -1) << "page " << p;
  }
}

// A Protect that runs between a host copy's start and its checks (forced: it runs from the
// copy's own hook, before the copy's drain section) is seen by the checks: the write is
// refused with PermissionDenied, and the read of a page protected to nothing too, instead of
// a copy into the page just protected (which faulted: SIGSEGV).
TEST(HostAddressSpaceTest, AProtectJustBeforeAHostCopyIsSeenByIt) {
  HostAddressSpaceOptions o = SmallOptions();
  HostAddressSpace* self = nullptr;
  std::optional<PageProtection> protect_to;
  absl::Status protected_status = absl::UnknownError("not run");
  o.test_before_host_copy = [&](uint64_t page) {
    if (self == nullptr || !protect_to.has_value()) return;
    protected_status = Protect(*self, PageRange{page, 1}, *std::exchange(protect_to, {}));
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(std::move(o)));
  FillAll(*space, 5);
  self = space.get();
  std::vector<uint8_t> buf(16, 0xab);
  protect_to = PageProtection::kReadOnly;
  EXPECT_THAT(space->WriteGuest(Gpa{3 * kPageSize}, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::HasSubstr("page 3: protected")));
  ASSERT_THAT(protected_status, IsOk());
  EXPECT_THAT(space->ReadGuest(Gpa{3 * kPageSize}, absl::MakeSpan(buf)), IsOk());
  protect_to = PageProtection::kNone;
  EXPECT_THAT(space->ReadGuest(Gpa{5 * kPageSize}, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::HasSubstr("page 5: protected")));
  ASSERT_THAT(protected_status, IsOk());
  self = nullptr;
  ASSERT_THAT(Protect(*space, PageRange{3, 1}, PageProtection::kReadWrite), IsOk());
  ASSERT_THAT(Protect(*space, PageRange{5, 1}, PageProtection::kReadWrite), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 5), -1) << "page " << p;
  }
}

TEST(HostAddressSpaceTest, ProtectedPagesRefuseWritesUntilUnprotected) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions()));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  FillAll(*space, 5);
  ASSERT_THAT(Protect(*space, PageRange{2, 2}, PageProtection::kReadOnly), IsOk());
  // A guest-side store through the kernel (as KVM_RUN would do it) fails with EFAULT.
  const int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(zero, 0);
  errno = 0;
  EXPECT_EQ(read(zero, space->PagePointer(2), 64), -1);
  EXPECT_EQ(errno, EFAULT);
  GuestFaultVerdict v = ClassifyGuestFault(*space, Gpa{2 * kPageSize}, /*write=*/true);
  EXPECT_EQ(v.kind, GuestFaultKind::kProtected) << v.detail;
  EXPECT_EQ(ClassifyGuestFault(*space, Gpa{2 * kPageSize}, false).kind, GuestFaultKind::kRetry);
  EXPECT_EQ(ClassifyGuestFault(*space, Gpa{kPages * kPageSize}, true).kind,
            GuestFaultKind::kNotMapped);
  std::vector<uint8_t> buf(16, 0xab);
  EXPECT_THAT(dma->Write(Gpa{2 * kPageSize}, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  EXPECT_THAT(space->Resolve(space->AddressOf(3), mmu::Access::kWrite).status(),
              StatusIs(absl::StatusCode::kPermissionDenied, ::testing::_));
  ASSERT_THAT(dma->Read(Gpa{2 * kPageSize}, absl::MakeSpan(buf)), IsOk());  // reads allowed
  ASSERT_THAT(Unprotect(*space, PageRange{2, 2}), IsOk());
  EXPECT_EQ(read(zero, space->PagePointer(2), 64), 64);
  EXPECT_THAT(dma->Write(Gpa{3 * kPageSize}, absl::MakeSpan(buf)), IsOk());
  close(zero);
  EXPECT_EQ(space->stats().protects, 2u);
}

// mprotect stops at the first hole in its range with ENOMEM after changing the pages
// before it (as it does when splitting a VMA fails past vm.max_map_count). A failed
// Protect must leave those pages as recorded, not read-only under a read-write record,
// where every guest write would be a fault the VMM retries forever.
TEST(HostAddressSpaceTest, AProtectThatFailsHalfwayLeavesNoPageChanged) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions()));
  FillAll(*space, 2);
  ASSERT_EQ(munmap(space->PagePointer(4), kPageSize), 0);  // the hole
  EXPECT_THAT(Protect(*space, PageRange{2, 4}, PageProtection::kReadOnly),
              StatusIs(absl::StatusCode::kResourceExhausted, ::testing::HasSubstr("mprotect")));
  const int zero = open("/dev/zero", O_RDONLY | O_CLOEXEC);
  ASSERT_GE(zero, 0);
  for (uint64_t p : {2, 3}) {
    EXPECT_EQ(space->protection(p), PageProtection::kReadWrite) << p;
    // A store through the kernel, as KVM_RUN would make it: allowed, as recorded.
    EXPECT_EQ(read(zero, space->PagePointer(p), 64), 64) << "page " << p << ": " << errno;
    EXPECT_EQ(ClassifyGuestFault(*space, Gpa{p * kPageSize}, /*write=*/true).kind,
              GuestFaultKind::kRetry);
  }
  close(zero);
  EXPECT_EQ(space->stats().protects, 0u);
  // Give the hole a page again so that teardown meets the mapping it made.
  ASSERT_NE(mmap(space->PagePointer(4), kPageSize, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0),
            MAP_FAILED);
}

TEST(HostAddressSpaceTest, ResolveRejectsAddressesOutsideGuestRam) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(SmallOptions()));
  EXPECT_THAT(space->Resolve(space->AddressOf(kPages), mmu::Access::kRead).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(space->Resolve(space->AddressOf(1) + 8, mmu::Access::kRead).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  ASSERT_OK_AND_ASSIGN(mmu::PrimaryPage page,
                       space->Resolve(space->AddressOf(1), mmu::Access::kWrite));
  EXPECT_EQ(page.host_address, space->AddressOf(1));
  EXPECT_TRUE(page.writable);
  EXPECT_THAT(Reclaim(*space, PageRange{kPages - 1, 2}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
}

TEST(HostAddressSpaceTest, UnmapWaitsForOpenWindowsThenRemovesTheSlot) {
  RecordingMemslotControl control;
  testing::TestEvent in_window, release_window;
  HostAddressSpaceOptions o = SmallOptions();
  o.slots = {RamSlot{0, Gpa{0}, 0, kPages / 2}, RamSlot{1, Gpa{1ull << 30}, kPages / 2, kPages / 2}};
  o.memslot_control = &control;
  o.window_hook = testing::HoldFirstReclaimWindow(in_window, release_window, control);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  std::vector<uint8_t> buf(8, 1);
  ASSERT_THAT(dma->Write(Gpa{1ull << 30}, absl::MakeSpan(buf)), IsOk());

  std::thread reclaimer([&] { EXPECT_THAT(Reclaim(*space, PageRange{0, 4}).status(), IsOk()); });
  in_window.WaitForNotification();
  std::thread unmapper([&] { EXPECT_THAT(Unmap(*space, 1), IsOk()); });
  // Until Unmap waits for the window (a broken one would delete the slot early instead,
  // and the events below would show it before the window's end).
  EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
      [&] { return space->windows().exclusive_waiters() > 0 || control.events().size() > 2; }))
      << "Unmap neither waited nor ran";
  release_window.Notify();
  reclaimer.join();
  unmapper.join();
  EXPECT_THAT(control.events(), ::testing::ElementsAre("set 0", "set 1", "reclaim window ends",
                                                       "delete 1"));
  EXPECT_THAT(Unmap(*space, 1), StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(dma->Read(Gpa{1ull << 30}, absl::MakeSpan(buf)),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(space->PagesOf(Gpa{1ull << 30}, ByteSize{kPageSize}).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, ::testing::_));
  EXPECT_THAT(space->Resolve(space->AddressOf(kPages / 2), mmu::Access::kRead).status(),
              StatusIs(absl::StatusCode::kNotFound, ::testing::_));
  EXPECT_THAT(dma->Read(Gpa{0}, absl::MakeSpan(buf)), IsOk());  // slot 0 still there
}

TEST(HostAddressSpaceTest, OomReapWithInjectedEagainLeavesTheRangeUntouched) {
  HostAddressSpaceOptions o = SmallOptions();
  o.oom.max_attempts = 4;
  o.oom.initial_backoff = absl::Microseconds(10);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  StartFaultSubscription injector(StartFaults{.eagain_next = 1000});
  ASSERT_THAT(space->hub().Register(injector), IsOk());
  FillAll(*space, 6);
  std::vector<uint8_t> buf(kPageSize);
  for (uint64_t p = 0; p < kPages; ++p) {  // map every page in the secondary MMU
    ASSERT_THAT(dma->Read(Gpa{p * kPageSize}, absl::MakeSpan(buf)), IsOk());
  }
  const uint64_t mapped = dma->mmu().mapped_count();
  ASSERT_OK_AND_ASSIGN(OomReapResult r, OomReap(*space, PageRange{0, kPages}));
  EXPECT_FALSE(r.reaped);
  EXPECT_EQ(r.attempts, 4);
  EXPECT_EQ(r.eagain_retries, 4u);
  EXPECT_EQ(injector.eagains(), 4u);
  // Untouched: resident, not saved, same data; the store saw no write.
  EXPECT_EQ(ResidentCount(*space), kPages);
  EXPECT_EQ(space->store()->SavedPageCount(), 0u);
  EXPECT_EQ(space->store()->Stats().saves, 0u);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 6), -1);
  // Balanced: the secondary MMU got an end for each start (upstream policy), nothing open.
  mmu::SecondaryMmuStats ms = dma->mmu().stats();
  EXPECT_EQ(ms.starts, ms.ends);
  EXPECT_EQ(dma->mmu().in_progress(), 0);
  EXPECT_EQ(dma->mmu().active_invalidations(), 0);
  EXPECT_LE(dma->mmu().mapped_count(), mapped);
  notifier::PairingSummary pairing = space->hub().pairing_summary();
  EXPECT_EQ(pairing.open, 0);
  EXPECT_EQ(pairing.violations, 0u) << pairing.ToString();
  EXPECT_EQ(space->hub().active_invalidate_ranges(), 0u);
  EXPECT_EQ(space->windows().held(), 0u);
  HostStats stats = space->stats();
  EXPECT_EQ(stats.oom_skipped, 1u);
  EXPECT_EQ(stats.oom_eagain_retries, 4u);

  // Two more refusals, then the third attempt reaps (saving first: nothing is lost).
  injector.Configure(StartFaults{.eagain_next = 2});
  ASSERT_OK_AND_ASSIGN(OomReapResult r2, OomReap(*space, PageRange{0, kPages}));
  EXPECT_TRUE(r2.reaped);
  EXPECT_EQ(r2.attempts, 3);
  EXPECT_EQ(r2.reclaim.reclaimed, kPages);
  EXPECT_EQ(ResidentCount(*space), 0u);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 6), -1);
  ASSERT_THAT(space->hub().Unregister(injector), IsOk());
}

// The OOM reaper never waits (oom_reap.h): a range another window holds (trylock fails)
// and a device access in flight (an interval mirror's AccessPage holds its lock, so the
// mirror's invalidate refuses the non-blockable start: the drain is the secondary's) each
// make every attempt an EAGAIN, and the range stays untouched. A refused start opens no
// window: the hook sees no start, and the hub sees start == end.
TEST(HostAddressSpaceTest, OomReapNeverWaitsForABusyRangeOrAnInFlightDeviceAccess) {
  HostAddressSpaceOptions o = SmallOptions();
  o.oom.max_attempts = 3;
  o.oom.initial_backoff = absl::Microseconds(10);
  o.oom.max_backoff = absl::Microseconds(10);
  HostAddressSpace* self = nullptr;
  int after_start = 0, before_end = 0;  // this thread only: hooks run on the window's thread
  OomReapResult busy;
  absl::Status busy_status = absl::UnknownError("not run");
  o.window_hook = [&](WindowPoint point, const notifier::Range& range) {
    if (point == WindowPoint::kBeforeEnd) {
      ++before_end;
      return;
    }
    ++after_start;
    // Inside the Protect window below: the reaper finds the range busy and does not wait.
    if (range.event == notifier::Event::kProtectionVma) {
      absl::StatusOr<OomReapResult> r = OomReap(*self, PageRange{0, kPages});
      busy_status = r.status();
      if (r.ok()) busy = *r;
    }
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  self = space.get();
  FillAll(*space, 8);

  ASSERT_THAT(Protect(*space, PageRange{0, 1}, PageProtection::kReadWrite), IsOk());
  ASSERT_THAT(busy_status, IsOk());
  EXPECT_FALSE(busy.reaped);
  EXPECT_EQ(busy.attempts, 3);
  EXPECT_EQ(busy.eagain_retries, 3u);
  EXPECT_EQ(after_start, 1);  // the Protect window's only: no reaper window opened
  EXPECT_EQ(before_end, 1);

  mmu::Mirror device(*space, mmu::MirrorOptions{.name = "device"});
  ASSERT_THAT(device.Attach(space->hub(), space->AddressOf(0), kPages * kPageSize), IsOk());
  std::atomic<bool> copying{false}, reaped{false};
  absl::Status access_status;
  std::thread dma([&] {  // a device copy in flight until the reaper has given up
    access_status = device.AccessPage(space->AddressOf(1), mmu::Access::kRead, [&](uint64_t) {
      copying.store(true);
      (void)WaitUntil([&] { return reaped.load(); });
    });
  });
  ASSERT_TRUE(WaitUntil([&] { return copying.load(); })) << "the device copy never began";
  absl::StatusOr<OomReapResult> in_flight = OomReap(*space, PageRange{0, kPages});
  reaped.store(true);
  dma.join();
  ASSERT_THAT(access_status, IsOk());
  ASSERT_THAT(in_flight, IsOk());
  EXPECT_FALSE(in_flight->reaped);
  EXPECT_EQ(in_flight->attempts, 3);
  EXPECT_EQ(in_flight->eagain_retries, 3u);
  EXPECT_EQ(device.stats().nonblock_refusals, 3u);  // the refusals are the secondary's
  ASSERT_THAT(device.Detach(), IsOk());
  EXPECT_EQ(after_start, 1);  // no reaper window opened ...
  EXPECT_EQ(before_end, 1);   // ... nor ended
  notifier::PairingSummary pairing = space->hub().pairing_summary();
  EXPECT_EQ(pairing.open, 0);
  EXPECT_EQ(pairing.violations, 0u) << pairing.ToString();
  EXPECT_EQ(space->windows().held(), 0u);
  const PageRangeLock::Counts counts = space->windows().counts();
  EXPECT_EQ(counts.opened, counts.closed);
  // Untouched: resident, nothing saved, same data.
  EXPECT_EQ(ResidentCount(*space), kPages);
  EXPECT_EQ(space->store()->Stats().saves, 0u);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 8), -1);
  HostStats stats = space->stats();
  EXPECT_EQ(stats.oom_skipped, 2u);
  EXPECT_EQ(stats.oom_eagain_retries, 6u);
  EXPECT_EQ(stats.host_copy_refusals, 0u);

  // Nothing in the way: the first attempt reaps.
  ASSERT_OK_AND_ASSIGN(OomReapResult free_run, OomReap(*space, PageRange{0, kPages}));
  EXPECT_TRUE(free_run.reaped);
  EXPECT_EQ(free_run.attempts, 1);
  EXPECT_EQ(before_end, 2);
  for (uint64_t p = 0; p < kPages; ++p) ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 8), -1);
}

TEST(HostAddressSpaceTest, TeardownDeletesEveryMemslotUnlessTheHypervisorWasDetached) {
  for (const bool detach : {false, true}) {
    SCOPED_TRACE(detach ? "detached" : "attached");
    RecordingMemslotControl control;
    HostAddressSpaceOptions o = SmallOptions();
    o.slots = {RamSlot{0, Gpa{0}, 0, kPages / 2}, RamSlot{1, Gpa{1ull << 30}, kPages / 2, kPages / 2}};
    o.memslot_control = &control;
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
    FillAll(*space, 3);
    if (detach) {
      space->DetachHypervisor();
      space->DetachHypervisor();  // idempotent
      // RAM is still mapped and served until Teardown (the owner destroys its VM now).
      for (uint64_t p = 0; p < kPages; ++p) {
        ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, 3), -1);
      }
    }
    space->Teardown();
    if (detach) {
      EXPECT_THAT(control.events(), ::testing::ElementsAre("set 0", "set 1"));
    } else {
      EXPECT_THAT(control.events(),
                  ::testing::ElementsAre("set 0", "set 1", "delete 0", "delete 1"));
    }
  }
}

TEST(HostAddressSpaceTest, TeardownWithPagesOutReleasesEachSubscriptionOnceAndLeaksNothing) {
  // Sanitizer runtimes (TSan) start a helper thread with the first thread the process
  // creates: create one first so the baseline already counts it.
  std::thread([] {}).join();
  const int fds_before = OpenFdCount();
  const int threads_before = SettledThreadCount(1);  // earlier tests' threads reaped
  int stops = 0;
  StartFaultSubscription a, b;
  {
    HostAddressSpaceOptions o = SmallOptions();
    o.page_server_threads = 2;
    o.stop_guests = [&stops] { ++stops; };
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
    ASSERT_THAT(space->hub().Register(a), IsOk());
    ASSERT_THAT(space->hub().Register(b), IsOk());
    FillAll(*space, 7);
    std::vector<uint8_t> buf(kPageSize);
    ASSERT_THAT(dma->Read(Gpa{0}, absl::MakeSpan(buf)), IsOk());
    ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*space, PageRange{0, kPages}));
    ASSERT_EQ(r.reclaimed, kPages);  // everything swapped out
    // The driver is its owner's (Machine's), stopped before the space's teardown.
    ReclaimDriver driver(*space, ReclaimDriverOptions{});
    ASSERT_THAT(driver.Start(), IsOk());
    EXPECT_GT(ThreadCount(), threads_before);
    driver.Stop();
    space->Teardown();
    space->Teardown();  // idempotent
    EXPECT_EQ(stops, 1);
    EXPECT_EQ(a.releases(), 1u);
    EXPECT_EQ(b.releases(), 1u);
    EXPECT_THAT(dma->Read(Gpa{0}, absl::MakeSpan(buf)),
                StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
    EXPECT_THAT(Reclaim(*space, PageRange{0, 1}).status(),
                StatusIs(absl::StatusCode::kFailedPrecondition, ::testing::_));
    EXPECT_EQ(space->ram(), nullptr);
  }
  EXPECT_EQ(a.releases(), 1u);
  EXPECT_EQ(OpenFdCount(), fds_before);
  EXPECT_EQ(SettledThreadCount(threads_before), threads_before);
}

}  // namespace
}  // namespace mmuvisor::vmm
