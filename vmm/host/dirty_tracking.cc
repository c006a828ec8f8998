#include "vmm/host/dirty_tracking.h"

#include "absl/strings/str_cat.h"

namespace mmuvisor::vmm {

const char* DirtyLogSourceName(DirtyLogSource source) {
  switch (source) {
    case DirtyLogSource::kBitmap:
      return "bitmap";
    case DirtyLogSource::kRing:
      return "ring";
    case DirtyLogSource::kAuto:
      return "auto";
    case DirtyLogSource::kNone:
      return "none";
  }
  return "?";
}

absl::StatusOr<DirtyLogSource> ParseDirtyLogSource(absl::string_view word) {
  for (DirtyLogSource s : {DirtyLogSource::kBitmap, DirtyLogSource::kRing, DirtyLogSource::kAuto,
                           DirtyLogSource::kNone}) {
    if (word == DirtyLogSourceName(s)) return s;
  }
  return absl::InvalidArgumentError(
      absl::StrCat("dirty tracking '", word, "': expected bitmap, ring, auto or none"));
}

const char* DirtyTrackingModeName(DirtyTrackingMode mode) {
  switch (mode) {
    case DirtyTrackingMode::kDirtyLog:
      return "dirty-log";
    case DirtyTrackingMode::kAlwaysWriteBack:
      return "always-write-back";
  }
  return "?";
}

DirtyTrackingChoice ChooseDirtyTracking(DirtyLog* log, const MemslotTable& slots,
                                        const GuestWriteProbe& probe) {
  DirtyTrackingChoice fallback;
  if (log == nullptr) {
    fallback.reason = "no dirty log: every resident page is written back on reclaim";
    return fallback;
  }
  if (!probe) {
    fallback.reason = absl::StrCat(log->Describe(),
                                   " not verified (no guest write probe): writing back always");
    return fallback;
  }
  if (slots.slots().empty()) {
    fallback.reason = "no memslot to probe: writing back always";
    return fallback;
  }
  const GuestMemorySlot& slot = slots.slots().front();
  // Drain whatever is logged so far, so the next fetch shows only the probe's write.
  if (absl::StatusOr<std::vector<uint64_t>> drained = log->Fetch(slot); !drained.ok()) {
    fallback.reason = absl::StrCat(log->Describe(), " unusable: ",
                                   drained.status().ToString(), "; writing back always");
    return fallback;
  }
  if (absl::Status s = probe(slot); !s.ok()) {
    fallback.reason = absl::StrCat("dirty-log self-check: the guest write probe failed (",
                                   s.ToString(), "); writing back always");
    return fallback;
  }
  absl::StatusOr<std::vector<uint64_t>> bits = log->Fetch(slot);
  if (!bits.ok()) {
    fallback.reason = absl::StrCat(log->Describe(), " unusable: ", bits.status().ToString(),
                                   "; writing back always");
    return fallback;
  }
  if (bits->empty() || ((*bits)[0] & 1) == 0) {
    fallback.reason = absl::StrCat(log->Describe(),
                                   " missed a guest write in the self-check: writing back always");
    return fallback;
  }
  return DirtyTrackingChoice{
      DirtyTrackingMode::kDirtyLog,
      absl::StrCat(log->Describe(), " verified by the self-check (guest write to gpa 0x",
                   absl::Hex(slot.gpa.value), " was logged)")};
}

}  // namespace mmuvisor::vmm
