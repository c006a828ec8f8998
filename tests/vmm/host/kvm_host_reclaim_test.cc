// HostAddressSpace with a real KVM guest. The guests are tiny real-mode stubs the test
// writes into guest RAM (real mode is emulated on PVM hosts, fine for a few thousand
// instructions): the guest is the oracle — it reads or writes guest RAM through KVM's own
// shadow MMU, which the kernel's notifier keeps coherent with what HostAddressSpace does.
//
// Not yet here (needs vmm/machine to run on a HostAddressSpace): the memstress guest in
// ring 3 writing patterns and reporting checksums through ucall while the reclaim driver
// runs. See vmm/host/README.md, "Switching vmm/machine".
#include <linux/kvm.h>
#include <pthread.h>

#include <atomic>
#include <condition_variable>
#include <csignal>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/discard.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/kvm_bindings.h"
#include "vmm/host/oom_reap.h"
#include "vmm/host/protect.h"
#include "vmm/host/reclaim.h"
#include "vmm/host/unmap.h"
#include "vmm/kvm/kvm_constants.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/machine/guest_fault_verdict.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::kTestWaitLimit;

constexpr uint64_t kPages = 64;          // 256 KiB at gpa 0
constexpr uint64_t kCodeGpa = 0x1000;    // page 1: the stub
constexpr uint64_t kDataGpa = 0x2000;    // pages 2..: data

struct KvmGuest {
  std::optional<KvmSystem> system;
  std::optional<KvmVm> vm;
  std::unique_ptr<KvmVcpu> vcpu;
  std::unique_ptr<KvmMemslotControl> slots;
  std::unique_ptr<KvmDirtyLog> log;
  std::unique_ptr<HostAddressSpace> space;
};

// Opens KVM or returns the reason to skip.
absl::Status MakeGuest(KvmGuest& g, std::vector<RamSlot> ram_slots = {}) {
  absl::StatusOr<KvmSystem> system = KvmSystem::Open();
  if (!system.ok()) return system.status();
  g.system.emplace(*std::move(system));
  absl::StatusOr<KvmVm> vm = g.system->CreateVm();
  if (!vm.ok()) return vm.status();
  g.vm.emplace(*std::move(vm));
  absl::StatusOr<int> mmap_size = g.system->VcpuMmapSize();
  if (!mmap_size.ok()) return mmap_size.status();
  absl::StatusOr<KvmVcpu> vcpu = g.vm->CreateVcpu(0, *mmap_size);
  if (!vcpu.ok()) return vcpu.status();
  g.vcpu = std::make_unique<KvmVcpu>(*std::move(vcpu));
  g.slots = std::make_unique<KvmMemslotControl>(*g.vm);
  g.log = std::make_unique<KvmDirtyLog>(*g.vm);
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.slots = std::move(ram_slots);
  o.memslot_control = g.slots.get();
  o.dirty_log = g.log.get();
  KvmVcpu* cpu = g.vcpu.get();
  o.dirty_probe = [cpu](const GuestMemorySlot& slot) { return RunRealModeWriteProbe(*cpu, slot); };
  absl::StatusOr<std::unique_ptr<HostAddressSpace>> space = HostAddressSpace::Create(o);
  if (!space.ok()) return space.status();
  g.space = *std::move(space);
  return absl::OkStatus();
}

#define MAKE_GUEST_OR_SKIP(g, ...)                                              \
  KvmGuest g;                                                                   \
  if (absl::Status make_status = MakeGuest(g, ##__VA_ARGS__); !make_status.ok()) { \
    if (!KvmSystem::Open().ok()) GTEST_SKIP() << "needs /dev/kvm: " << make_status; \
    FAIL() << make_status;                                                      \
  }

// The signal that interrupts KVM_RUN at a deadline: a no-op handler installed without
// SA_RESTART, so the interrupted ioctl returns EINTR (as vmm/vcpu's VcpuRunner kicks).
constexpr int kDeadlineSignal = SIGUSR1;

void InstallDeadlineSignalHandler() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_handler = [](int) {};
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART
    sigaction(kDeadlineSignal, &sa, nullptr);
  });
}

// While alive, bounds the guest runs of the thread that made it: once `limit` has passed
// it sets expired(), kvm_run::immediate_exit (a KVM_RUN about to start returns EINTR at
// once) and signals that thread (a KVM_RUN in progress returns EINTR). The destructor stops
// the watchdog and clears immediate_exit.
class RunDeadline {
 public:
  RunDeadline(KvmVcpu& vcpu, absl::Duration limit) : vcpu_(vcpu), target_(pthread_self()) {
    InstallDeadlineSignalHandler();
    watchdog_ = std::thread([this, limit] {
      std::unique_lock<std::mutex> lock(mu_);
      if (cv_.wait_for(lock, absl::ToChronoNanoseconds(limit), [&] { return done_; })) return;
      expired_.store(true);
      vcpu_.RequestImmediateExit(true);
      pthread_kill(target_, kDeadlineSignal);  // alive: it is waiting in ~RunDeadline or running
    });
  }
  ~RunDeadline() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      done_ = true;
    }
    cv_.notify_all();
    watchdog_.join();
    vcpu_.RequestImmediateExit(false);
  }
  RunDeadline(const RunDeadline&) = delete;
  RunDeadline& operator=(const RunDeadline&) = delete;

  bool expired() const { return expired_.load(); }

 private:
  KvmVcpu& vcpu_;
  const pthread_t target_;
  std::mutex mu_;
  std::condition_variable cv_;
  bool done_ = false;  // guarded by mu_
  std::atomic<bool> expired_{false};
  std::thread watchdog_;
};

// Loads `code` at kCodeGpa, real mode, cs = ds = `ds_base` >> 4 for data, and runs to the
// first exit other than EINTR. Returns KVM_RUN's status; the exit is in vcpu.run().
// Bounded: a guest that never exits (a stale or zeroed code page runs on through memory)
// is stopped at kTestWaitLimit and reported as DeadlineExceeded.
absl::Status RunStub(KvmVcpu& vcpu, HostAddressSpace& space, const std::vector<uint8_t>& code,
                     uint64_t ds_base = 0) {
  uint8_t* dst = space.PagePointer(kCodeGpa / kPageSize);
  for (size_t i = 0; i < code.size(); ++i) dst[i] = code[i];
  space.NoteHostWrite(PageRange{kCodeGpa / kPageSize, 1});
  absl::StatusOr<kvm_sregs> sregs = vcpu.GetSregs();
  if (!sregs.ok()) return sregs.status();
  sregs->cs.base = 0;
  sregs->cs.selector = 0;
  sregs->ds.base = ds_base;
  sregs->ds.selector = static_cast<uint16_t>(ds_base >> 4);
  if (absl::Status s = vcpu.SetSregs(*sregs); !s.ok()) return s;
  kvm_regs regs{};
  regs.rip = kCodeGpa;
  regs.rflags = 2;
  if (absl::Status s = vcpu.SetRegs(regs); !s.ok()) return s;
  RunDeadline deadline(vcpu, kTestWaitLimit);
  for (;;) {
    absl::Status s = vcpu.Run();
    if (!absl::IsUnavailable(s)) return s;
    if (deadline.expired()) {
      return absl::DeadlineExceededError(absl::StrCat(
          "the stub made no exit within ", absl::FormatDuration(kTestWaitLimit),
          " (stopped by a kick): is its code page stale or zero?"));
    }
  }
}

// xor ax,ax; xor dx,dx; mov si,0x2000; mov cx,0x1000; cld; L: lodsb; add dx,ax; loop L; hlt
const std::vector<uint8_t> kChecksumPage2 = {0x31, 0xC0, 0x31, 0xD2, 0xBE, 0x00, 0x20, 0xB9,
                                             0x00, 0x10, 0xFC, 0xAC, 0x01, 0xC2, 0xE2, 0xFB,
                                             0xF4};

uint16_t HostChecksum(const uint8_t* page) {
  uint16_t sum = 0;
  for (uint64_t i = 0; i < kPageSize; ++i) sum = static_cast<uint16_t>(sum + page[i]);
  return sum;
}

TEST(KvmHostReclaimTest, DirtyLogSelfCheckRunsARealGuestWriteAndSaysWhatItChose) {
  MAKE_GUEST_OR_SKIP(g);
  const DirtyTrackingChoice& choice = g.space->dirty_tracking();
  EXPECT_FALSE(choice.reason.empty());
  EXPECT_THAT(choice.reason, ::testing::HasSubstr("KVM_GET_DIRTY_LOG"));
  RecordProperty("dirty_tracking", DirtyTrackingModeName(choice.mode));
  // Whatever was chosen, reclaim must keep the guest's data.
  uint8_t* data = g.space->PagePointer(kDataGpa / kPageSize);
  for (uint64_t i = 0; i < kPageSize; ++i) data[i] = static_cast<uint8_t>(i * 13 + 5);
  const uint16_t expected = HostChecksum(data);
  ASSERT_THAT(Reclaim(*g.space, PageRange{0, kPages}).status(), IsOk());
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, kChecksumPage2), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  ASSERT_OK_AND_ASSIGN(kvm_regs regs, g.vcpu->GetRegs());
  EXPECT_EQ(static_cast<uint16_t>(regs.rdx), expected) << "the guest read other bytes";
}

TEST(KvmHostReclaimTest, ReclaimAllThenTheGuestRereadsIdenticalDataThroughSwapIns) {
  MAKE_GUEST_OR_SKIP(g);
  uint8_t* data = g.space->PagePointer(kDataGpa / kPageSize);
  for (uint64_t i = 0; i < kPageSize; ++i) data[i] = static_cast<uint8_t>(i * 7 + 3);
  const uint16_t expected = HostChecksum(data);
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, kChecksumPage2), IsOk());  // maps it in KVM too
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  const uint64_t swap_ins_before = g.space->stats().swapped_in;
  ASSERT_OK_AND_ASSIGN(ReclaimResult r, Reclaim(*g.space, PageRange{0, kPages}));
  EXPECT_GE(r.reclaimed, 2u);
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, kChecksumPage2), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  ASSERT_OK_AND_ASSIGN(kvm_regs regs, g.vcpu->GetRegs());
  EXPECT_EQ(static_cast<uint16_t>(regs.rdx), expected);
  EXPECT_GT(g.space->stats().swapped_in, swap_ins_before);
}

TEST(KvmHostReclaimTest, DiscardGivesTheGuestZeros) {
  MAKE_GUEST_OR_SKIP(g);
  uint8_t* data = g.space->PagePointer(kDataGpa / kPageSize);
  for (uint64_t i = 0; i < kPageSize; ++i) data[i] = 0xEE;
  ASSERT_THAT(Discard(*g.space, PageRange{kDataGpa / kPageSize, 1}), IsOk());
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, kChecksumPage2), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  ASSERT_OK_AND_ASSIGN(kvm_regs regs, g.vcpu->GetRegs());
  EXPECT_EQ(static_cast<uint16_t>(regs.rdx), 0);
}

TEST(KvmHostReclaimTest, ProtectedWriteSurfacesAndUnprotectLetsTheGuestContinue) {
  MAKE_GUEST_OR_SKIP(g);
  // mov byte [0x2000], 0x5a ; hlt
  const std::vector<uint8_t> store = {0xC6, 0x06, 0x00, 0x20, 0x5A, 0xF4};
  ASSERT_THAT(Protect(*g.space, PageRange{kDataGpa / kPageSize, 1}, PageProtection::kReadOnly),
              IsOk());
  absl::Status run = RunStub(*g.vcpu, *g.space, store);
  // Hardware-assisted KVM fails KVM_RUN with EFAULT; an emulated store (real mode on
  // shadow-paging hosts) cannot write the read-only page and exits as MMIO. Either way the
  // write surfaces, does not land, and the VMM classifies it.
  const bool surfaced = !run.ok() || g.vcpu->run()->exit_reason == KVM_EXIT_MMIO ||
                        g.vcpu->run()->exit_reason == kvm_abi::kExitMemoryFault;
  EXPECT_TRUE(surfaced) << run << " exit " << g.vcpu->run()->exit_reason;
  EXPECT_NE(*g.space->PagePointer(kDataGpa / kPageSize), 0x5A);
  EXPECT_EQ(ClassifyGuestFault(*g.space, Gpa{kDataGpa}, /*write=*/true).kind,
            GuestFaultKind::kProtected);
  ASSERT_THAT(Unprotect(*g.space, PageRange{kDataGpa / kPageSize, 1}), IsOk());
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, store), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  EXPECT_EQ(*g.space->PagePointer(kDataGpa / kPageSize), 0x5A);
}

TEST(KvmHostReclaimTest, UnmapRemovesTheSlotFromTheGuest) {
  // Slot 1: 16 pages at gpa 0x80000 (RAM pages 48..63).
  MAKE_GUEST_OR_SKIP(g, std::vector<RamSlot>{RamSlot{0, Gpa{0}, 0, 48},
                                             RamSlot{1, Gpa{0x80000}, 48, 16}});
  const std::vector<uint8_t> load = {0xA0, 0x00, 0x00, 0xF4};  // mov al, [0] ; hlt
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, load, 0x80000), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  ASSERT_THAT(Unmap(*g.space, 1), IsOk());
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, load, 0x80000), IsOk());
  EXPECT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_MMIO);  // no memslot there any more
  EXPECT_EQ(g.vcpu->run()->mmio.phys_addr, 0x80000u);
}

TEST(KvmHostReclaimTest, OomReapWithInjectedEagainLeavesTheGuestsPageUntouched) {
  MAKE_GUEST_OR_SKIP(g);
  StartFaultSubscription injector(StartFaults{.eagain_next = 1000});
  ASSERT_THAT(g.space->hub().Register(injector), IsOk());
  uint8_t* data = g.space->PagePointer(kDataGpa / kPageSize);
  for (uint64_t i = 0; i < kPageSize; ++i) data[i] = static_cast<uint8_t>(i ^ 0x5A);
  const uint16_t expected = HostChecksum(data);
  ASSERT_OK_AND_ASSIGN(OomReapResult r, OomReap(*g.space, PageRange{0, kPages}));
  EXPECT_FALSE(r.reaped);
  EXPECT_EQ(g.space->store()->Stats().saves, 0u);
  EXPECT_EQ(g.space->hub().pairing_summary().open, 0);
  ASSERT_THAT(RunStub(*g.vcpu, *g.space, kChecksumPage2), IsOk());
  ASSERT_EQ(g.vcpu->run()->exit_reason, KVM_EXIT_HLT);
  ASSERT_OK_AND_ASSIGN(kvm_regs regs, g.vcpu->GetRegs());
  EXPECT_EQ(static_cast<uint16_t>(regs.rdx), expected);
  ASSERT_THAT(g.space->hub().Unregister(injector), IsOk());
}

}  // namespace
}  // namespace mmuvisor::vmm
