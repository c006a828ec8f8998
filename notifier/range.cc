#include "notifier/range.h"

#include "absl/strings/str_format.h"

namespace mmuvisor::notifier {

const char* EventName(Event event) {
  switch (event) {
    case Event::kUnmap: return "kUnmap";
    case Event::kClear: return "kClear";
    case Event::kProtectionVma: return "kProtectionVma";
    case Event::kProtectionPage: return "kProtectionPage";
    case Event::kSoftDirty: return "kSoftDirty";
    case Event::kRelease: return "kRelease";
    case Event::kMigrate: return "kMigrate";
    case Event::kExclusive: return "kExclusive";
  }
  return "kUnknown";
}

absl::StatusOr<Range> Range::Make(uint64_t start, uint64_t end, Event event, bool blockable,
                                  const void* owner) {
  Range range{start, end, event, blockable, owner};
  absl::Status status = range.Validate();
  if (!status.ok()) return status;
  return range;
}

absl::Status Range::Validate() const {
  if (end > start) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "notifier range [%#x, %#x) %s: %s", start, end, EventName(event),
      end == start ? "is empty" : "wraps (end < start)"));
}

std::string Range::ToString() const {
  return absl::StrFormat("[%#x, %#x) %s%s", start, end, EventName(event),
                         blockable ? "" : " nonblock");
}

}  // namespace mmuvisor::notifier
