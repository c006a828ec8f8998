// Dirty tracking for reclaim: which guest pages were written since they were last saved.
//
// DirtyLog is the source: KVM's dirty log (KVM_GET_DIRTY_LOG, get-and-clear, one bit per
// page of a memslot registered with KVM_MEM_LOG_DIRTY_PAGES; see kvm_bindings.h) or a fake
// in tests. ChooseDirtyTracking() runs the startup self-check: drain the log, write one
// page from the guest side, fetch again; only if that page's bit is set is the log
// trusted (not assumed on every host, kvm_pvm included). Otherwise, and whenever there is no log (no
// KVM), reclaim falls back to writing back every resident page: always correct, slower.
// The choice and its reason are logged once by HostAddressSpace::Create.
//
// Where the log comes from (DirtyLogSource, the VMM's choice before it creates vCPUs):
// KVM's per-memslot bitmap (KvmDirtyLog, kvm_bindings.h) or its per-vCPU dirty ring
// (KvmDirtyRingLog, kvm_dirty_ring.h); `auto` takes no log where KVM prefetches around a
// fault (a log costs the guest a fault per written or swapped-in page there; the write-back
// of clean pages it saves costs less), else the ring where KVM offers it and a self-check
// on a scratch VM passes, else the bitmap. Both logs then go through the same self-check
// on the real VM (ChooseDirtyTracking).
//
// Writes that do not go through a vCPU (device DMA through a SecondaryMmu, the VMM's own
// copies into guest memory) are invisible to KVM's log: their writers must call
// HostAddressSpace::NoteHostWrite() before writing (DmaPort does).
//
// Threads: DirtyLog::Fetch is called with HostAddressSpace's harvest lock held (one
// fetch at a time); ChooseDirtyTracking from the creating thread.
#ifndef MMUVISOR_VMM_HOST_DIRTY_TRACKING_H_
#define MMUVISOR_VMM_HOST_DIRTY_TRACKING_H_

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vmm/memory/memslot_table.h"

namespace mmuvisor::vmm {

class DirtyLog {
 public:
  virtual ~DirtyLog() = default;
  // Pages of `slot` written since the previous Fetch of that slot, as a bitmap (bit i of
  // word i / 64 = page i of the slot), and clears them (KVM_GET_DIRTY_LOG semantics).
  virtual absl::StatusOr<std::vector<uint64_t>> Fetch(const GuestMemorySlot& slot) = 0;
  // "kvm-dirty-log (KVM_GET_DIRTY_LOG)", for the startup log line.
  virtual std::string Describe() const = 0;
};

// The dirty log a VMM asks for (`--dirty bitmap|ring|auto`).
enum class DirtyLogSource : uint8_t {
  kBitmap,  // KVM_GET_DIRTY_LOG
  kRing,    // KVM_CAP_DIRTY_LOG_RING[_ACQ_REL]; an error where KVM does not offer it
  kAuto,    // none where KVM prefetches around a fault (KvmPrefetchesNeighbours: PVM,
            // shadow paging, the legacy MMU), which a log turns off for writable pages;
            // else the ring if offered and its self-check passes, else the bitmap (logged)
  kNone,    // no dirty log: slots without KVM_MEM_LOG_DIRTY_PAGES, no self-check; reclaim
            // writes back every resident page (`mmuvisor run` without --resident: nothing
            // reclaims, and the log would only cost the boot and every first write)
};
const char* DirtyLogSourceName(DirtyLogSource source);  // "bitmap", "ring", "auto", "none"
// InvalidArgument naming the accepted words.
absl::StatusOr<DirtyLogSource> ParseDirtyLogSource(absl::string_view word);

enum class DirtyTrackingMode {
  kDirtyLog,         // write back only saved pages the log reports as written
  kAlwaysWriteBack,  // write back every resident page on every reclaim
};
const char* DirtyTrackingModeName(DirtyTrackingMode mode);

struct DirtyTrackingChoice {
  DirtyTrackingMode mode = DirtyTrackingMode::kAlwaysWriteBack;
  std::string reason;  // one line, for the log and the report
};

// Makes the guest store to the first page of `slot` (guest-physical slot.gpa; a vCPU
// store, e.g. RunRealModeWriteProbe in kvm_bindings.h) and returns when it is done. It may
// use the rest of the slot for code (slot.hva is mapped). OK or what prevented it.
using GuestWriteProbe = std::function<absl::Status(const GuestMemorySlot& slot)>;

// The self-check above. `log` and `probe` may be null (-> kAlwaysWriteBack, reason says
// which is missing). Probes the first page of the first slot.
DirtyTrackingChoice ChooseDirtyTracking(DirtyLog* log, const MemslotTable& slots,
                                        const GuestWriteProbe& probe);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_DIRTY_TRACKING_H_
