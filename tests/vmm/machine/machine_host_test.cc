// A real Machine on HostAddressSpace-owned RAM under KVM: every host operation happens
// while the guest (machine_test_guest.h) writes and verifies a pattern, and the guest is
// the oracle (its mismatch counts come back through port I/O, its total as the DONE code).
// Skips visibly without /dev/kvm.
#include <linux/kvm.h>

#include <atomic>
#include <cstring>
#include <functional>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/mutex.h"
#include "support/dma_port.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/discard.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/host_test_support.h"
#include "vmm/host/migrate.h"
#include "vmm/host/protect.h"
#include "vmm/host/reclaim.h"
#include "vmm/machine/machine.h"
#include "vmm/machine/machine_test_guest.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::vmm::testing::DmaPort;
using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::GuestWord;
using ::mmuvisor::vmm::testing::kGuestDataGpa;
using ::mmuvisor::vmm::testing::kGuestDataPages;
using ::mmuvisor::vmm::testing::kGuestPort;
using ::testing::Each;
using ::testing::HasSubstr;

constexpr uint64_t kRamBytes = 8ull << 20;

// The guest's port: calls on_written(round) after each write phase (vCPU thread), records
// the per-round mismatch counts and runs `rounds` rounds (or until `more` says stop).
class RoundsDevice : public PortIoDevice {
 public:
  explicit RoundsDevice(uint64_t rounds) : rounds_(rounds) {}
  std::function<void(uint64_t round)> on_written;
  std::function<bool(uint64_t round)> more;  // overrides `rounds` when set

  IoAction Write(uint32_t /*vcpu*/, uint16_t offset, absl::Span<const uint8_t> data) override {
    uint32_t v = 0;
    std::memcpy(&v, data.data(), std::min<size_t>(data.size(), sizeof(v)));
    if (offset == 0) {
      round_ = v;
      if (on_written) on_written(v);
    } else if (offset == 4) {
      mismatches_.push_back(v);
    }
    return IoAction::kContinue;
  }
  void Read(uint32_t /*vcpu*/, uint16_t offset, absl::Span<uint8_t> data) override {
    const uint32_t again = offset == 8 && (more ? more(round_) : round_ < rounds_) ? 1 : 0;
    std::memset(data.data(), 0, data.size());
    std::memcpy(data.data(), &again, std::min<size_t>(data.size(), sizeof(again)));
  }
  // After Run() returned (the vCPU thread is joined).
  const std::vector<uint32_t>& mismatches() const { return mismatches_; }
  uint64_t rounds_done() const { return round_; }

 private:
  const uint64_t rounds_;
  uint64_t round_ = 0;
  std::vector<uint32_t> mismatches_;
};

MachineConfig Config() {
  MachineConfig config;
  config.ram_size = ByteSize{kRamBytes};
  config.timeout = absl::Seconds(120);  // nested KVM under TCG is slow
  config.host.page_server_threads = 2;
  return config;
}

absl::StatusOr<std::unique_ptr<Machine>> MakeMachine(const MachineConfig& config,
                                                     RoundsDevice* device) {
  const std::vector<uint8_t> elf = testing::RoundsGuestElf();
  absl::StatusOr<std::unique_ptr<Machine>> m = Machine::Create(config, elf);
  if (!m.ok()) return m;
  if (absl::Status s = (*m)->AttachPortDevice(kGuestPort, 12, device); !s.ok()) return s;
  return m;
}

PageRange AllPages(Machine& m) { return PageRange{0, m.host().num_pages()}; }
PageRange DataPages(Machine& m) {
  absl::StatusOr<PageRange> r =
      m.host().PagesOf(Gpa{kGuestDataGpa}, ByteSize{kGuestDataPages * kPageSize});
  EXPECT_TRUE(r.ok()) << r.status();
  return r.ok() ? *r : PageRange{};
}

void ExpectCleanRun(const RunResult& r, const RoundsDevice& device, uint64_t rounds) {
  EXPECT_EQ(r.verdict, Verdict::kClean) << r.summary;
  EXPECT_EQ(device.rounds_done(), rounds);
  EXPECT_EQ(device.mismatches().size(), rounds);
  EXPECT_THAT(device.mismatches(), Each(0u));
}

TEST(MachineHostTest, ReclaimAllThenTheGuestRereadsIdenticalDataThroughSwapIns) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
  ReclaimResult reclaimed;
  uint64_t swap_ins_before = 0;
  device.on_written = [&](uint64_t round) {
    if (round != 1) return;
    swap_ins_before = m->host().stats().swapped_in;
    absl::StatusOr<ReclaimResult> r = Reclaim(m->host(), AllPages(*m));
    ASSERT_THAT(r.status(), IsOk());
    reclaimed = *r;
  };
  const RunResult r = m->Run();
  ExpectCleanRun(r, device, 2);
  EXPECT_GE(reclaimed.reclaimed, kGuestDataPages);
  EXPECT_EQ(reclaimed.save_failures, 0u);
  // The verify phase after the reclaim read every data page back through the page server.
  EXPECT_GE(m->host().stats().swapped_in - swap_ins_before, kGuestDataPages);
  RecordProperty("dirty_tracking", DirtyTrackingModeName(m->host().dirty_tracking().mode));
}

TEST(MachineHostTest, WithoutAPageServerRamIsPlainMemoryAndReclaimIsRefused) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  MachineConfig config = Config();
  config.page_server = false;
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  EXPECT_EQ(m->host().page_server(), nullptr);
  absl::Status reclaim;
  device.on_written = [&](uint64_t round) {
    if (round == 1) reclaim = Reclaim(m->host(), DataPages(*m)).status();
  };
  // The guest's first touches of its data pages are the kernel's zero-fills, not the
  // server's; it writes and verifies every page in both rounds, the refused reclaim
  // between a write and its verification having taken nothing.
  const RunResult r = m->Run();
  ExpectCleanRun(r, device, 2);
  EXPECT_THAT(reclaim, StatusIs(absl::StatusCode::kFailedPrecondition,
                                HasSubstr("the page server is not started")));
  EXPECT_EQ(m->host().stats().swapped_in, 0u);

  config.reclaim = ReclaimDriverOptions{};
  absl::StatusOr<std::unique_ptr<Machine>> refused = MakeMachine(config, &device);
  EXPECT_THAT(refused.status(), StatusIs(absl::StatusCode::kInvalidArgument,
                                         HasSubstr("needs the page server")));
  EXPECT_TRUE(IsInputError(refused.status()));
}

// The guest's round-2 stores must meet the reclaim window while its range is read-only.
// The vCPU (in the round-1 port write) is held until the window's body is done (range
// read-only, pages saved and punched: the kBeforeEnd hook), and the window until a vCPU
// has faulted. Waiting only for the window to be *open* (its pages locked) was not enough:
// the hub start and the read-only step come after that, and on kvm_pvm the guest wrote and
// verified rounds 2 and 3 (about 1.5 ms) before the window reached its start (seen
// 2026-12-03: the window hook ran at round 3, no fault, the hold waited out its 60 s).
TEST(MachineHostTest, AGuestWriteIntoAnOpenWindowIsRetriedAfterItClosesAndNotLost) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  std::atomic<bool> hold{false};
  std::atomic<bool> body_done{false};
  std::atomic<Machine*> machine{nullptr};
  MachineConfig config = Config();
  config.host.window_hook = [&](WindowPoint point, const notifier::Range&) {
    if (point != WindowPoint::kBeforeEnd || !hold.load()) return;
    body_done.store(true);  // lets the vCPU go on: its round-2 stores meet the read-only range
    // Bounded: the test then fails on guest_fault_retries below, never hangs.
    (void)WaitUntil([&] { return machine.load()->fault_stats().faults > 0; });
  };
  RoundsDevice device(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  machine.store(m.get());
  std::thread storm;
  device.on_written = [&](uint64_t round) {
    if (round != 1) return;
    storm = std::thread([&] {
      hold.store(true);
      EXPECT_THAT(Reclaim(m->host(), DataPages(*m)).status(), IsOk());
      hold.store(false);
    });
    ASSERT_TRUE(WaitUntil([&] { return body_done.load(); }))
        << "the reclaim window did not reach its end within " << kTestWaitLimit;
  };
  const RunResult r = m->Run();
  if (storm.joinable()) storm.join();
  ExpectCleanRun(r, device, 3);
  EXPECT_GE(r.guest_fault_retries, 1u);
  EXPECT_EQ(r.protected_write_events, 0u);
  RecordProperty("guest_fault_retries", static_cast<int>(r.guest_fault_retries));
}

// The guest starts while a reclaim window holds its page tables read-only. A shadow-paging
// KVM (kvm_pvm) walks the guest's tables in software and writes their Accessed/Dirty bits
// through the host mapping; a write refused there becomes a #PF injected into the guest,
// not an exit (with no IDT yet: a triple fault at the entry point). The tables the VMM
// builds carry A and D already, so the walk never writes them. The window is held until
// the guest has made its first report or stopped (bounded).
TEST(MachineHostTest, TheGuestStartsWhileAReclaimWindowHoldsItsPageTablesReadOnly) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  std::atomic<bool> armed{false};
  std::atomic<bool> window_open{false};
  std::atomic<bool> reported{false};
  std::atomic<bool> run_done{false};
  MachineConfig config = Config();
  config.host.window_hook = [&](WindowPoint point, const notifier::Range&) {
    if (point != WindowPoint::kBeforeEnd || !armed.exchange(false)) return;
    window_open.store(true);
    (void)WaitUntil([&] { return reported.load() || run_done.load(); });
  };
  RoundsDevice device(1);
  device.on_written = [&](uint64_t) { reported.store(true); };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  ASSERT_OK_AND_ASSIGN(
      const PageRange tables,
      m->host().PagesOf(Gpa{MMV_PAGE_TABLE_GPA},
                        ByteSize{MMV_PAGE_TABLE_END_GPA - MMV_PAGE_TABLE_GPA}));
  armed.store(true);
  absl::StatusOr<ReclaimResult> reclaimed = absl::UnknownError("not run");
  std::thread reclaim([&] { reclaimed = Reclaim(m->host(), tables); });
  const bool opened = WaitUntil([&] { return window_open.load(); });
  RunResult r;
  if (opened) r = m->Run();
  run_done.store(true);
  reclaim.join();
  ASSERT_TRUE(opened) << "the reclaim window did not reach its end within " << kTestWaitLimit;
  ASSERT_THAT(reclaimed.status(), IsOk());
  EXPECT_GE(reclaimed->reclaimed, 1u);  // the tables were saved and discarded under it
  ExpectCleanRun(r, device, 1);
}

class ProtectedWriteObserver : public MachineObserver {
 public:
  bool OnProtectedWrite(uint32_t /*vcpu*/, std::optional<Gpa> gpa,
                        absl::string_view detail) override {
    MutexLock lock(&mu_);
    details_.push_back(std::string(detail));
    gpa_ = gpa;
    if (unprotect_ == nullptr) return false;
    return unprotect_().ok();
  }
  std::function<absl::Status()> unprotect_;
  std::vector<std::string> details() {
    MutexLock lock(&mu_);
    return details_;
  }

 private:
  Mutex mu_;
  std::vector<std::string> details_ ABSL_GUARDED_BY(mu_);
  std::optional<Gpa> gpa_ ABSL_GUARDED_BY(mu_);
};

TEST(MachineHostTest, AProtectedWriteIsAReportedEventAndUnprotectLetsTheGuestContinue) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  ProtectedWriteObserver observer;
  MachineConfig config = Config();
  config.observer = &observer;
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  const PageRange target{DataPages(*m).first + 5, 1};
  observer.unprotect_ = [&] { return Unprotect(m->host(), target); };
  device.on_written = [&](uint64_t round) {
    if (round == 1) {
      ASSERT_THAT(Protect(m->host(), target, PageProtection::kReadOnly), IsOk());
    }
  };
  const RunResult r = m->Run();
  ExpectCleanRun(r, device, 2);
  EXPECT_EQ(r.protected_write_events, 1u);
  ASSERT_EQ(observer.details().size(), 1u);
  EXPECT_THAT(observer.details()[0], HasSubstr("guest write to write-protected memory"));
}

TEST(MachineHostTest, AProtectedWriteStopsTheVcpuWithTheEventInsteadOfHanging) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
  const PageRange target{DataPages(*m).first, 1};
  device.on_written = [&](uint64_t round) {
    if (round == 1) {
      ASSERT_THAT(Protect(m->host(), target, PageProtection::kReadOnly), IsOk());
    }
  };
  const RunResult r = m->Run();
  EXPECT_EQ(r.verdict, Verdict::kCrashed) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("guest write to write-protected memory"));
  ASSERT_EQ(r.vcpus.size(), 1u);
  EXPECT_TRUE(r.vcpus[0].stop.protected_write);
  EXPECT_EQ(r.protected_write_events, 1u);
  // The write did not land: the page still holds round 1's word.
  uint64_t word = 0;
  ASSERT_THAT(m->ReadGuest(Gpa{kGuestDataGpa}, absl::Span<uint8_t>(
                                                   reinterpret_cast<uint8_t*>(&word), 8)),
              IsOk());
  EXPECT_EQ(word, GuestWord(0, 1));
}

// Windows that never stop opening must not turn a protected write into an endless retry.
// Two host threads discard one unused page each in a relay: a storm window closes only
// after the other thread's next window has opened, so from the first one on some window is
// always open. On Linux 6.1 the EFAULT carries no address and every failed entry overlaps
// a window, so only Machine's identical-EFAULT limit (kMaxIdenticalEfaults) can end it;
// without that limit the run ends by its timeout instead (checked by disabling it).
TEST(MachineHostTest, AProtectedWriteIsReportedEvenWhileWindowsKeepOpening) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  constexpr uint64_t kStormGpa = 0x600000;  // above the guest's data and the DMA tests' region
  std::atomic<bool> stop_storm{false};
  std::atomic<uint64_t> storm_first{0}, storm_end{0};  // host addresses of the storm pages
  std::atomic<uint64_t> storm_seq{0};                  // storm windows opened so far
  MachineConfig config = Config();
  config.timeout = absl::Seconds(90);
  config.host.window_hook = [&](WindowPoint point, const notifier::Range& range) {
    if (range.start < storm_first.load() || range.start >= storm_end.load()) return;
    thread_local uint64_t mine = 0;  // this storm thread's open window
    if (point == WindowPoint::kAfterStart) {
      mine = storm_seq.fetch_add(1) + 1;
      return;
    }
    while (!stop_storm.load() && storm_seq.load() <= mine) {
      absl::SleepFor(absl::Microseconds(50));  // until the other thread's next one is open
    }
  };
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  ASSERT_OK_AND_ASSIGN(PageRange storm_pages,
                       m->host().PagesOf(Gpa{kStormGpa}, ByteSize{2 * kPageSize}));
  storm_first.store(m->host().AddressOf(storm_pages.first));
  storm_end.store(m->host().AddressOf(storm_pages.first + 2));
  const PageRange target{DataPages(*m).first, 1};
  std::vector<std::thread> storm;
  device.on_written = [&](uint64_t round) {
    if (round != 1) return;
    ASSERT_THAT(Protect(m->host(), target, PageProtection::kReadOnly), IsOk());
    for (uint64_t t = 0; t < 2; ++t) {
      storm.emplace_back([&, t] {
        while (!stop_storm.load()) {
          EXPECT_THAT(Discard(m->host(), PageRange{storm_pages.first + t, 1}), IsOk());
        }
      });
    }
    // The guest's next write (round 2) must meet an open window.
    ASSERT_TRUE(WaitUntil([&] { return m->host().windows().held() > 0; }))
        << "no storm window opened within " << kTestWaitLimit;
  };
  const RunResult r = m->Run();
  stop_storm.store(true);
  for (std::thread& t : storm) t.join();
  EXPECT_EQ(r.verdict, Verdict::kCrashed) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("guest write to write-protected memory"));
  EXPECT_THAT(r.summary, HasSubstr("identical EFAULTs in a row"));
  ASSERT_EQ(r.vcpus.size(), 1u);
  EXPECT_TRUE(r.vcpus[0].stop.protected_write);
  EXPECT_EQ(r.protected_write_events, 1u);
  EXPECT_GE(r.guest_fault_retries, Machine::kMaxIdenticalEfaults - 1);
  EXPECT_GT(storm_seq.load(), 2u);
}

TEST(MachineHostTest, AFailingSwapStoreLosesNothing) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  RoundsDevice device(3);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
  ReclaimResult failed;
  device.on_written = [&](uint64_t round) {
    if (round == 1) {
      m->host().store()->SetWriteFaultInjection(IoFaultInjection{.probability = 1.0, .error = ENOSPC});
      absl::StatusOr<ReclaimResult> r = Reclaim(m->host(), DataPages(*m));
      m->host().store()->ClearFaultInjection();
      ASSERT_THAT(r.status(), IsOk());
      failed = *r;
    } else if (round == 2) {
      // Half the saves fail (EIO, some torn halfway): those pages stay resident.
      m->host().store()->SetWriteFaultInjection(
          IoFaultInjection{.probability = 0.5, .error = EIO, .partial = true});
      ASSERT_THAT(Reclaim(m->host(), AllPages(*m)).status(), IsOk());
      m->host().store()->ClearFaultInjection();
    }
  };
  const RunResult r = m->Run();
  ExpectCleanRun(r, device, 3);
  EXPECT_EQ(failed.reclaimed, 0u);
  EXPECT_EQ(failed.save_failures, kGuestDataPages);
  EXPECT_THAT(failed.first_save_error, StatusIs(absl::StatusCode::kResourceExhausted, HasSubstr("")));
}

TEST(MachineHostTest, APageServerFailureStopsTheVmWithAClearError) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  RoundsDevice device(2);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
  device.on_written = [&](uint64_t round) {
    if (round != 1) return;
    ASSERT_THAT(Reclaim(m->host(), DataPages(*m)).status(), IsOk());
    m->host().store()->SetReadFaultInjection(IoFaultInjection{.fail_nth = 1, .error = EIO});
  };
  const RunResult r = m->Run();  // must return: no vCPU hangs on the poisoned page
  EXPECT_EQ(r.verdict, Verdict::kHostError) << r.summary;
  EXPECT_THAT(r.summary, HasSubstr("page server failed"));
  EXPECT_FALSE(r.page_server_error.ok());
}

TEST(MachineHostTest, RequestStopEndsTheRunAsStoppedByTheHost) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  RoundsDevice device(0);
  std::atomic<bool> running{false};
  device.more = [&](uint64_t) {
    running.store(true);
    return true;  // forever
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
  // The stopper waits for the guest's first round, but never past the run itself: a guest
  // that crashed before it (the run ended without it) must fail this test, not hang it.
  std::atomic<bool> run_over{false};
  std::atomic<bool> stopped{false};
  std::thread stopper([&] {
    if (WaitUntil([&] { return running.load() || run_over.load(); }) && running.load()) {
      m->RequestStop("test is done");
      stopped.store(true);
    }
  });
  const RunResult r = m->Run();
  run_over.store(true);
  stopper.join();
  ASSERT_TRUE(stopped.load()) << "the guest never started its rounds: " << r.summary;
  EXPECT_EQ(r.verdict, Verdict::kClean) << r.summary;
  EXPECT_EQ(r.summary, "stopped by host: test is done");
  ASSERT_TRUE(r.host_stop.has_value());
  EXPECT_EQ(r.vcpus[0].stop.kind, StopKind::kKicked);
  EXPECT_THAT(m->AttachPortDevice(0x0f00, 1, &device),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("already running")));
}

// The reclaim driver Run() starts from config.reclaim takes pages out under a running
// guest: 1% of 2 MiB (5 pages) may stay resident while the spinning guest runs, as in
// `mmuvisor run --resident 1%`, whose report line reads these stats. The wait for the
// first pass that reclaims is bounded by kTestWaitLimit here, not by a --timeout that a
// loaded machine may use up before the driver's thread gets to run (tests/vmm/cli keeps
// only what every schedule guarantees).
TEST(MachineHostTest, TheReclaimDriverTakesPagesOutUnderARunningGuest) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  MachineConfig config;
  config.ram_size = ByteSize{2ull << 20};
  config.timeout = absl::InfiniteDuration();  // the guest spins until the test stops it
  config.dirty_log = DirtyLogSource::kAuto;   // as the CLI with --resident
  config.page_server = true;
  ReclaimDriverOptions reclaim;
  reclaim.target_resident_fraction = 0.01;
  config.reclaim = reclaim;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m,
                       Machine::Create(config, testing::SpinningGuestElf()));
  std::atomic<bool> run_over{false};
  bool reclaimed = false;  // the stopper's; read after the join
  ReclaimDriverStats seen;
  std::thread stopper([&] {
    // Never past the run itself: a run that ended early (the guest crashed) must fail the
    // test, not keep it waiting.
    WaitUntil([&] {
      if (run_over.load()) return true;
      const ReclaimDriver* driver = m->reclaim_driver();
      if (driver == nullptr) return false;
      seen = driver->stats();
      reclaimed = seen.passes >= 1 && seen.reclaimed >= 1;
      return reclaimed;
    });
    m->RequestStop("test is done");  // always: the run has no timeout of its own
  });
  const RunResult r = m->Run();
  run_over.store(true);
  stopper.join();
  ASSERT_TRUE(reclaimed) << "no reclaim pass took a page out within " << kTestWaitLimit
                         << " (passes " << seen.passes << ", reclaimed " << seen.reclaimed
                         << "); run: " << r.summary;
  EXPECT_EQ(r.verdict, Verdict::kClean) << r.summary;
  EXPECT_EQ(r.summary, "stopped by host: test is done");
  // The driver outlives Run() (the Machine stops it at destruction); stopped, its counters
  // are final: every page written back was discarded, unless a pass failed halfway.
  ReclaimDriver* driver = m->reclaim_driver();
  ASSERT_NE(driver, nullptr);
  driver->Stop();
  const ReclaimDriverStats after = driver->stats();
  EXPECT_EQ(after.errors, 0u) << driver->last_error();
  EXPECT_LE(after.written_back, after.reclaimed);
  EXPECT_GE(after.reclaimed, seen.reclaimed);
}

TEST(MachineHostTest, TeardownWithPagesOutAndSubscriptionsReleasesOnceAndLeaksNothing) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  std::thread([] {}).join();  // sanitizer helper threads exist before the baseline
  const int fds_before = testing::OpenFdCount();
  const int threads_before = testing::SettledThreadCount(1);  // earlier tests' threads reaped
  StartFaultSubscription a, b;
  {
    RoundsDevice device(1);
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(Config(), &device));
    ASSERT_THAT(m->host().hub().Register(a), IsOk());
    ASSERT_THAT(m->host().hub().Register(b), IsOk());
    const RunResult r = m->Run();
    ExpectCleanRun(r, device, 1);
    ASSERT_OK_AND_ASSIGN(ReclaimResult out, Reclaim(m->host(), AllPages(*m)));
    EXPECT_GE(out.reclaimed, kGuestDataPages);
    ASSERT_THAT(m->StartReclaimDriver(ReclaimDriverOptions{}), IsOk());
    EXPECT_GT(testing::ThreadCount(), threads_before);
    EXPECT_EQ(a.releases(), 0u);
  }
  EXPECT_EQ(a.releases(), 1u);
  EXPECT_EQ(b.releases(), 1u);
  EXPECT_EQ(testing::OpenFdCount(), fds_before);
  EXPECT_EQ(testing::SettledThreadCount(threads_before), threads_before);
}

TEST(MachineHostTest, ASecondaryMmuReaderWriterSeesNoStaleDataInAReclaimStormWhileTheGuestRuns) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  constexpr uint64_t kDmaGpa = 0x400000;  // the device's region; the guest's is below
  constexpr uint64_t kDmaPages = 32;
  constexpr int kStormOps = 150;
  std::atomic<bool> storm_done{false};
  RoundsDevice device(0);
  device.more = [&](uint64_t round) { return round < 2 || !storm_done.load(); };
  MachineConfig config = Config();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, MakeMachine(config, &device));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(m->host()));
  RunResult result;
  std::thread vcpus([&] { result = m->Run(); });

  std::vector<uint64_t> version(kDmaPages, 0);
  std::atomic<bool> stop_dma{false};
  std::atomic<uint64_t> dma_checks{0};
  std::thread dma_thread([&] {
    std::vector<uint8_t> out(kPageSize), in(kPageSize);
    std::mt19937_64 rng(7);
    auto fill = [](std::vector<uint8_t>& b, uint64_t page, uint64_t v) {
      for (uint64_t i = 0; i < kPageSize; ++i) b[i] = static_cast<uint8_t>(page * 131 + v * 31 + i * 7);
    };
    for (uint64_t round = 1; !stop_dma.load(); ++round) {
      const uint64_t i = rng() % kDmaPages;
      fill(out, i, round);
      ASSERT_THAT(dma->Write(Gpa{kDmaGpa + i * kPageSize}, absl::MakeSpan(out)), IsOk());
      version[i] = round;
      const uint64_t j = rng() % kDmaPages;
      ASSERT_THAT(dma->Read(Gpa{kDmaGpa + j * kPageSize}, absl::MakeSpan(in)), IsOk());
      std::vector<uint8_t> want(kPageSize, 0);
      if (version[j] != 0) fill(want, j, version[j]);
      ASSERT_EQ(in, want) << "stale DMA read of page " << j << " version " << version[j];
      dma_checks.fetch_add(1);
    }
  });
  std::mt19937_64 rng(42);
  const uint64_t pages = m->host().num_pages();
  for (int op = 0; op < kStormOps; ++op) {
    const uint64_t first = rng() % pages;
    const uint64_t count = 1 + rng() % std::min<uint64_t>(64, pages - first);
    // EXPECT and stop the storm, never ASSERT: the DMA and vCPU threads must be stopped
    // and joined below on every path (a joinable std::thread destroyed aborts the binary).
    const absl::Status done = rng() % 3 == 0
                                  ? Migrate(m->host(), PageRange{first, count}).status()
                                  : Reclaim(m->host(), PageRange{first, count}).status();
    EXPECT_THAT(done, IsOk()) << "storm op " << op;
    if (!done.ok()) break;
  }
  stop_dma.store(true);
  dma_thread.join();
  storm_done.store(true);
  vcpus.join();
  EXPECT_EQ(result.verdict, Verdict::kClean) << result.summary;
  EXPECT_THAT(device.mismatches(), Each(0u));
  EXPECT_GE(device.rounds_done(), 2u);
  // Everything out, then every DMA page back with its last version.
  ASSERT_THAT(Reclaim(m->host(), AllPages(*m)).status(), IsOk());
  for (uint64_t i = 0; i < kDmaPages; ++i) {
    std::vector<uint8_t> in(kPageSize), want(kPageSize, 0);
    ASSERT_THAT(dma->Read(Gpa{kDmaGpa + i * kPageSize}, absl::MakeSpan(in)), IsOk());
    for (uint64_t k = 0; version[i] != 0 && k < kPageSize; ++k) {
      want[k] = static_cast<uint8_t>(i * 131 + version[i] * 31 + k * 7);
    }
    ASSERT_EQ(in, want) << "lost DMA write to page " << i;
  }
  EXPECT_GT(dma_checks.load(), 0u);
  EXPECT_GT(m->host().stats().swapped_in, 0u);
  EXPECT_EQ(m->host().windows().held(), 0u);
  RecordProperty("guest_fault_retries", static_cast<int>(result.guest_fault_retries));
  RecordProperty("dma_checks", static_cast<int>(dma_checks.load()));
  dma.reset();  // before the space
}

}  // namespace
}  // namespace mmuvisor::vmm
