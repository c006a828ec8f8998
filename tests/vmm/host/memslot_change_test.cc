// Memslot changes under a HostAddressSpace (no KVM: a recording MemslotControl stands in
// for the hypervisor, a DmaPort's SecondaryMmu is the secondary MMU): aliases (several
// slots over the same host pages) and the spare slot of `--memslot-churn` (added, moved,
// deleted while windows open and devices fault).
#include <memory>
#include <thread>
#include <vector>

#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "host_test_support.h"
#include "support/dma_port.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/memslot_change.h"
#include "vmm/host/reclaim.h"
#include "vmm/host/unmap.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::StatusIs;
using ::mmuvisor::vmm::testing::DmaPort;
using ::mmuvisor::vmm::testing::FakeDirtyLog;
using ::mmuvisor::vmm::testing::RecordingMemslotControl;
using ::mmuvisor::vmm::testing::TestEvent;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

constexpr uint64_t kPages = 64;
constexpr uint64_t kGiB = 1ull << 30;
constexpr uint32_t kSpare = 9;

HostAddressSpaceOptions Options(uint32_t aliases) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.slots = {RamSlot{0, Gpa{0}, 0, kPages}};
  for (uint32_t k = 1; k <= aliases; ++k) {
    o.slots.push_back(RamSlot{k, Gpa{k * kGiB}, 0, kPages});
  }
  return o;
}

mmu::Gfn GfnOf(uint64_t gpa) { return gpa / kPageSize; }

auto NotFound() { return StatusIs(absl::StatusCode::kNotFound, ::testing::_); }

// Reads a byte of every page: all resident again after a reclaim.
void TouchAll(HostAddressSpace& space) {
  for (uint64_t p = 0; p < kPages; ++p) {
    (void)*static_cast<volatile uint8_t*>(space.PagePointer(p));
  }
}

// The check: K aliases of all of RAM, every frame of every alias mapped by the
// device; one reclaim of 16 pages zaps exactly 16 frames in each of the K + 1 slots.
TEST(MemslotChangeTest, AnInvalidationReachesEveryAlias) {
  constexpr uint32_t kAliases = 3;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(Options(kAliases)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  std::vector<uint8_t> word(8);
  for (uint64_t k = 0; k <= kAliases; ++k) {
    for (uint64_t p = 0; p < kPages; ++p) {
      ASSERT_THAT(dma->Read(Gpa{k * kGiB + p * kPageSize}, absl::MakeSpan(word)), IsOk());
    }
  }
  ASSERT_EQ(dma->mmu().mapped_count(), kPages * (kAliases + 1));
  const mmu::SecondaryMmuStats before = dma->mmu().stats();

  constexpr PageRange kVictims{8, 16};
  ASSERT_THAT(Reclaim(*space, kVictims).status(), IsOk());

  const mmu::SecondaryMmuStats after = dma->mmu().stats();
  EXPECT_EQ(after.zapped - before.zapped, kVictims.count * (kAliases + 1));
  EXPECT_EQ(after.alias_zapped - before.alias_zapped, kVictims.count * kAliases);
  EXPECT_EQ(dma->mmu().mapped_count(), (kPages - kVictims.count) * (kAliases + 1));
  for (uint64_t k = 0; k <= kAliases; ++k) {
    for (uint64_t p = 0; p < kPages; ++p) {
      EXPECT_EQ(dma->mmu().Lookup(GfnOf(k * kGiB + p * kPageSize)).has_value(),
                !kVictims.Contains(p))
          << "alias " << k << " page " << p;
    }
  }
}

// A write through one alias is what every other alias reads, across a reclaim of the page
// (the store gives back what the first alias wrote).
TEST(MemslotChangeTest, AliasesSeeOneAnothersWritesThroughAReclaim) {
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space,
                       HostAddressSpace::Create(Options(2)));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  for (uint64_t p = 0; p < kPages; ++p) {
    std::vector<uint8_t> in(kPageSize, static_cast<uint8_t>(p * 7 + 1));
    ASSERT_THAT(dma->Write(Gpa{kGiB + p * kPageSize}, absl::MakeSpan(in)), IsOk());
  }
  ASSERT_THAT(Reclaim(*space, PageRange{0, kPages}).status(), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) {
    std::vector<uint8_t> out(kPageSize);
    ASSERT_THAT(dma->Read(Gpa{2 * kGiB + p * kPageSize}, absl::MakeSpan(out)), IsOk());
    EXPECT_EQ(out, std::vector<uint8_t>(kPageSize, static_cast<uint8_t>(p * 7 + 1))) << p;
    std::vector<uint8_t> primary(kPageSize);
    ASSERT_THAT(space->ReadGuest(Gpa{p * kPageSize}, absl::MakeSpan(primary)), IsOk());
    EXPECT_EQ(primary, out) << p;
  }
}

// The churn cycle: add the spare slot, move it, delete it, add it again. After each
// change returns, the device translates the slot's current frames only: the old frames
// are gone from its table and a fault there is NotFound.
TEST(MemslotChangeTest, AddMoveDeleteLeaveNoStaleTranslation) {
  RecordingMemslotControl control;
  HostAddressSpaceOptions o = Options(0);
  o.memslot_control = &control;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  std::vector<uint8_t> pattern(kPageSize, 0x5a);
  ASSERT_THAT(space->WriteGuest(Gpa{3 * kPageSize}, absl::MakeSpan(pattern)), IsOk());
  const Gpa a{4 * kGiB}, b{5 * kGiB};
  std::vector<uint8_t> out(kPageSize);
  auto mapped = [&](Gpa base) {
    int n = 0;
    for (uint64_t p = 0; p < 8; ++p) n += dma->mmu().Lookup(GfnOf(base.value) + p).has_value();
    return n;
  };
  auto read_all = [&](Gpa base) {
    for (uint64_t p = 0; p < 8; ++p) {
      absl::Status s = dma->Read(base + ByteSize{p * kPageSize}, absl::MakeSpan(out));
      if (!s.ok()) return s;
    }
    return absl::OkStatus();
  };

  ASSERT_THAT(AddMemslot(*space, RamSlot{kSpare, a, 0, 8}), IsOk());
  ASSERT_THAT(read_all(a), IsOk());
  EXPECT_EQ(out, std::vector<uint8_t>(kPageSize, 0)) << "page 7 of the spare is RAM page 7";
  ASSERT_THAT(dma->Read(a + ByteSize{3 * kPageSize}, absl::MakeSpan(out)), IsOk());
  EXPECT_EQ(out, pattern);
  EXPECT_EQ(mapped(a), 8);

  ASSERT_THAT(MoveMemslot(*space, kSpare, b), IsOk());
  EXPECT_EQ(mapped(a), 0);
  EXPECT_THAT(dma->Read(a, absl::MakeSpan(out)), NotFound());
  ASSERT_THAT(read_all(b), IsOk());
  EXPECT_EQ(mapped(b), 8);

  ASSERT_THAT(Unmap(*space, kSpare), IsOk());
  EXPECT_EQ(mapped(b), 0);
  EXPECT_THAT(dma->Read(b, absl::MakeSpan(out)), NotFound());
  EXPECT_THAT(dma->Read(Gpa{3 * kPageSize}, absl::MakeSpan(out)), IsOk());  // slot 0 stays
  EXPECT_EQ(out, pattern);

  ASSERT_THAT(AddMemslot(*space, RamSlot{kSpare, a, 0, 8}), IsOk());
  ASSERT_THAT(read_all(a), IsOk());
  EXPECT_THAT(control.events(),
              ElementsAre("set 0", "set 9", "set 9", "delete 9", "set 9"));
  const HostStats stats = space->stats();
  EXPECT_EQ(stats.memslot_adds, 2u);
  EXPECT_EQ(stats.memslot_moves, 1u);
  EXPECT_EQ(stats.unmaps, 1u);
}

TEST(MemslotChangeTest, BadChangesAreRefusedAndChangeNothing) {
  RecordingMemslotControl control;
  HostAddressSpaceOptions o = Options(0);
  o.memslot_control = &control;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  EXPECT_THAT(AddMemslot(*space, RamSlot{kSpare, Gpa{kPageSize}, 0, 8}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("guest range overlaps")));
  EXPECT_THAT(AddMemslot(*space, RamSlot{0, Gpa{kGiB}, 0, 8}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("slot id used twice")));
  EXPECT_THAT(AddMemslot(*space, RamSlot{kSpare, Gpa{kGiB}, kPages - 4, 8}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("outside guest RAM")));
  EXPECT_THAT(MoveMemslot(*space, kSpare, Gpa{kGiB}),
              StatusIs(absl::StatusCode::kNotFound, HasSubstr("no memslot 9")));
  ASSERT_THAT(AddMemslot(*space, RamSlot{kSpare, Gpa{kGiB}, 0, 8}), IsOk());
  EXPECT_THAT(MoveMemslot(*space, kSpare, Gpa{8 * kPageSize}),
              StatusIs(absl::StatusCode::kInvalidArgument, HasSubstr("guest range overlaps")));
  EXPECT_THAT(control.events(), ElementsAre("set 0", "set 9"));
  EXPECT_EQ(space->memslots()->slots().size(), 2u);
  space->Teardown();
  EXPECT_THAT(AddMemslot(*space, RamSlot{10, Gpa{2 * kGiB}, 0, 8}),
              StatusIs(absl::StatusCode::kFailedPrecondition, HasSubstr("torn down")));
}

// KVM's rule: a memslot update waits until no invalidation window is open. A reclaim
// window is held open; the add and the move started meanwhile must come after its end.
TEST(MemslotChangeTest, AddAndMoveWaitForOpenWindows) {
  RecordingMemslotControl control;
  TestEvent in_window, release_window;
  HostAddressSpaceOptions o = Options(0);
  o.memslot_control = &control;
  o.window_hook = testing::HoldFirstReclaimWindow(in_window, release_window, control);
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  std::thread reclaimer([&] { EXPECT_THAT(Reclaim(*space, PageRange{0, 4}).status(), IsOk()); });
  in_window.WaitForNotification();
  std::thread changer([&] {
    EXPECT_THAT(AddMemslot(*space, RamSlot{kSpare, Gpa{kGiB}, 0, 8}), IsOk());
    EXPECT_THAT(MoveMemslot(*space, kSpare, Gpa{2 * kGiB}), IsOk());
  });
  // Until the change waits for the window (a broken change would run early instead, and
  // the events below would show it before the window's end).
  EXPECT_TRUE(::mmuvisor::testing::WaitUntil(
      [&] { return space->windows().exclusive_waiters() > 0 || control.events().size() > 1; }))
      << "the change neither waited nor ran";
  release_window.Notify();
  reclaimer.join();
  changer.join();
  EXPECT_THAT(control.events(), ElementsAre("set 0", "reclaim window ends", "set 9", "set 9"));
}

// With a dirty log, a moved or deleted slot's pages count as written: the hypervisor
// drops the slot's log with it, so what the guest stored just before must be written back.
TEST(MemslotChangeTest, AMovedOrDeletedLoggedSlotsPagesAreWrittenBack) {
  FakeDirtyLog log;
  HostAddressSpaceOptions o = Options(0);
  o.dirty_log = &log;
  o.dirty_probe = [&log](const GuestMemorySlot& slot) {
    log.MarkWritten(slot.gpa);
    return absl::OkStatus();
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  ASSERT_EQ(space->dirty_tracking().mode, DirtyTrackingMode::kDirtyLog);
  ASSERT_THAT(AddMemslot(*space, RamSlot{kSpare, Gpa{kGiB}, 16, 8}), IsOk());
  for (uint64_t p = 0; p < kPages; ++p) *space->PagePointer(p) = static_cast<uint8_t>(p + 1);
  ASSERT_OK_AND_ASSIGN(ReclaimResult first, Reclaim(*space, PageRange{0, kPages}));
  ASSERT_EQ(first.written_back, kPages);
  TouchAll(*space);
  ASSERT_THAT(MoveMemslot(*space, kSpare, Gpa{2 * kGiB}), IsOk());
  ASSERT_OK_AND_ASSIGN(ReclaimResult second, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(second.written_back, 8u) << "the moved slot's pages";
  TouchAll(*space);
  ASSERT_THAT(Unmap(*space, kSpare), IsOk());
  ASSERT_OK_AND_ASSIGN(ReclaimResult third, Reclaim(*space, PageRange{0, kPages}));
  EXPECT_EQ(third.written_back, 8u) << "the deleted slot's pages";
}

}  // namespace
}  // namespace mmuvisor::vmm
