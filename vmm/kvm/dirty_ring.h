// KVM's per-vCPU dirty ring (KVM_CAP_DIRTY_LOG_RING, Linux >= 5.11; the acquire/release
// variant KVM_CAP_DIRTY_LOG_RING_ACQ_REL, Linux >= 6.1): instead of one bitmap per memslot,
// KVM appends a struct kvm_dirty_gfn {flags, slot, offset} to the running vCPU's ring each
// time a page of a memslot with KVM_MEM_LOG_DIRTY_PAGES is first written after its
// tracking was (re-)armed. Userspace maps each ring (vCPU fd, page offset
// KVM_DIRTY_LOG_PAGE_OFFSET) and harvests it.
//
// The protocol (api.rst, "KVM_CAP_DIRTY_LOG_RING"; include/uapi/linux/kvm.h):
//   entry flags  00 invalid --KVM pushes--> 01 DIRTY --userspace harvests--> 1X RESET
//                --KVM_RESET_DIRTY_RINGS--> 00 (tracking of that page re-armed)
//   Userspace keeps its own fetch index per ring (free-running, mod size), reads entries
//   from it while DIRTY is set, in order and without skipping, marks each RESET, then
//   issues KVM_RESET_DIRTY_RINGS on the VM fd (KvmVm::ResetDirtyRings), which walks every
//   ring from KVM's reset index over the RESET entries.
//   When a ring holds size - reserved entries (the soft limit; reserved = 64 plus the
//   CPU's dirty-log buffer, 512 for Intel PML), KVM_RUN returns with exit reason
//   KVM_EXIT_DIRTY_RING_FULL and does not enter the guest again until userspace has
//   harvested and reset.
// Ordering: the flags are loaded with acquire (pairs with KVM's smp_store_release of
// DIRTY in kvm_dirty_gfn_set_dirtied(), so slot and offset read after it are KVM's) and
// RESET is stored with release (pairs with KVM's smp_load_acquire in
// kvm_dirty_gfn_harvested(), so our reads of the entry are done before KVM reuses it).
// On x86 (TSO) plain accesses would do, which is why KVM also offers the non-ACQ_REL cap
// there; the code is the same for both.
//
// Thread-safety: VcpuDirtyRing is not synchronised: one harvester at a time (the caller's
// lock). Harvesting may run on any thread while the vCPU runs: KVM only appends.
#ifndef MMUVISOR_VMM_KVM_DIRTY_RING_H_
#define MMUVISOR_VMM_KVM_DIRTY_RING_H_

#include <linux/kvm.h>

#include <cstdint>
#include <string>

#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/host_mapping.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

namespace mmuvisor::vmm {

// What KVM_CHECK_EXTENSION on the VM fd says.
struct DirtyRingSupport {
  uint64_t max_bytes = 0;  // largest ring KVM accepts, bytes (0: no dirty ring)
  bool acq_rel = false;    // KVM_CAP_DIRTY_LOG_RING_ACQ_REL offered
  bool offered() const { return max_bytes != 0; }
  // "KVM_CAP_DIRTY_LOG_RING_ACQ_REL (max 65536 entries)" or why not, for messages.
  std::string Describe() const;
};
absl::StatusOr<DirtyRingSupport> ProbeDirtyRing(const KvmVm& vm);

struct DirtyRingConfig {
  uint32_t entries = 0;  // per vCPU, a power of two
  bool acq_rel = false;  // which cap was enabled
  std::string Describe() const;  // "KVM_CAP_DIRTY_LOG_RING_ACQ_REL, 4096 entries/vCPU"
};

// Enables the ring on `vm` with the ACQ_REL cap when offered, else the plain one.
// `entries` is rounded up to a power of two and clamped to what KVM reports; if KVM
// refuses it as too small for its reserved entries (EINVAL), the next larger power of two
// is tried, up to the maximum. REQUIRES: no vCPU created yet (KVM: EINVAL after).
// Errors: FailedPrecondition when the ring is not offered (naming the cap); the last
// KVM_ENABLE_CAP error otherwise.
absl::StatusOr<DirtyRingConfig> EnableDirtyRing(const KvmVm& vm, const DirtyRingSupport& support,
                                                uint32_t entries);

// One vCPU's ring, mapped from its fd.
class VcpuDirtyRing {
 public:
  // mmap(entries * 16 bytes, vcpu fd, KVM_DIRTY_LOG_PAGE_OFFSET pages). REQUIRES: the ring
  // was enabled on the vCPU's VM before the vCPU was created, with `entries`.
  static absl::StatusOr<VcpuDirtyRing> Map(const KvmVcpu& vcpu, uint32_t entries);

  VcpuDirtyRing(VcpuDirtyRing&&) = default;
  VcpuDirtyRing& operator=(VcpuDirtyRing&&) = default;

  // Walks the ring from the fetch index while entries are DIRTY: calls fn(slot, offset)
  // (slot = address-space id << 16 | slot id; offset = page within the slot), marks the
  // entry RESET and advances. Returns the number of entries harvested. The caller then
  // issues KVM_RESET_DIRTY_RINGS if it harvested any.
  uint32_t Harvest(absl::FunctionRef<void(uint32_t slot, uint64_t offset)> fn);

  int vcpu_id() const { return vcpu_id_; }
  uint32_t entries() const { return entries_; }

 private:
  VcpuDirtyRing(int vcpu_id, uint32_t entries, HostMapping mapping)
      : vcpu_id_(vcpu_id), entries_(entries), mapping_(std::move(mapping)) {}
  kvm_dirty_gfn* gfns() const { return reinterpret_cast<kvm_dirty_gfn*>(mapping_.data()); }

  int vcpu_id_;
  uint32_t entries_;
  HostMapping mapping_;
  uint32_t fetch_index_ = 0;  // free-running; the entry is fetch_index_ & (entries_ - 1)
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_DIRTY_RING_H_
