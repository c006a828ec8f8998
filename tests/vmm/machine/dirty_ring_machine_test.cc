// The dirty ring as a Machine's dirty tracking (MachineConfig::dirty_log), against the
// bitmap, with the `touch` guest (guests/touch): before the run the host writes every page
// of a range and reclaims it (saved, clean, discarded); each vCPU then stores one byte into
// every page of its share; after the run the host reclaims the range again. Every touched
// page must be written back (the log reported it: if the ring were never read, the store's
// saved-and-clean copy would be trusted, the page dropped without a write and the guest's
// byte lost), and the data read back must hold the byte. Also: both logs pass the
// real VM's self-check, `ring` where KVM lacks it is an error and `auto` picks the ring
// where offered, and a ring far smaller than the guest's writes (KVM_EXIT_DIRTY_RING_FULL,
// harvested by the vCPU threads) loses no page, nor does a reclaim of each vCPU's pages
// between its stores and its check while the other vCPU still stores (bitmap and ring). Skips visibly without /dev/kvm, and the
// ring cases where KVM does not offer KVM_CAP_DIRTY_LOG_RING.
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "touch/touch_shared.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/reclaim.h"
#include "vmm/kvm/dirty_ring.h"
#include "vmm/kvm/flavour.h"
#include "vmm/machine/machine.h"

// The touch guest's ELF (tests/vmm/paging/CMakeLists.txt embeds it in
// mmuvisor_guest_touch_run).
extern "C" const uint8_t mmv_touch_image_begin[];
extern "C" const uint8_t mmv_touch_image_end[];

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::StatusIs;
using ::testing::HasSubstr;

absl::Span<const uint8_t> TouchImage() {
  return absl::Span<const uint8_t>(
      mmv_touch_image_begin, static_cast<size_t>(mmv_touch_image_end - mmv_touch_image_begin));
}

// Whether this host's KVM offers the ring (a VM's KVM_CHECK_EXTENSION); the reason if not.
bool RingOffered(std::string* why) {
  absl::StatusOr<KvmSystem> system = KvmSystem::Open();
  if (!system.ok()) {
    *why = std::string(system.status().message());
    return false;
  }
  absl::StatusOr<KvmVm> vm = system->CreateVm();
  if (!vm.ok()) {
    *why = std::string(vm.status().message());
    return false;
  }
  absl::StatusOr<DirtyRingSupport> support = ProbeDirtyRing(*vm);
  if (!support.ok() || !support->offered()) {
    *why = support.ok() ? support->Describe() : std::string(support.status().message());
    return false;
  }
  return true;
}

#define SKIP_UNLESS_RING_OFFERED()                                 \
  do {                                                             \
    std::string why_;                                              \
    if (!RingOffered(&why_)) GTEST_SKIP() << "needs the dirty ring: " << why_; \
  } while (0)

MachineConfig TouchConfig(DirtyLogSource source, uint32_t vcpus, uint64_t ram_bytes) {
  MachineConfig config;
  config.ram_size = ByteSize{ram_bytes};
  config.vcpus = vcpus;
  config.privilege = GuestPrivilege::kUser;
  config.timeout = absl::Seconds(300);  // nested KVM under TCG is slow
  config.dirty_log = source;
  config.host.page_server_threads = static_cast<int>(vcpus);
  return config;
}

struct TouchOutcome {
  uint64_t first_gpa = 0;
  uint64_t pages = 0;
  ReclaimResult after;  // the reclaim after the run
};

// Fill + reclaim the range, run the touch guest over it, reclaim again, check the data.
void RunTouch(Machine& m, uint64_t pages_per_vcpu, TouchOutcome& out) {
  mmv_boot_info info{};
  ASSERT_OK(m.ReadGuest(Gpa{MMV_BOOT_INFO_GPA},
                        absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&info), sizeof(info))));
  out.pages = pages_per_vcpu * m.vcpu_count();
  out.first_gpa = (info.free_start + TOUCH_PAGE - 1) / TOUCH_PAGE * TOUCH_PAGE;
  ASSERT_LE(out.first_gpa + out.pages * TOUCH_PAGE, info.free_end);
  std::array<uint64_t, 8> args{};
  args[TOUCH_ARG_FIRST_GPA] = out.first_gpa;
  args[TOUCH_ARG_PAGES] = pages_per_vcpu;
  args[TOUCH_ARG_FLAGS] = TOUCH_F_FILLED;
  ASSERT_OK(m.WriteGuest(Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args)},
                         absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(args.data()),
                                                   sizeof(args))));
  for (uint64_t p = 0; p < out.pages; ++p) {
    const uint64_t gpa = out.first_gpa + p * TOUCH_PAGE;
    const uint64_t word = touch_word(gpa);
    ASSERT_OK(m.WriteGuest(Gpa{gpa}, absl::Span<const uint8_t>(
                                         reinterpret_cast<const uint8_t*>(&word), sizeof(word))));
  }
  ASSERT_OK_AND_ASSIGN(PageRange range,
                       m.host().PagesOf(Gpa{out.first_gpa}, ByteSize{out.pages * TOUCH_PAGE}));
  ASSERT_OK_AND_ASSIGN(ReclaimResult before, Reclaim(m.host(), range));
  ASSERT_EQ(before.reclaimed, out.pages) << "every page saved and discarded before the run";

  const RunResult run = m.Run();
  ASSERT_EQ(run.verdict, Verdict::kClean) << run.summary;

  // The guest's stores came back from the store (swap-in) and were written only into
  // guest memory: only the dirty log says they changed.
  ASSERT_OK_AND_ASSIGN(out.after, Reclaim(m.host(), range));
  EXPECT_EQ(out.after.written_back, out.pages) << "every touched page reported written";
  EXPECT_EQ(out.after.skipped_clean, 0u);
  EXPECT_EQ(out.after.save_failures, 0u);
  uint64_t lost = 0;
  for (uint64_t p = 0; p < out.pages; ++p) {
    uint8_t byte = 0;
    ASSERT_OK(m.ReadGuest(Gpa{out.first_gpa + p * TOUCH_PAGE + TOUCH_BYTE_OFFSET},
                          absl::Span<uint8_t>(&byte, 1)));
    if (byte != TOUCH_BYTE) ++lost;
  }
  EXPECT_EQ(lost, 0u) << "guest stores lost by a reclaim that trusted a stale copy";
}

class DirtyLogMachineTest : public ::testing::TestWithParam<DirtyLogSource> {};

TEST_P(DirtyLogMachineTest, PassesTheSelfCheckAndReclaimWritesBackExactlyTheTouchedPages) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  if (GetParam() == DirtyLogSource::kRing) SKIP_UNLESS_RING_OFFERED();
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m,
                       Machine::Create(TouchConfig(GetParam(), 1, 8ull << 20), TouchImage()));
  const DirtyTrackingChoice& choice = m->host().dirty_tracking();
  ASSERT_EQ(choice.mode, DirtyTrackingMode::kDirtyLog) << choice.reason;
  EXPECT_THAT(choice.reason, HasSubstr("verified by the self-check"));
  const bool ring = GetParam() == DirtyLogSource::kRing;
  EXPECT_THAT(choice.reason, HasSubstr(ring ? "kvm-dirty-ring" : "KVM_GET_DIRTY_LOG"));
  ASSERT_EQ(m->dirty_ring() != nullptr, ring);
  const HostStats before = m->host().stats();

  TouchOutcome out;
  ASSERT_NO_FATAL_FAILURE(RunTouch(*m, 64, out));
  EXPECT_GE(m->host().stats().dirty_pages_logged - before.dirty_pages_logged, out.pages);
  if (ring) {
    const DirtyRingStats s = m->dirty_ring()->stats();
    EXPECT_GE(s.entries, out.pages) << "the ring was read";
    EXPECT_GE(s.bits_fetched, out.pages) << "and its entries reached the reclaim";
  }
}

INSTANTIATE_TEST_SUITE_P(Source, DirtyLogMachineTest,
                         ::testing::Values(DirtyLogSource::kBitmap, DirtyLogSource::kRing),
                         [](const ::testing::TestParamInfo<DirtyLogSource>& p) {
                           return std::string(DirtyLogSourceName(p.param));
                         });

TEST(DirtyRingMachineTest, FullRingExitsAreHarvestedAndNoPageIsLost) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  SKIP_UNLESS_RING_OFFERED();
  // The smallest ring KVM accepts (256 entries without PML, 1024 with), and 2048 pages per
  // vCPU: each vCPU fills its ring several times during the run.
  MachineConfig config = TouchConfig(DirtyLogSource::kRing, 2, 32ull << 20);
  config.dirty_ring_entries = 1;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, Machine::Create(config, TouchImage()));
  ASSERT_NE(m->dirty_ring(), nullptr);
  ASSERT_EQ(m->host().dirty_tracking().mode, DirtyTrackingMode::kDirtyLog)
      << m->host().dirty_tracking().reason;
  const uint32_t entries = m->dirty_ring()->config().entries;
  ASSERT_LE(entries, 1024u);
  TouchOutcome out;
  ASSERT_NO_FATAL_FAILURE(RunTouch(*m, 2048, out));
  const DirtyRingStats s = m->dirty_ring()->stats();
  EXPECT_GT(s.full_exits, 0u) << "a " << entries << "-entry ring never filled";
  EXPECT_GE(s.entries, out.pages);
}

// Reclaims each vCPU's range on that vCPU's thread at its SYNC(TOUCHED), after all its
// stores and before the guest verifies them, while the other vCPU may still be storing
// (and filling its ring: its thread harvests on KVM_EXIT_DIRTY_RING_FULL at the same
// time as this window harvests).
class ReclaimAtTouched : public MachineObserver {
 public:
  void Bind(Machine* m, uint64_t first_gpa, uint64_t pages_per_vcpu) {
    m_ = m;
    first_gpa_ = first_gpa;
    pages_per_vcpu_ = pages_per_vcpu;
  }
  void OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) override {
    if (stage == TOUCH_SYNC_VERIFIED && values.size() > 1) bad_.fetch_add(values[1]);
    if (stage != TOUCH_SYNC_TOUCHED) return;
    absl::StatusOr<PageRange> range =
        m_->host().PagesOf(Gpa{first_gpa_ + vcpu * pages_per_vcpu_ * TOUCH_PAGE},
                           ByteSize{pages_per_vcpu_ * TOUCH_PAGE});
    absl::StatusOr<ReclaimResult> r =
        range.ok() ? Reclaim(m_->host(), *range) : absl::StatusOr<ReclaimResult>(range.status());
    if (!r.ok()) {
      ADD_FAILURE() << "reclaim at vCPU " << vcpu << "'s TOUCHED: " << r.status();
      return;
    }
    written_back_.fetch_add(r->written_back);
    reclaimed_.fetch_add(r->reclaimed);
  }
  uint64_t written_back() const { return written_back_.load(); }
  uint64_t reclaimed() const { return reclaimed_.load(); }
  uint64_t bad() const { return bad_.load(); }

 private:
  Machine* m_ = nullptr;
  uint64_t first_gpa_ = 0, pages_per_vcpu_ = 0;
  std::atomic<uint64_t> written_back_{0}, reclaimed_{0}, bad_{0};
};

TEST_P(DirtyLogMachineTest, ReclaimBetweenTheGuestsStoresAndItsCheckLosesNoStore) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  if (GetParam() == DirtyLogSource::kRing) SKIP_UNLESS_RING_OFFERED();
  constexpr uint64_t kPagesPerVcpu = 1024;
  ReclaimAtTouched host;
  MachineConfig config = TouchConfig(GetParam(), 2, 16ull << 20);
  config.dirty_ring_entries = 1;  // the smallest ring: full exits during the stores
  config.observer = &host;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, Machine::Create(config, TouchImage()));
  ASSERT_EQ(m->host().dirty_tracking().mode, DirtyTrackingMode::kDirtyLog)
      << m->host().dirty_tracking().reason;
  mmv_boot_info info{};
  ASSERT_OK(m->ReadGuest(Gpa{MMV_BOOT_INFO_GPA},
                         absl::Span<uint8_t>(reinterpret_cast<uint8_t*>(&info), sizeof(info))));
  const uint64_t first = (info.free_start + TOUCH_PAGE - 1) / TOUCH_PAGE * TOUCH_PAGE;
  const uint64_t pages = 2 * kPagesPerVcpu;
  std::array<uint64_t, 8> args{};
  args[TOUCH_ARG_FIRST_GPA] = first;
  args[TOUCH_ARG_PAGES] = kPagesPerVcpu;
  args[TOUCH_ARG_FLAGS] = TOUCH_F_FILLED;
  ASSERT_OK(m->WriteGuest(Gpa{MMV_BOOT_INFO_GPA + offsetof(mmv_boot_info, args)},
                          absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(args.data()),
                                                    sizeof(args))));
  for (uint64_t p = 0; p < pages; ++p) {
    const uint64_t word = touch_word(first + p * TOUCH_PAGE);
    ASSERT_OK(m->WriteGuest(Gpa{first + p * TOUCH_PAGE},
                            absl::Span<const uint8_t>(reinterpret_cast<const uint8_t*>(&word),
                                                      sizeof(word))));
  }
  ASSERT_OK_AND_ASSIGN(PageRange range,
                       m->host().PagesOf(Gpa{first}, ByteSize{pages * TOUCH_PAGE}));
  ASSERT_OK_AND_ASSIGN(ReclaimResult before, Reclaim(m->host(), range));
  ASSERT_EQ(before.reclaimed, pages);
  host.Bind(m.get(), first, kPagesPerVcpu);

  const RunResult run = m->Run();
  // The guest read every page back after its vCPU's reclaim: from the store, so only a
  // write-back of each stored page keeps its byte.
  EXPECT_EQ(run.verdict, Verdict::kClean) << run.summary;
  EXPECT_EQ(host.bad(), 0u) << "pages whose store the reclaim lost";
  EXPECT_EQ(host.written_back(), pages) << "each vCPU's reclaim wrote back all its pages";
  EXPECT_EQ(host.reclaimed(), pages);
}

// auto on this host: no log where KVM prefetches neighbouring pages on a fault (PVM,
// shadow paging, the legacy MMU: kvm_flavour_test covers the rule), else the ring where
// offered, else the bitmap. CI's native run (kvm_pvm) checks the first branch, its nested
// run (SVM with NPT) the others.
TEST(DirtyRingMachineTest, RingWhereKvmLacksItIsAnErrorAndAutoFallsBack) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  std::string why;
  const bool offered = RingOffered(&why);
  absl::StatusOr<std::unique_ptr<Machine>> ring =
      Machine::Create(TouchConfig(DirtyLogSource::kRing, 1, 8ull << 20), TouchImage());
  absl::StatusOr<std::unique_ptr<Machine>> automatic =
      Machine::Create(TouchConfig(DirtyLogSource::kAuto, 1, 8ull << 20), TouchImage());
  ASSERT_OK(automatic.status());
  const KvmHostInfo host = DetectKvmHost();
  if (KvmPrefetchesNeighbours(host)) {
    EXPECT_EQ(automatic.value()->dirty_log_source(), DirtyLogSource::kNone)
        << DescribeKvmHost(host);
    EXPECT_EQ(automatic.value()->host().dirty_tracking().mode,
              DirtyTrackingMode::kAlwaysWriteBack);
    EXPECT_EQ(automatic.value()->dirty_ring(), nullptr);
  } else {
    EXPECT_EQ(automatic.value()->host().dirty_tracking().mode, DirtyTrackingMode::kDirtyLog);
    EXPECT_EQ(automatic.value()->dirty_log_source(),
              offered ? DirtyLogSource::kRing : DirtyLogSource::kBitmap);
  }
  if (offered) {
    ASSERT_OK(ring.status());
    EXPECT_EQ(ring.value()->dirty_log_source(), DirtyLogSource::kRing);
    if (!KvmPrefetchesNeighbours(host)) {
      EXPECT_NE(automatic.value()->dirty_ring(), nullptr) << "auto takes the ring where offered";
    }
  } else {
    EXPECT_THAT(ring.status(), StatusIs(absl::StatusCode::kFailedPrecondition,
                                        HasSubstr("'ring' requested but unavailable")));
    EXPECT_EQ(automatic.value()->dirty_ring(), nullptr);
    GTEST_SKIP() << "checked the error and the fallback; the ring itself: " << why;
  }
}

}  // namespace
}  // namespace mmuvisor::vmm
