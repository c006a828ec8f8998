// Fakes and helpers for the HostAddressSpace tests (no KVM): a memslot control that
// records its calls, a dirty log the test writes into, fd/thread counting, patterns.
#ifndef MMUVISOR_TESTS_VMM_HOST_HOST_TEST_SUPPORT_H_
#define MMUVISOR_TESTS_VMM_HOST_HOST_TEST_SUPPORT_H_

#include <dirent.h>

#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "gtest/gtest.h"
#include "vmm/host/dirty_tracking.h"
#include "notifier/base/mutex.h"
#include "support/proc_counts.h"
#include "vmm/host/host_options.h"
#include "vmm/host/memslot_control.h"

namespace mmuvisor::vmm::testing {

class RecordingMemslotControl : public MemslotControl {
 public:
  absl::Status SetSlot(const GuestMemorySlot& slot) override {
    Record("set " + std::to_string(slot.slot));
    return absl::OkStatus();
  }
  absl::Status DeleteSlot(const GuestMemorySlot& slot) override {
    Record("delete " + std::to_string(slot.slot));
    return absl::OkStatus();
  }
  void Record(const std::string& event) {
    MutexLock lock(&mu_);
    events_.push_back(event);
  }
  std::vector<std::string> events() const {
    MutexLock lock(&mu_);
    return events_;
  }

 private:
  mutable Mutex mu_;
  std::vector<std::string> events_ ABSL_GUARDED_BY(mu_);
};

// A dirty log the test feeds: MarkWritten(gpa) plays KVM's mark_page_dirty.
class FakeDirtyLog : public DirtyLog {
 public:
  void MarkWritten(Gpa gpa) {
    MutexLock lock(&mu_);
    written_.push_back(gpa.value);
  }
  absl::StatusOr<std::vector<uint64_t>> Fetch(const GuestMemorySlot& slot) override {
    MutexLock lock(&mu_);
    ++fetches_;
    const uint64_t pages = slot.size.value / kPageSize;
    std::vector<uint64_t> bits((pages + 63) / 64, 0);
    std::vector<uint64_t> rest;
    for (uint64_t gpa : written_) {
      if (gpa >= slot.gpa.value && gpa < slot.end().value) {
        const uint64_t i = (gpa - slot.gpa.value) / kPageSize;
        bits[i / 64] |= uint64_t{1} << (i % 64);
      } else {
        rest.push_back(gpa);
      }
    }
    written_ = std::move(rest);
    return bits;
  }
  std::string Describe() const override { return "fake-dirty-log"; }
  int fetches() const {
    MutexLock lock(&mu_);
    return fetches_;
  }

 private:
  mutable Mutex mu_;
  std::vector<uint64_t> written_ ABSL_GUARDED_BY(mu_);
  int fetches_ ABSL_GUARDED_BY(mu_) = 0;
};

// A one-shot event (absl::Notification's job) on the TSan-visible Mutex of
// notifier/mutex.h.
class TestEvent {
 public:
  void Notify() {
    MutexLock lock(&mu_);
    set_ = true;
    cv_.notify_all();
  }
  bool HasBeenNotified() const {
    MutexLock lock(&mu_);
    return set_;
  }
  // Waits for Notify(), but at most `limit`: after it, records a test failure and returns
  // false, so a side that never notifies fails the test instead of hanging it.
  bool WaitForNotification(absl::Duration limit = absl::Seconds(60)) {
    MutexLock lock(&mu_);
    if (mu_.AwaitFor(cv_, limit, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return set_; })) {
      return true;
    }
    ADD_FAILURE() << "TestEvent not notified within " << limit;
    return false;
  }

 private:
  mutable Mutex mu_;
  std::condition_variable cv_;
  bool set_ ABSL_GUARDED_BY(mu_) = false;
};

// A window_hook that holds the first reclaim (kClear) window open at its end: notifies
// `in_window`, waits for `release`, then records "reclaim window ends" in `control`, so a
// test can start a memslot change meanwhile and check it came after.
inline WindowHook HoldFirstReclaimWindow(TestEvent& in_window, TestEvent& release,
                                         RecordingMemslotControl& control) {
  return [&in_window, &release, &control](WindowPoint point, const notifier::Range& range) {
    if (point == WindowPoint::kBeforeEnd && range.event == notifier::Event::kClear &&
        !release.HasBeenNotified()) {
      in_window.Notify();
      release.WaitForNotification();
      control.Record("reclaim window ends");
    }
  };
}

// The leak-check counts, shared by every test (tests/support/proc_counts.h).
using ::mmuvisor::testing::OpenFdCount;
using ::mmuvisor::testing::SettledThreadCount;
using ::mmuvisor::testing::ThreadCount;

// The byte at `offset` of page `page` in version `version` of a test pattern.
inline uint8_t PatternByte(uint64_t page, uint64_t version, uint64_t offset) {
  return static_cast<uint8_t>((page * 131 + version * 31 + offset * 7 + 1) & 0xff);
}
inline void FillPattern(uint8_t* dst, uint64_t page, uint64_t version) {
  for (uint64_t i = 0; i < kPageSize; ++i) dst[i] = PatternByte(page, version, i);
}
// First offset that differs from the pattern, or -1.
inline int64_t FirstMismatch(const uint8_t* p, uint64_t page, uint64_t version) {
  for (uint64_t i = 0; i < kPageSize; ++i) {
    if (p[i] != PatternByte(page, version, i)) return static_cast<int64_t>(i);
  }
  return -1;
}
inline bool IsZeroPage(const uint8_t* p) {
  for (uint64_t i = 0; i < kPageSize; ++i) {
    if (p[i] != 0) return false;
  }
  return true;
}

}  // namespace mmuvisor::vmm::testing

#endif  // MMUVISOR_TESTS_VMM_HOST_HOST_TEST_SUPPORT_H_
