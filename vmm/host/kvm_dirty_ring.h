// KvmDirtyRingLog: HostAddressSpace's DirtyLog over KVM's per-vCPU dirty rings
// (vmm/kvm/dirty_ring.h), the alternative to KvmDirtyLog's per-memslot bitmap.
//
// A harvest (Collect) walks every vCPU's ring from its fetch index, records each dirty
// entry's (slot, offset) in a pending bitmap per slot, marks the entries RESET and issues
// one KVM_RESET_DIRTY_RINGS. Fetch(slot) collects, then hands out and clears that slot's
// pending bitmap: entries of other slots stay pending for their own Fetch, so the
// get-and-clear contract of DirtyLog holds per slot as it does for KVM_GET_DIRTY_LOG.
// A full ring (KVM_EXIT_DIRTY_RING_FULL) is collected by the vCPU's own thread
// (DirtyRingFullHandler, called by VcpuRunner); its entries wait in the pending bitmaps.
// Pending bits outside the slot's current size (a slot that shrank) are dropped at Fetch;
// those of a deleted slot wait for the next slot with its id (an extra write-back there,
// never a lost one).
//
// Life cycle: Enable() on the VM before any vCPU exists; AddVcpu() for every vCPU before it
// first runs; destroy after the vCPU threads and HostAddressSpace::Teardown (its last
// user), before or after the vCPUs and the VM (the ring mappings keep their files).
//
// Threads: every method is thread-safe. mu_ (a leaf) guards the rings' fetch indices and
// the pending bitmaps, and is held across KVM_RESET_DIRTY_RINGS so that a reset never
// runs before the RESET marks of a concurrent harvest are all stored.
#ifndef MMUVISOR_VMM_HOST_KVM_DIRTY_RING_H_
#define MMUVISOR_VMM_HOST_KVM_DIRTY_RING_H_

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/mutex.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/kvm/dirty_ring.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/vcpu/dirty_ring_full.h"

namespace mmuvisor::vmm {

// QEMU's default ring size (dirty-ring-size=4096 entries, 64 KiB per vCPU).
inline constexpr uint32_t kDefaultDirtyRingEntries = 4096;

// Relaxed counters, exact once the vCPUs have stopped.
struct DirtyRingStats {
  uint64_t collects = 0;       // harvests of all rings (Fetch, ring-full exits)
  uint64_t entries = 0;        // dirty entries harvested
  uint64_t resets = 0;         // KVM_RESET_DIRTY_RINGS issued
  uint64_t full_exits = 0;     // KVM_EXIT_DIRTY_RING_FULL handled
  uint64_t bits_fetched = 0;   // bits handed out by Fetch
  uint64_t bits_dropped = 0;   // pending bits beyond their slot's size at Fetch
};

class KvmDirtyRingLog final : public DirtyLog, public DirtyRingFullHandler {
 public:
  // EnableDirtyRing(vm, ProbeDirtyRing(vm), entries). REQUIRES: no vCPU exists yet.
  // Errors: FailedPrecondition "dirty ring: KVM_CAP_DIRTY_LOG_RING not offered ..." where
  // KVM lacks it; KVM_ENABLE_CAP's error otherwise. `vm` must outlive this object.
  static absl::StatusOr<std::unique_ptr<KvmDirtyRingLog>> Enable(const KvmVm& vm,
                                                                 uint32_t entries);
  KvmDirtyRingLog(const KvmDirtyRingLog&) = delete;
  KvmDirtyRingLog& operator=(const KvmDirtyRingLog&) = delete;

  // Maps `vcpu`'s ring. REQUIRES: before the vCPU first runs (entries it logged earlier
  // would wait until it is added).
  absl::Status AddVcpu(const KvmVcpu& vcpu) ABSL_LOCKS_EXCLUDED(mu_);

  // DirtyLog: collect, then this slot's pending bitmap (bit i = page i), cleared.
  absl::StatusOr<std::vector<uint64_t>> Fetch(const GuestMemorySlot& slot) override
      ABSL_LOCKS_EXCLUDED(mu_);
  std::string Describe() const override;  // "kvm-dirty-ring (KVM_CAP_..., N entries/vCPU)"

  // DirtyRingFullHandler (a vCPU thread): collect every ring and reset.
  absl::Status OnDirtyRingFull(uint32_t vcpu) override ABSL_LOCKS_EXCLUDED(mu_);

  // Harvests every ring into the pending bitmaps and resets. Errors: KVM_RESET_DIRTY_RINGS's.
  absl::Status Collect() ABSL_LOCKS_EXCLUDED(mu_);

  const DirtyRingConfig& config() const { return config_; }
  DirtyRingStats stats() const;

 private:
  KvmDirtyRingLog(const KvmVm& vm, DirtyRingConfig config) : vm_(vm), config_(config) {}
  absl::Status CollectLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  const KvmVm& vm_;
  const DirtyRingConfig config_;
  mutable Mutex mu_;
  std::vector<VcpuDirtyRing> rings_ ABSL_GUARDED_BY(mu_);
  // Slot (as_id << 16 | id) -> pages logged and not yet fetched, one bit each.
  std::map<uint32_t, std::vector<uint64_t>> pending_ ABSL_GUARDED_BY(mu_);
  // The last KVM_RESET_DIRTY_RINGS failed: the next collect issues one even if it
  // harvests nothing.
  bool reset_owed_ ABSL_GUARDED_BY(mu_) = false;
  std::atomic<uint64_t> collects_{0}, entries_{0}, resets_{0}, full_exits_{0},
      bits_fetched_{0}, bits_dropped_{0};  // relaxed: statistics
};

// The startup self-check of the ring, for `auto`, on a scratch VM so that the real VM can
// still take the bitmap (KVM offers one or the other per VM on x86): a VM with the ring
// enabled, one vCPU, 16 KiB of anonymous RAM in slot 0 at gpa 0 with dirty logging, and
// ChooseDirtyTracking with RunRealModeWriteProbe, exactly as HostAddressSpace runs it.
// Returns the choice (kDirtyLog: the ring logged the guest's write); errors: a step that
// failed (FailedPrecondition when the ring is not offered).
absl::StatusOr<DirtyTrackingChoice> SelfCheckDirtyRing(const KvmSystem& system,
                                                       uint32_t entries);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_KVM_DIRTY_RING_H_
