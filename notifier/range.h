// notifier/range.h: the range an invalidation covers (Linux: struct mmu_notifier_range).
//
// A Range is half-open, [start, end), with the event that caused it, a blockable flag and
// an owner tag. Invariant for every Range the hub accepts: start < end (no empty range, no
// wrap-around). Range::Make is the validating factory; the hub re-checks ranges it is given
// and rejects bad ones with InvalidArgument.
//
// Plain value type: no locks, any thread.
#ifndef MMUVISOR_NOTIFIER_RANGE_H_
#define MMUVISOR_NOTIFIER_RANGE_H_

#include <cstdint>
#include <string>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace mmuvisor::notifier {

// Why the range is invalidated (Linux: enum mmu_notifier_event, same order).
enum class Event : uint8_t {
  kUnmap = 0,        // munmap / mremap move: the mapping goes away.
  kClear,            // PTEs cleared (madvise, page replacement, OOM reaping).
  kProtectionVma,    // protection of the whole range changes (mprotect).
  kProtectionPage,   // per-page read/write change (write-protect for dirty tracking).
  kSoftDirty,        // soft-dirty tracking reset.
  kRelease,          // the address space is being torn down.
  kMigrate,          // page contents move to a new backing page; `owner` may be ignored.
  kExclusive,        // a device loses exclusive access; `owner` names it.
};

const char* EventName(Event event);

struct Range {
  uint64_t start = 0;
  uint64_t end = 0;  // exclusive
  Event event = Event::kUnmap;
  // false: callbacks must not sleep; a start may then fail with "again" (EAGAIN).
  bool blockable = true;
  // Tag of whoever asked (Linux: range->owner); callbacks may ignore their own migrations.
  const void* owner = nullptr;

  // Validating factory. InvalidArgument if end <= start (empty or wrapping).
  static absl::StatusOr<Range> Make(uint64_t start, uint64_t end, Event event,
                                    bool blockable = true, const void* owner = nullptr);

  // OK when start < end, else InvalidArgument naming the range.
  absl::Status Validate() const;

  uint64_t size() const { return end - start; }
  // True when [start, end) and [other_start, other_end) share at least one address.
  bool Overlaps(uint64_t other_start, uint64_t other_end) const {
    return start < other_end && other_start < end;
  }
  // "[0x1000, 0x2000) kUnmap nonblock" for errors and violation reports.
  std::string ToString() const;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_RANGE_H_
