// The model's counterexamples, replayed against the real code. SPIN's shortest trails of
// the mutants of tests/model/kvm_retry.pml are committed as
// tests/model/trails/kvm_retry.<MUTANT>.events; tests/model/run regenerates them and fails
// if the model's trails no longer match the files. This test drives the real SecondaryMmu
// through each trail's interleaving with the FaultHooks: each invalidation step of the
// trail (I<n> start/swap/end <gfn>) runs at the hook where the trail puts it between the
// fault path's steps (F snap, F precheck, F resolve, F recheck, F lock). It asserts the
// model's property on the real code: no translation of a page that an invalidation
// removed survives that invalidation's end. The code must follow each trail up to the
// check the mutant removed and leave it there (a retry where the mutant went on); with
// that check removed from mmu/ it follows the trail to the end and both tests fail:
//   NO_SEQ_RECHECK  RetryGfn's "seq != snapshot"       leaves at F lock (retry)
//   NO_RETRY_GFN    the locked RetryGfn                 leaves at F lock (retry)
//   NO_RANGE_UNION  Begin widening, not resetting, the range   leaves at F precheck (retry)
//
// Model step -> where the code is when the replay runs the trail's next events:
//   (trail start)           before Fault() is called
//   F snap                  FaultHooks::after_snapshot (before the lockless pre-check)
//   F precheck pass         ReplayPrimary::Resolve, before the fake resolves
//   F resolve               FaultHooks::after_resolve (before the lockless re-check)
//   F recheck pass          FaultHooks::before_install (before the MMU lock)
//   F precheck/recheck/lock retry   FaultHooks::on_retry (the stage is the last hook seen)
//   F lock install          Fault() returned OK
// After the code leaves the trail, the trail's remaining invalidation steps run at once and
// every window still open is closed (swap, end), as the model's invalidators would go on;
// the fault then runs without interference. Model gfn g is page kFirstPage + g.
#include <algorithm>
#include <fstream>
#include <functional>
#include <map>
#include <ostream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "fake_address_space.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "mmu/fault_hooks.h"
#include "mmu/primary.h"
#include "mmu/secondary_mmu.h"
#include "notifier/hub.h"
#include "support/status_matchers.h"

#ifndef MMUVISOR_MODEL_TRAILS_DIR
#error "MMUVISOR_MODEL_TRAILS_DIR must name tests/model/trails"
#endif

namespace mmuvisor::mmu {
namespace {

using ::mmuvisor::mmu::testing::FakeAddressSpace;
using ::mmuvisor::testing::IsOk;

constexpr uint64_t kPages = 16;
constexpr uint64_t kFirstPage = 5;  // model gfn 0 (the faulting one); gfn 1 is page 6

// One line of the trail: "F <step> [pass|retry|install]" or "I<n> <start|swap|end> <gfn>".
struct TrailEvent {
  bool fault = false;
  int invalidator = -1;
  std::string step;
  std::string outcome;  // fault events
  uint64_t gfn = 0;     // invalidation events
  std::string text;
};

absl::StatusOr<std::vector<TrailEvent>> ReadTrail(const std::string& path) {
  std::ifstream in(path);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot open trail ", path));
  std::vector<TrailEvent> events;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream words(line);
    std::string actor;
    TrailEvent event;
    event.text = line;
    words >> actor >> event.step;
    if (actor == "F") {
      event.fault = true;
      words >> event.outcome;  // "F snap" has none
    } else if (actor.size() > 1 && actor[0] == 'I') {
      event.invalidator = std::stoi(actor.substr(1));
      if (!(words >> event.gfn) || event.gfn > 1 ||
          (event.step != "start" && event.step != "swap" && event.step != "end")) {
        return absl::InvalidArgumentError(absl::StrCat(path, ": bad event '", line, "'"));
      }
    } else {
      return absl::InvalidArgumentError(absl::StrCat(path, ": bad event '", line, "'"));
    }
    events.push_back(event);
  }
  return events;
}

// A primary that lets the replay act between the lockless pre-check and the resolve.
class ReplayPrimary : public Primary {
 public:
  explicit ReplayPrimary(FakeAddressSpace& fake) : fake_(fake) {}
  absl::StatusOr<PrimaryPage> Resolve(uint64_t address, Access access) override {
    if (before_resolve) before_resolve();
    return fake_.Resolve(address, access);
  }
  std::function<void()> before_resolve;

 private:
  FakeAddressSpace& fake_;
};

class ModelTrailReplayFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_THAT(mmu_.SetLayout({{0, kPages, FakeAddressSpace::kBase}}), IsOk());
    ASSERT_THAT(hub_.Register(mmu_), IsOk());
    // Both pages the model knows are backed before the trail starts (the model's initial
    // backing[0] = 1, backing[1] = 2).
    ASSERT_THAT(space_.Resolve(FakeAddressSpace::Address(kFirstPage), Access::kRead), IsOk());
    ASSERT_THAT(space_.Resolve(FakeAddressSpace::Address(kFirstPage + 1), Access::kRead),
                IsOk());
  }
  void TearDown() override {
    EXPECT_THAT(hub_.Unregister(mmu_), IsOk());
    EXPECT_EQ(mmu_.in_progress(), 0);
    EXPECT_EQ(mmu_.stats().bugs, 0u);
  }

  // Replays the trail; fills followed_, divergence_ and violations_.
  void Replay(const std::string& name) {
    SCOPED_TRACE(name);
    absl::StatusOr<std::vector<TrailEvent>> trail =
        ReadTrail(absl::StrCat(MMUVISOR_MODEL_TRAILS_DIR, "/", name));
    ASSERT_THAT(trail.status(), IsOk());
    trail_ = *std::move(trail);
    ASSERT_FALSE(trail_.empty());

    FaultHooks hooks;
    hooks.after_snapshot = [this](Gfn, int) { Reached("snap", ""); last_ = "precheck"; };
    primary_.before_resolve = [this] { Reached("precheck", "pass"); last_ = "resolve"; };
    hooks.after_resolve = [this](Gfn, int) { Reached("resolve", ""); last_ = "recheck"; };
    hooks.before_install = [this](Gfn, int) { Reached("recheck", "pass"); last_ = "lock"; };
    hooks.on_retry = [this](Gfn, int) { Reached(last_, "retry"); };
    mmu_.SetFaultHooksForTesting(std::move(hooks));

    RunInvalidations();  // the steps the trail takes before the fault starts
    absl::StatusOr<ShadowEntry> entry = mmu_.Fault(kFirstPage, Access::kRead);
    ASSERT_THAT(entry.status(), IsOk());
    Reached("lock", "install");
    // Whatever the trail still holds (nothing after a divergence: it ran there), then
    // every window the trail left open.
    RunInvalidations();
    CloseOpenWindows();
    CheckInstalled();
  }

 private:
  // The fault path is at model step `step` with `outcome`: match it against the trail,
  // then run the invalidation events the trail places before the fault's next step.
  void Reached(const std::string& step, const std::string& outcome) {
    const std::string actual = absl::StrCat("F ", step, outcome.empty() ? "" : " ", outcome);
    if (diverged()) return;  // off the trail: the fault runs free
    if (next_ >= trail_.size() || !trail_[next_].fault || trail_[next_].step != step ||
        trail_[next_].outcome != outcome) {
      divergence_ = absl::StrCat(
          "trail has '", next_ < trail_.size() ? trail_[next_].text : "<end>",
          "', the code did '", actual, "'");
      diverged_at_ = next_;
      // The invalidations the trail set in motion still complete (as they would in the
      // model after a retry); then the fault continues without interference.
      RunRemainingInvalidations();
      CloseOpenWindows();
      return;
    }
    followed_.push_back(trail_[next_].text);
    ++next_;
    RunInvalidations();
  }

  bool diverged() const { return !divergence_.empty(); }

  void RunInvalidations() {
    while (next_ < trail_.size() && !trail_[next_].fault) Run(trail_[next_++]);
  }
  void RunRemainingInvalidations() {
    for (; next_ < trail_.size(); ++next_) {
      if (!trail_[next_].fault) Run(trail_[next_]);
    }
  }

  // Ends every window the trail started and did not end (swapping first if it did not).
  // Not trail steps: they are not recorded in followed_.
  void CloseOpenWindows() {
    const std::map<int, OpenWindow> open = open_;  // Run(end) erases from open_
    for (const auto& [id, window] : open) {
      if (!window.swapped) {
        Run(TrailEvent{false, id, "swap", "", window.gfn, "(close) swap"}, /*record=*/false);
      }
      Run(TrailEvent{false, id, "end", "", window.gfn, "(close) end"}, /*record=*/false);
    }
  }

  void Run(const TrailEvent& event, bool record = true) {
    const uint64_t page = kFirstPage + event.gfn;
    if (record && !diverged()) followed_.push_back(event.text);
    if (event.step == "start") {
      ASSERT_THAT(space_.StartChange(page), IsOk()) << event.text;
      open_[event.invalidator] = OpenWindow{event.gfn, false};
    } else if (event.step == "swap") {
      victim_[event.invalidator] = space_.CurrentHost(page);
      space_.SwapBacking(page);
      open_[event.invalidator].swapped = true;
    } else {  // end: the model's assertion at I_END
      space_.EndChange(page);
      open_.erase(event.invalidator);
      const uint64_t victim = victim_[event.invalidator];
      removed_and_ended_.push_back(victim);
      std::optional<ShadowEntry> entry = mmu_.Lookup(page);
      if (entry.has_value() && entry->host_address == victim) {
        violations_.push_back(absl::StrCat("after '", event.text, "': gfn ", page,
                                           " still maps the page this window removed"));
      }
    }
  }

  // The model's assertion at F_LOCK install: never a page whose removing window ended.
  void CheckInstalled() {
    std::optional<ShadowEntry> entry = mmu_.Lookup(kFirstPage);
    if (!entry.has_value()) return;
    for (uint64_t removed : removed_and_ended_) {
      if (entry->host_address == removed) {
        violations_.push_back(absl::StrCat(
            "gfn ", kFirstPage, " maps a page removed by an invalidation that has ended"));
      }
    }
  }

 protected:
  notifier::NotifierSubscriptions hub_;
  FakeAddressSpace space_{hub_, kPages};
  ReplayPrimary primary_{space_};
  SecondaryMmu mmu_{primary_, SecondaryMmuOptions{"replay-mmu", absl::Seconds(5)}};

  std::vector<TrailEvent> trail_;
  size_t next_ = 0;
  std::string last_ = "snap";
  std::vector<std::string> followed_;  // trail events the code went through, in order
  std::string divergence_;
  size_t diverged_at_ = 0;  // index of the trail event the code did not do
  struct OpenWindow {
    uint64_t gfn;
    bool swapped;
  };
  std::map<int, OpenWindow> open_;  // by invalidator
  std::map<int, uint64_t> victim_;
  std::vector<uint64_t> removed_and_ended_;
  std::vector<std::string> violations_;
};

struct TrailCase {
  const char* mutant;      // tests/model/trails/kvm_retry.<mutant>.events
  const char* divergence;  // where the real code must leave the trail
};

void PrintTo(const TrailCase& c, std::ostream* os) { *os << c.mutant; }

class ModelTrailReplayTest : public ModelTrailReplayFixture,
                             public ::testing::WithParamInterface<TrailCase> {
 protected:
  void Replay() {
    ModelTrailReplayFixture::Replay(absl::StrCat("kvm_retry.", GetParam().mutant, ".events"));
  }
};

// The property the model checks, on the real code: the trail's interleaving leaves no
// stale translation (fails if the check the mutant removed is removed from mmu/).
TEST_P(ModelTrailReplayTest, NoStaleTranslationSurvivesTheInvalidationEnd) {
  Replay();
  EXPECT_THAT(violations_, ::testing::IsEmpty())
      << "followed: " << absl::StrJoin(followed_, " | ");
  // The fault ended on the page the primary has now, after every invalidation ran.
  ASSERT_TRUE(mmu_.Lookup(kFirstPage).has_value());
  EXPECT_EQ(mmu_.Lookup(kFirstPage)->host_address, space_.CurrentHost(kFirstPage));
  EXPECT_EQ(mmu_.stats().installs, 1u);
  EXPECT_EQ(mmu_.in_progress(), 0);
}

// Model and code agree step for step up to the check the mutant removed, and the real
// code leaves the trail exactly there, with a retry.
TEST_P(ModelTrailReplayTest, CodeFollowsTheTrailUntilTheRemovedCheckRetries) {
  Replay();
  EXPECT_EQ(divergence_, GetParam().divergence)
      << "followed: " << absl::StrJoin(followed_, " | ");
  std::vector<std::string> prefix;
  for (size_t i = 0; i < diverged_at_ && i < trail_.size(); ++i) {
    prefix.push_back(trail_[i].text);
  }
  EXPECT_EQ(followed_, prefix);
  const SecondaryMmuStats stats = mmu_.stats();
  EXPECT_EQ(stats.retries, 1u);
  EXPECT_EQ(stats.stale_detections, 1u);
}

INSTANTIATE_TEST_SUITE_P(
    Kvm, ModelTrailReplayTest,
    ::testing::Values(
        TrailCase{"NO_SEQ_RECHECK", "trail has 'F lock install', the code did 'F lock retry'"},
        TrailCase{"NO_RETRY_GFN", "trail has 'F lock install', the code did 'F lock retry'"},
        TrailCase{"NO_RANGE_UNION",
                  "trail has 'F precheck pass', the code did 'F precheck retry'"}),
    [](const ::testing::TestParamInfo<TrailCase>& param_info) {
      return std::string(param_info.param.mutant);
    });

}  // namespace
}  // namespace mmuvisor::mmu
