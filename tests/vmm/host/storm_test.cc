// A reclaim / migrate / discard / OOM-reap storm with real threads and no KVM.
//   - guest threads own region G: they store new versions of their pages through the
//     kernel (process_vm_readv into guest RAM: a failed store is EFAULT, as KVM_RUN
//     reports it; they classify it, wait for the window and retry) and re-read them with
//     plain loads, faulting through the page server;
//   - a DMA thread owns region D: it writes and re-reads versions through a DmaPort (a
//     SecondaryMmu subscribed to the hub, HostAddressSpace as its Primary);
//   - the DMA thread also reads region S, which the storm discards: each page must be
//     all zeros or its original pattern, never a mix;
//   - the storm thread reclaims, migrates, OOM-reaps (with injected EAGAIN) and discards.
// Oracle: no read ever returns anything but the latest version written; after the storm
// a reclaim of everything and a re-read gives exactly the latest versions.
#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <atomic>
#include <memory>
#include <random>
#include <thread>
#include <vector>

#include "absl/strings/str_format.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "host_test_support.h"
#include "notifier/base/errno_status.h"
#include "support/dma_port.h"
#include "support/status_matchers.h"
#include "support/stop_and_join.h"
#include "support/wait.h"
#include "vmm/host/discard.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/migrate.h"
#include "vmm/host/oom_reap.h"
#include "vmm/host/reclaim.h"
#include "vmm/machine/guest_fault_verdict.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::vmm::testing::DmaPort;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::FillPattern;
using ::mmuvisor::vmm::testing::FirstMismatch;
using ::mmuvisor::vmm::testing::IsZeroPage;

constexpr uint64_t kGuestThreads = 2;
constexpr uint64_t kGuestPagesPerThread = 24;
constexpr uint64_t kGuestPages = kGuestThreads * kGuestPagesPerThread;  // G = [0, 48)
constexpr uint64_t kDmaFirst = kGuestPages;                              // D = [48, 80)
constexpr uint64_t kDmaPages = 32;
constexpr uint64_t kScratchFirst = kDmaFirst + kDmaPages;                // S = [80, 96)
constexpr uint64_t kScratchPages = 16;
constexpr uint64_t kPages = kScratchFirst + kScratchPages;
constexpr int kStormOps = 400;

// A guest store of a whole page through the kernel. Returns OK, or the verdict's error.
absl::Status GuestStore(HostAddressSpace& space, uint64_t page, const uint8_t* data,
                        std::atomic<uint64_t>& efaults) {
  for (int attempt = 0; attempt < 100000; ++attempt) {
    iovec local{space.PagePointer(page), kPageSize};
    iovec remote{const_cast<uint8_t*>(data), kPageSize};
    // The raw syscall, not libc's wrapper: ThreadSanitizer intercepts the wrapper and
    // would model the kernel's copy as a plain store. A vCPU's store is likewise invisible
    // to it; what orders it against the reclaimer's copy is the read-only mapping of the
    // window (the store fails with EFAULT), which TSan cannot see.
    const auto n = static_cast<ssize_t>(
        syscall(SYS_process_vm_readv, getpid(), &local, 1UL, &remote, 1UL, 0UL));
    if (n == static_cast<ssize_t>(kPageSize)) return absl::OkStatus();
    if (n < 0 && errno != EFAULT) return ErrnoToStatus(errno, "process_vm_readv");
    efaults.fetch_add(1, std::memory_order_relaxed);
    const Gpa gpa{page * kPageSize};
    GuestFaultVerdict v = ClassifyGuestFault(space, gpa, /*write=*/true);
    if (v.kind != GuestFaultKind::kRetry) {
      return absl::InternalError(absl::StrFormat("page %d: %s: %s", page,
                                                 GuestFaultKindName(v.kind), v.detail));
    }
    WaitForPage(space, gpa);
  }
  return absl::DeadlineExceededError(absl::StrFormat("page %d: store never completed", page));
}

TEST(HostStormTest, SecondaryMmuAndGuestsNeverSeeStaleDataDuringAReclaimStorm) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.page_server_threads = 2;
  o.oom.max_attempts = 3;
  o.oom.initial_backoff = absl::Microseconds(20);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  StartFaultSubscription injector(StartFaults{.eagain_probability = 0.3,
                                              .blockable_delay = absl::Microseconds(50)});
  ASSERT_THAT(space->hub().Register(injector), IsOk());

  // Version 0 everywhere; the scratch region keeps it until discarded.
  for (uint64_t p = 0; p < kPages; ++p) FillPattern(space->PagePointer(p), p, 0);
  std::vector<uint64_t> guest_version(kGuestPages, 0);  // each slot touched by one thread
  std::vector<uint64_t> dma_version(kDmaPages, 0);      // DMA thread only
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> efaults{0}, guest_checks{0}, dma_checks{0}, scratch_zero{0};

  std::vector<std::thread> threads;
  // Stops and joins the workers on every way out, an ASSERT's early return included.
  const ::mmuvisor::testing::StopAndJoin stop_and_join(stop, threads);
  for (uint64_t t = 0; t < kGuestThreads; ++t) {
    threads.emplace_back([&, t] {
      std::vector<uint8_t> buf(kPageSize);
      const uint64_t first = t * kGuestPagesPerThread;
      for (uint64_t round = 1; !stop.load(std::memory_order_relaxed); ++round) {
        for (uint64_t i = 0; i < kGuestPagesPerThread; ++i) {
          const uint64_t page = first + i;
          FillPattern(buf.data(), page, round);
          absl::Status s = GuestStore(*space, page, buf.data(), efaults);
          ASSERT_THAT(s, IsOk());
          guest_version[page] = round;
          const uint64_t check = first + (i * 7 + round) % kGuestPagesPerThread;
          ASSERT_EQ(FirstMismatch(space->PagePointer(check), check, guest_version[check]), -1)
              << "guest read stale data at page " << check;
          guest_checks.fetch_add(1, std::memory_order_relaxed);
        }
      }
    });
  }
  threads.emplace_back([&] {
    std::vector<uint8_t> out(kPageSize), in(kPageSize);
    std::mt19937_64 rng(7);
    for (uint64_t round = 1; !stop.load(std::memory_order_relaxed); ++round) {
      const uint64_t i = rng() % kDmaPages;
      const uint64_t page = kDmaFirst + i;
      FillPattern(out.data(), page, round);
      ASSERT_THAT(dma->Write(Gpa{page * kPageSize}, absl::MakeSpan(out)), IsOk());
      dma_version[i] = round;
      const uint64_t j = rng() % kDmaPages;
      ASSERT_THAT(dma->Read(Gpa{(kDmaFirst + j) * kPageSize}, absl::MakeSpan(in)), IsOk());
      ASSERT_EQ(FirstMismatch(in.data(), kDmaFirst + j, dma_version[j]), -1)
          << "DMA read stale data at page " << kDmaFirst + j;
      const uint64_t s = kScratchFirst + rng() % kScratchPages;
      ASSERT_THAT(dma->Read(Gpa{s * kPageSize}, absl::MakeSpan(in)), IsOk());
      if (IsZeroPage(in.data())) {
        scratch_zero.fetch_add(1, std::memory_order_relaxed);
      } else {
        ASSERT_EQ(FirstMismatch(in.data(), s, 0), -1) << "torn scratch page " << s;
      }
      dma_checks.fetch_add(1, std::memory_order_relaxed);
    }
  });

  std::mt19937_64 rng(42);
  uint64_t reaped = 0, skipped = 0;
  for (int op = 0; op < kStormOps; ++op) {
    const uint64_t first = rng() % kPages;
    const uint64_t count = 1 + rng() % std::min<uint64_t>(16, kPages - first);
    const PageRange range{first, count};
    switch (rng() % 4) {
      case 0:
        ASSERT_THAT(Reclaim(*space, range).status(), IsOk());
        break;
      case 1:
        ASSERT_THAT(Migrate(*space, range).status(), IsOk());
        break;
      case 2: {
        ASSERT_OK_AND_ASSIGN(OomReapResult r, OomReap(*space, range));
        (r.reaped ? reaped : skipped) += 1;
        break;
      }
      case 3: {
        const uint64_t s = kScratchFirst + rng() % kScratchPages;
        ASSERT_THAT(Discard(*space, PageRange{s, 1}), IsOk());
        break;
      }
    }
  }
  // The guest and DMA threads loop until stopped: give each the chance to check something
  // (bounded) so the counts below hold in every schedule, not only when they got CPU.
  const bool checked = WaitUntil([&] { return guest_checks.load() > 0 && dma_checks.load() > 0; });
  stop.store(true, std::memory_order_relaxed);
  for (std::thread& t : threads) t.join();
  EXPECT_TRUE(checked) << "guest or DMA thread checked nothing within " << kTestWaitLimit;

  // Everything out, then everything back: exactly the latest versions.
  ASSERT_THAT(Reclaim(*space, PageRange{0, kPages}).status(), IsOk());
  for (uint64_t p = 0; p < kGuestPages; ++p) {
    ASSERT_EQ(FirstMismatch(space->PagePointer(p), p, guest_version[p]), -1) << "page " << p;
  }
  for (uint64_t i = 0; i < kDmaPages; ++i) {
    std::vector<uint8_t> in(kPageSize);
    ASSERT_THAT(dma->Read(Gpa{(kDmaFirst + i) * kPageSize}, absl::MakeSpan(in)), IsOk());
    ASSERT_EQ(FirstMismatch(in.data(), kDmaFirst + i, dma_version[i]), -1) << "page " << i;
  }
  HostStats stats = space->stats();
  EXPECT_GT(stats.swapped_in, 0u);
  EXPECT_GT(stats.reclaimed_pages, 0u);
  EXPECT_GT(guest_checks.load(), 0u);
  EXPECT_GT(dma_checks.load(), 0u);
  EXPECT_EQ(space->windows().held(), 0u);
  EXPECT_EQ(dma->mmu().in_progress(), 0);
  EXPECT_EQ(dma->mmu().active_invalidations(), 0);
  notifier::PairingSummary pairing = space->hub().pairing_summary();
  EXPECT_EQ(pairing.open, 0);
  EXPECT_EQ(pairing.violations, 0u) << pairing.ToString();
  // Every OOM retry was a refused start: the injector's, or the host copies' drain (none
  // run here). The DMA port's DeviceMmu has an end, so it never refuses: its start waits.
  EXPECT_EQ(stats.oom_eagain_retries, injector.eagains() + stats.host_copy_refusals);
  RecordProperty("guest_efaults", static_cast<int>(efaults.load()));
  RecordProperty("oom_reaped", static_cast<int>(reaped));
  RecordProperty("oom_skipped", static_cast<int>(skipped));
  ASSERT_THAT(space->hub().Unregister(injector), IsOk());
}

}  // namespace
}  // namespace mmuvisor::vmm
