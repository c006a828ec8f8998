// The dirty ring on a bare VM (vmm/kvm/dirty_ring.h, vmm/host/kvm_dirty_ring.h): a
// real-mode vCPU stores one byte into each of a list of pages spread over three memslots,
// and (after a warm-up that maps the code page) KvmDirtyRingLog::Fetch reports exactly those pages, per slot, whichever slot is
// fetched first; a second store round after the reset is reported again (KVM re-armed
// the tracking of exactly the reset pages). Also: the ring's self-check on a scratch VM,
// and the cap handshake (size rounding, refusal after the first vCPU). Skips visibly
// without /dev/kvm or where KVM does not offer KVM_CAP_DIRTY_LOG_RING.
#include <linux/kvm.h>
#include <sys/mman.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/host/kvm_dirty_ring.h"
#include "vmm/kvm/dirty_ring.h"
#include "notifier/base/host_mapping.h"
#include "vmm/kvm/system.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

// Opens /dev/kvm into `out` if its VMs offer the dirty ring; else false and why.
bool OpenRingSystem(std::optional<KvmSystem>& out, std::string& why) {
  absl::StatusOr<KvmSystem> system = KvmSystem::Open();
  if (!system.ok()) {
    why = std::string(system.status().message());
    return false;
  }
  absl::StatusOr<KvmVm> vm = system->CreateVm();
  absl::StatusOr<DirtyRingSupport> support =
      vm.ok() ? ProbeDirtyRing(*vm) : absl::StatusOr<DirtyRingSupport>(vm.status());
  if (!support.ok() || !support->offered()) {
    why = support.ok() ? support->Describe() : std::string(support.status().message());
    return false;
  }
  out.emplace(*std::move(system));
  return true;
}

// Skips (returns from the test) unless /dev/kvm opens and its VMs offer the ring.
#define SKIP_WITHOUT_DIRTY_RING(system)                                          \
  MMUVISOR_SKIP_WITHOUT_KVM();                                                   \
  std::optional<KvmSystem> system##_opt;                                         \
  if (std::string why_; !OpenRingSystem(system##_opt, why_)) {                   \
    GTEST_SKIP() << "needs the dirty ring: " << why_;                            \
  }                                                                              \
  KvmSystem& system = *system##_opt

// The pages a set of (slot, page) pairs names, as a map slot -> pages.
using PagesBySlot = std::map<uint32_t, std::set<uint64_t>>;

std::set<uint64_t> BitsOf(const std::vector<uint64_t>& bitmap) {
  std::set<uint64_t> pages;
  for (uint64_t w = 0; w < bitmap.size(); ++w) {
    for (uint64_t b = 0; b < 64; ++b) {
      if ((bitmap[w] >> b) & 1) pages.insert(w * 64 + b);
    }
  }
  return pages;
}

// A VM with the ring, one vCPU and three slots with dirty logging, over one anonymous
// mapping: slot 0 [0, 64 KiB) (the code page lives here), slot 1 [64 KiB, 192 KiB),
// slot 5 [256 KiB, 320 KiB) (slot ids need not be dense; a hole before it).
class RingVm {
 public:
  static constexpr uint64_t kCodeGpa = 0x1000;

  void SetUp(const KvmSystem& system) {
    ASSERT_OK_AND_ASSIGN(KvmVm vm, system.CreateVm());
    vm_ = std::make_unique<KvmVm>(std::move(vm));
    ASSERT_OK_AND_ASSIGN(log_, KvmDirtyRingLog::Enable(*vm_, 1024));
    ASSERT_OK_AND_ASSIGN(int mmap_size, system.VcpuMmapSize());
    ASSERT_OK_AND_ASSIGN(KvmVcpu vcpu, vm_->CreateVcpu(0, mmap_size));
    vcpu_ = std::make_unique<KvmVcpu>(std::move(vcpu));
    ASSERT_OK(log_->AddVcpu(*vcpu_));
    ASSERT_OK_AND_ASSIGN(ram_, HostMapping::Map(kRamBytes, PROT_READ | PROT_WRITE,
                                                MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, "ring RAM"));
    const uint64_t hva = reinterpret_cast<uint64_t>(ram_.data());
    slots_ = {
        GuestMemorySlot{0, Gpa{0}, ByteSize{0x10000}, Hva{hva}, KVM_MEM_LOG_DIRTY_PAGES},
        GuestMemorySlot{1, Gpa{0x10000}, ByteSize{0x20000}, Hva{hva + 0x10000},
                        KVM_MEM_LOG_DIRTY_PAGES},
        GuestMemorySlot{5, Gpa{0x40000}, ByteSize{0x10000}, Hva{hva + 0x40000},
                        KVM_MEM_LOG_DIRTY_PAGES},
    };
    for (const GuestMemorySlot& s : slots_) {
      ASSERT_OK(vm_->SetUserMemoryRegion(s.slot, s.flags, s.gpa.value, s.size.value,
                                         s.hva.value));
    }
    (void)vm_->SetTssAddr(0xfffbd000);  // real mode on Intel without unrestricted guest
  }

  // Stores 0x5a to the first byte of each page (slot, page) in `pages`, from real mode,
  // through "mov ax, seg; mov ds, ax; mov byte [0], 0x5a" per page, then HLT.
  void StoreTo(const PagesBySlot& pages) {
    std::vector<uint8_t> code;
    for (const auto& [id, list] : pages) {
      for (uint64_t page : list) {
        const uint64_t gpa = Slot(id).gpa.value + page * kPageSize;
        ASSERT_LT(gpa, 0x100000u);
        const uint16_t seg = static_cast<uint16_t>(gpa >> 4);
        for (uint8_t b : {uint8_t{0xB8}, static_cast<uint8_t>(seg), static_cast<uint8_t>(seg >> 8),
                          uint8_t{0x8E}, uint8_t{0xD8}, uint8_t{0xC6}, uint8_t{0x06},
                          uint8_t{0x00}, uint8_t{0x00}, uint8_t{0x5A}}) {
          code.push_back(b);
        }
      }
    }
    code.push_back(0xF4);  // hlt
    ASSERT_LE(code.size(), kPageSize);
    std::copy(code.begin(), code.end(), ram_.data() + kCodeGpa);
    ASSERT_OK_AND_ASSIGN(kvm_sregs sregs, vcpu_->GetSregs());
    for (kvm_segment* seg : {&sregs.cs, &sregs.ds}) {
      seg->base = 0;
      seg->selector = 0;
    }
    sregs.cr0 &= ~uint64_t{1};
    ASSERT_OK(vcpu_->SetSregs(sregs));
    kvm_regs regs{};
    regs.rip = kCodeGpa;
    regs.rflags = 2;
    ASSERT_OK(vcpu_->SetRegs(regs));
    for (int entries = 0;; ++entries) {
      ASSERT_LT(entries, 64) << "no HLT";
      absl::Status s = vcpu_->Run();
      if (absl::IsUnavailable(s)) continue;
      ASSERT_OK(s);
      if (vcpu_->run()->exit_reason == KVM_EXIT_HLT) break;
      ASSERT_EQ(vcpu_->run()->exit_reason, KVM_EXIT_DIRTY_RING_FULL);
      ASSERT_OK(log_->OnDirtyRingFull(0));
    }
    for (const auto& [id, list] : pages) {
      for (uint64_t page : list) {
        EXPECT_EQ(ram_.data()[Slot(id).gpa.value + page * kPageSize], 0x5A);
      }
    }
  }

  const GuestMemorySlot& Slot(uint32_t id) const {
    for (const GuestMemorySlot& s : slots_) {
      if (s.slot == id) return s;
    }
    ADD_FAILURE() << "no slot " << id;
    return slots_[0];
  }
  std::set<uint64_t> FetchPages(uint32_t id) {
    absl::StatusOr<std::vector<uint64_t>> bits = log_->Fetch(Slot(id));
    EXPECT_TRUE(bits.ok()) << bits.status();
    if (!bits.ok()) return {};
    EXPECT_EQ(bits->size(), (Slot(id).size.value / kPageSize + 63) / 64);
    return BitsOf(*bits);
  }
  KvmDirtyRingLog& log() { return *log_; }

 private:
  static constexpr uint64_t kRamBytes = 0x50000;
  std::unique_ptr<KvmVm> vm_;
  std::unique_ptr<KvmDirtyRingLog> log_;
  std::unique_ptr<KvmVcpu> vcpu_;
  HostMapping ram_;
  std::vector<GuestMemorySlot> slots_;
};

TEST(DirtyRingTest, ReportsExactlyTheWrittenPagesPerSlot) {
  SKIP_WITHOUT_DIRTY_RING(system);
  RingVm vm;
  ASSERT_NO_FATAL_FAILURE(vm.SetUp(system));
  // Warm-up: the stub alone (HLT). Its first fetch of the code page is logged on TDP hosts
  // (seen under nested SVM, 6.12): a read fault maps a host-writable page writable and
  // KVM marks it dirty then (make_spte). Drained here; reset, the page is write-protected
  // and later fetches are not logged.
  ASSERT_NO_FATAL_FAILURE(vm.StoreTo({}));
  for (uint32_t id : {0u, 1u, 5u}) (void)vm.FetchPages(id);
  const uint64_t warm = vm.log().stats().entries;
  const uint64_t warm_bits = vm.log().stats().bits_fetched;
  const PagesBySlot first = {{0, {3, 7}}, {1, {0, 5, 31}}, {5, {2, 15}}};
  ASSERT_NO_FATAL_FAILURE(vm.StoreTo(first));
  // The middle slot first: the other slots' entries, harvested by this Fetch, must wait
  // for their own.
  EXPECT_EQ(vm.FetchPages(1), first.at(1));
  EXPECT_EQ(vm.FetchPages(5), first.at(5));
  EXPECT_EQ(vm.FetchPages(0), first.at(0));
  // Get-and-clear: nothing new.
  for (uint32_t id : {0u, 1u, 5u}) EXPECT_TRUE(vm.FetchPages(id).empty()) << "slot " << id;
  const DirtyRingStats after_first = vm.log().stats();
  EXPECT_EQ(after_first.entries - warm, 7u);
  EXPECT_EQ(after_first.bits_fetched - warm_bits, 7u);
  EXPECT_GE(after_first.resets, 1u);

  // KVM_RESET_DIRTY_RINGS re-armed those pages: writing some of them again (and a new
  // one) is logged again, and only that.
  const PagesBySlot second = {{0, {7}}, {1, {5, 6}}};
  ASSERT_NO_FATAL_FAILURE(vm.StoreTo(second));
  EXPECT_EQ(vm.FetchPages(0), second.at(0));
  EXPECT_TRUE(vm.FetchPages(5).empty());
  EXPECT_EQ(vm.FetchPages(1), second.at(1));
  EXPECT_EQ(vm.log().stats().entries - warm, 10u);
}

TEST(DirtyRingTest, SelfCheckOnAScratchVmPasses) {
  SKIP_WITHOUT_DIRTY_RING(system);
  ASSERT_OK_AND_ASSIGN(DirtyTrackingChoice choice, SelfCheckDirtyRing(system, 4096));
  EXPECT_EQ(choice.mode, DirtyTrackingMode::kDirtyLog) << choice.reason;
  EXPECT_THAT(choice.reason, HasSubstr("kvm-dirty-ring"));
  EXPECT_THAT(choice.reason, HasSubstr("verified by the self-check"));
}

TEST(DirtyRingTest, EnableRoundsToAPowerOfTwoAndRefusesWhenNotOfferedOrAfterTheFirstVcpu) {
  SKIP_WITHOUT_DIRTY_RING(system);
  ASSERT_OK_AND_ASSIGN(KvmVm vm, system.CreateVm());
  ASSERT_OK_AND_ASSIGN(DirtyRingSupport support, ProbeDirtyRing(vm));
  ASSERT_OK_AND_ASSIGN(DirtyRingConfig config, EnableDirtyRing(vm, support, 1000));
  EXPECT_EQ(config.entries & (config.entries - 1), 0u);
  EXPECT_GE(config.entries, 1024u);
  EXPECT_EQ(config.acq_rel, support.acq_rel);
  // Where KVM does not offer it (KVM_CHECK_EXTENSION 0): an error naming the cap.
  EXPECT_THAT(EnableDirtyRing(vm, DirtyRingSupport{}, 4096).status(),
              StatusIs(absl::StatusCode::kFailedPrecondition,
                       HasSubstr("KVM_CAP_DIRTY_LOG_RING not offered")));
  // A second VM: the ring cannot be enabled once a vCPU exists (KVM: EINVAL).
  ASSERT_OK_AND_ASSIGN(KvmVm late, system.CreateVm());
  ASSERT_OK_AND_ASSIGN(int mmap_size, system.VcpuMmapSize());
  ASSERT_OK_AND_ASSIGN(KvmVcpu vcpu, late.CreateVcpu(0, mmap_size));
  EXPECT_THAT(EnableDirtyRing(late, support, 4096).status(),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("KVM_ENABLE_CAP")));
}

TEST(DirtyRingTest, ParsesTheModeWords) {
  for (DirtyLogSource s : {DirtyLogSource::kBitmap, DirtyLogSource::kRing, DirtyLogSource::kAuto,
                           DirtyLogSource::kNone}) {
    ASSERT_OK_AND_ASSIGN(DirtyLogSource parsed, ParseDirtyLogSource(DirtyLogSourceName(s)));
    EXPECT_EQ(parsed, s);
  }
  EXPECT_THAT(ParseDirtyLogSource("rings").status(),
              StatusIs(absl::StatusCode::kInvalidArgument,
                       HasSubstr("bitmap, ring, auto or none")));
}

}  // namespace
}  // namespace mmuvisor::vmm
