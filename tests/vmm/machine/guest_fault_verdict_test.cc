// How the Machine judges and waits out a guest memory fault the kernel reports with its
// address (KVM_EXIT_MEMORY_FAULT), without KVM: a HostAddressSpace and the verdict
// functions.
#include <atomic>
#include <thread>

#include "absl/synchronization/notification.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/migrate.h"
#include "vmm/machine/guest_fault_verdict.h"

namespace mmuvisor::vmm {
namespace {

constexpr uint64_t kPages = 16;

// A fault in a churned slot's window whose slot has gone since KVM's exit (the churn
// thread deleted or moved it before the vCPU thread looked) is retried: entered again,
// the access becomes an MMIO exit. Judged as outside every memslot, it stopped the guest
// as crashed ("gpa ... is in no memslot").
TEST(GuestFaultVerdictTest, AMemoryFaultWhoseChurnedSlotIsGoneIsRetriedNotACrash) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  const Gpa gone{kPages * kPageSize + 0x80};  // past RAM: no memslot holds it
  EXPECT_EQ(ClassifyMemoryFault(*space, gone, /*in_slot_window=*/true).kind,
            GuestFaultKind::kRetry);
  // Outside any window it is what it was: no memslot, a guest bug.
  const GuestFaultVerdict stray = ClassifyMemoryFault(*space, gone, /*in_slot_window=*/false);
  EXPECT_EQ(stray.kind, GuestFaultKind::kNotMapped);
  EXPECT_EQ(stray.detail, "gpa 0x10080 is in no memslot");
  // A gpa of RAM is judged as before, window or not.
  EXPECT_EQ(ClassifyMemoryFault(*space, Gpa{kPageSize}, true).kind, GuestFaultKind::kRetry);
}

// A vCPU waiting for a window to close over its page gives up when it is kicked: a
// timeout or RequestStop must end it even while a long migrate or reclaim window stays
// open (the kick's flag is already set here; the window never closes).
TEST(GuestFaultVerdictTest, AWaitForAPageEndsOnAStopWhileItsWindowStaysOpen) {
  absl::Notification in_window, release;
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  o.window_hook = [&](WindowPoint point, const notifier::Range&) {
    if (point != WindowPoint::kAfterStart) return;
    in_window.Notify();
    release.WaitForNotificationWithTimeout(::mmuvisor::testing::kTestWaitLimit);
  };
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  std::atomic<bool> stop{false};
  EXPECT_TRUE(WaitForPage(*space, Gpa{3 * kPageSize}, stop, absl::Milliseconds(1)));
  std::thread host([&] { EXPECT_TRUE(Migrate(*space, PageRange{3, 1}).ok()); });
  const bool opened = in_window.WaitForNotificationWithTimeout(::mmuvisor::testing::kTestWaitLimit);
  EXPECT_TRUE(opened) << "the migrate window never opened";
  if (opened) {
    EXPECT_TRUE(space->windows().IsLocked(3));
    stop.store(true);  // the kick
    EXPECT_FALSE(WaitForPage(*space, Gpa{3 * kPageSize}, stop, absl::Milliseconds(1)));
  }
  release.Notify();
  host.join();
}

}  // namespace
}  // namespace mmuvisor::vmm
