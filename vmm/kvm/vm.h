// KvmVm: one KVM virtual machine (the fd from KVM_CREATE_VM). One method per VM ioctl.
//
// Invariants: a host range registered with SetUserMemoryRegion must stay mapped until its
// slot is deleted (size 0) or the VM is destroyed; KVM pins nothing, it follows the host
// page tables through its own mmu_notifier.
// Thread-safety: VM ioctls may be issued from any thread of the creating process; KVM
// serialises memslot updates itself (kvm->slots_lock). This class holds no state of its own.
#ifndef MMUVISOR_VMM_KVM_VM_H_
#define MMUVISOR_VMM_KVM_VM_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/types/span.h"
#include "vmm/kvm/unique_fd.h"

namespace mmuvisor::vmm {

class KvmVcpu;

class KvmVm {
 public:
  explicit KvmVm(UniqueFd fd) : fd_(std::move(fd)) {}
  KvmVm(KvmVm&&) = default;
  KvmVm& operator=(KvmVm&&) = default;

  // KVM_CHECK_EXTENSION on the VM fd (answers for this VM, e.g. NR_MEMSLOTS).
  absl::StatusOr<int> CheckExtension(int cap) const;

  // KVM_SET_USER_MEMORY_REGION: maps guest-physical [gpa, gpa + size) onto host-virtual
  // [hva, hva + size) as slot `slot`. size 0 deletes the slot.
  // REQUIRES: gpa, size and hva page aligned; no overlap with another slot (KVM: EEXIST);
  //           the host range stays mapped until the slot is deleted.
  absl::Status SetUserMemoryRegion(uint32_t slot, uint32_t flags, uint64_t gpa, uint64_t size,
                                   uint64_t hva) const;

  // KVM_GET_DIRTY_LOG: copies slot `slot`'s dirty bitmap (bit i = page i of the slot
  // written since the last call) into `bitmap` and clears it in KVM (get-and-clear, as
  // long as KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 is not enabled; this project never enables
  // it). REQUIRES: the slot has KVM_MEM_LOG_DIRTY_PAGES; bitmap holds at least
  // ceil(pages / 64) words (KVM writes that many, rounded up to 64 bits).
  // Errors: ENOENT (no such slot / no logging) -> NotFound, naming slot and size.
  absl::Status GetDirtyLog(uint32_t slot, absl::Span<uint64_t> bitmap) const;

  // KVM_ENABLE_CAP on the VM fd with args[0] = arg0 (e.g. KVM_CAP_DIRTY_LOG_RING: the
  // ring's size in bytes). Errors name the cap and the argument; KVM's EINVAL (bad value,
  // or too late: some caps only before the first vCPU) -> InvalidArgument.
  absl::Status EnableCap(uint32_t cap, uint64_t arg0) const;

  // KVM_RESET_DIRTY_RINGS: for every vCPU's dirty ring, KVM re-arms dirty tracking of the
  // entries userspace marked KVM_DIRTY_GFN_F_RESET (in ring order, up to the first entry
  // not so marked) and frees them. Returns how many entries it reset. REQUIRES: the dirty
  // ring was enabled (without one KVM has nothing to reset; the call is then an error).
  absl::StatusOr<uint32_t> ResetDirtyRings() const;

  // KVM_SET_TSS_ADDR: three pages of guest-physical space KVM may use for its real-mode
  // TSS on Intel hosts without unrestricted guest. Must not overlap a memslot. Call before
  // the first KVM_RUN.
  absl::Status SetTssAddr(uint64_t gpa) const;

  // KVM_SET_IDENTITY_MAP_ADDR: one page for the EPT identity map (same hosts). Call before
  // creating vCPUs.
  absl::Status SetIdentityMapAddr(uint64_t gpa) const;

  // KVM_CREATE_VCPU(id) and mmap of its struct kvm_run (`mmap_size` from
  // KVM_GET_VCPU_MMAP_SIZE). REQUIRES: id < KVM_CAP_MAX_VCPU_ID, not used before.
  absl::StatusOr<KvmVcpu> CreateVcpu(int id, int mmap_size) const;

  int fd() const { return fd_.get(); }

 private:
  UniqueFd fd_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_VM_H_
