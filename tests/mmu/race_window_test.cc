// Race windows of the fault path, landed deterministically with the test-only FaultHooks:
// an invalidation that moves the page to a new backing is placed in each window of
// SecondaryMmu::Fault and Mirror::Fault. With the retry checks every case must retry and
// end with the new page (never a stale entry); with the checks switched off the very same
// races must leave a stale entry, which proves these tests can fail.
#include <memory>
#include <string>

#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmu/fault_hooks.h"
#include "mmu/mirror.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;

constexpr uint64_t kPages = 16;
constexpr uint64_t kPage = 5;

enum class Window {
  kStartAfterSnapshot,  // start after the snapshot; the primary changes after resolving
  kWholeAfterResolve,   // start, change and end between resolving and the re-check
  kWholeBeforeInstall,  // start, change and end after the lockless re-check, before lock
  kOpenAtInstall,       // start and change before the lock; end only after the attempt
};

std::string WindowName(const ::testing::TestParamInfo<Window>& info) {
  switch (info.param) {
    case Window::kStartAfterSnapshot: return "StartAfterSnapshot";
    case Window::kWholeAfterResolve: return "WholeAfterResolve";
    case Window::kWholeBeforeInstall: return "WholeBeforeInstall";
    case Window::kOpenAtInstall: return "OpenAtInstall";
  }
  return "Unknown";
}

// Opens and closes one invalidation of kPage at the hook points the window asks for.
struct WindowDriver {
  FakeAddressSpace* space;
  Window window;
  bool open = false;
  bool swapped = false;

  void Start() {
    ASSERT_THAT(space->StartChange(kPage), IsOk());
    open = true;
  }
  void Swap() {
    space->SwapBacking(kPage);
    swapped = true;
  }
  void End() {
    space->EndChange(kPage);
    open = false;
  }
  void Close() {
    if (!open) return;
    if (!swapped) Swap();
    End();
  }

  FaultHooks Hooks(bool retry_checks) {
    FaultHooks hooks;
    hooks.retry_checks = retry_checks;
    hooks.on_retry = [this](Gfn, int) { Close(); };
    switch (window) {
      case Window::kStartAfterSnapshot:
        hooks.after_snapshot = [this](Gfn, int attempt) { if (attempt == 0) Start(); };
        hooks.after_resolve = [this](Gfn, int attempt) { if (attempt == 0) Close(); };
        break;
      case Window::kWholeAfterResolve:
        hooks.after_resolve = [this](Gfn, int attempt) {
          if (attempt == 0) { Start(); Close(); }
        };
        break;
      case Window::kWholeBeforeInstall:
        hooks.before_install = [this](Gfn, int attempt) {
          if (attempt == 0) { Start(); Close(); }
        };
        break;
      case Window::kOpenAtInstall:
        hooks.before_install = [this](Gfn, int attempt) {
          if (attempt == 0) { Start(); Swap(); }
        };
        break;
    }
    return hooks;
  }
};

class MmuRaceWindowTest : public ::testing::TestWithParam<Window> {
 protected:
  void SetUp() override {
    ASSERT_THAT(mmu_.SetLayout({{0, kPages, FakeAddressSpace::kBase}}), IsOk());
    ASSERT_THAT(hub_.Register(mmu_), IsOk());
  }
  void TearDown() override {
    driver_.Close();
    EXPECT_THAT(hub_.Unregister(mmu_), IsOk());
    EXPECT_EQ(mmu_.in_progress(), 0);
    EXPECT_EQ(mmu_.active_invalidations(), 0);
    EXPECT_EQ(mmu_.stats().bugs, 0u);
  }
  // The installed entry is stale if it maps kPage to anything but the current backing.
  bool StaleEntry() {
    std::optional<ShadowEntry> entry = mmu_.Lookup(kPage);
    return entry.has_value() && entry->host_address != space_.CurrentHost(kPage);
  }

  notifier::NotifierSubscriptions hub_;
  FakeAddressSpace space_{hub_, kPages};
  SecondaryMmu mmu_{space_, SecondaryMmuOptions{"race-mmu", absl::Seconds(5)}};
  WindowDriver driver_{&space_, GetParam()};
};

TEST_P(MmuRaceWindowTest, FaultRetriesAndInstallsTheNewPage) {
  mmu_.SetFaultHooksForTesting(driver_.Hooks(/*retry_checks=*/true));
  const uint64_t seq = mmu_.seq();
  ASSERT_OK_AND_ASSIGN(ShadowEntry entry, mmu_.Fault(kPage, Access::kRead));
  driver_.Close();
  EXPECT_EQ(mmu_.seq(), seq + 1);  // the invalidation really ran
  EXPECT_EQ(entry.host_address, space_.CurrentHost(kPage));
  EXPECT_FALSE(StaleEntry());
  const SecondaryMmuStats stats = mmu_.stats();
  EXPECT_GE(stats.retries, 1u);
  EXPECT_GE(stats.stale_detections, 1u);
  EXPECT_EQ(stats.installs, 1u);
}

// Proof that the test above is real: switch the retry checks off and the same race
// installs the page the primary no longer uses.
TEST_P(MmuRaceWindowTest, WithoutRetryChecksTheSameRaceLeavesAStaleEntry) {
  mmu_.SetFaultHooksForTesting(driver_.Hooks(/*retry_checks=*/false));
  ASSERT_THAT(mmu_.Fault(kPage, Access::kRead), IsOk());
  driver_.Close();
  EXPECT_TRUE(StaleEntry());
  EXPECT_EQ(mmu_.stats().retries, 0u);
}

INSTANTIATE_TEST_SUITE_P(Windows, MmuRaceWindowTest,
                         ::testing::Values(Window::kStartAfterSnapshot,
                                           Window::kWholeAfterResolve,
                                           Window::kWholeBeforeInstall,
                                           Window::kOpenAtInstall),
                         WindowName);

class MirrorRaceWindowTest : public ::testing::TestWithParam<Window> {
 protected:
  void SetUp() override {
    ASSERT_THAT(mirror_.Attach(hub_, FakeAddressSpace::kBase, kPages * kPageSize), IsOk());
  }
  void TearDown() override {
    driver_.Close();
    EXPECT_THAT(mirror_.Detach(), IsOk());
    EXPECT_EQ(hub_.active_invalidate_ranges(), 0u);
  }
  bool StaleEntry() {
    std::optional<ShadowEntry> entry = mirror_.Lookup(FakeAddressSpace::Address(kPage));
    return entry.has_value() && entry->host_address != space_.CurrentHost(kPage);
  }

  notifier::NotifierSubscriptions hub_;
  FakeAddressSpace space_{hub_, kPages};
  Mirror mirror_{space_, MirrorOptions{"race-mirror", absl::Seconds(5)}};
  WindowDriver driver_{&space_, GetParam()};
};

TEST_P(MirrorRaceWindowTest, FaultRetriesAndInstallsTheNewPage) {
  mirror_.SetFaultHooksForTesting(driver_.Hooks(/*retry_checks=*/true));
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(kPage), Access::kRead), IsOk());
  driver_.Close();
  EXPECT_FALSE(StaleEntry());
  EXPECT_EQ(mirror_.Lookup(FakeAddressSpace::Address(kPage))->host_address,
            space_.CurrentHost(kPage));
  const MirrorStats stats = mirror_.stats();
  EXPECT_GE(stats.retries, 1u);
  EXPECT_GE(stats.stale_detections, 1u);
  EXPECT_EQ(stats.invalidations, 1u);
}

TEST_P(MirrorRaceWindowTest, WithoutRetryChecksTheSameRaceLeavesAStaleEntry) {
  mirror_.SetFaultHooksForTesting(driver_.Hooks(/*retry_checks=*/false));
  ASSERT_THAT(mirror_.Fault(FakeAddressSpace::Address(kPage), Access::kRead), IsOk());
  driver_.Close();
  EXPECT_TRUE(StaleEntry());
  EXPECT_EQ(mirror_.stats().retries, 0u);
}

INSTANTIATE_TEST_SUITE_P(Windows, MirrorRaceWindowTest,
                         ::testing::Values(Window::kStartAfterSnapshot,
                                           Window::kWholeAfterResolve,
                                           Window::kWholeBeforeInstall,
                                           Window::kOpenAtInstall),
                         WindowName);

}  // namespace
}  // namespace mmuvisor::mmu
