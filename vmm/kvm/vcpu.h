// KvmVcpu: one KVM vCPU (fd from KVM_CREATE_VCPU) and its shared struct kvm_run mapping.
// One method per vCPU ioctl.
//
// Thread-safety: every ioctl here except as noted must be issued by the one thread that
// runs the vCPU (api.rst: vCPU ioctls from another thread are slow and racy). The only
// cross-thread entry point is RequestImmediateExit(), which writes kvm_run::immediate_exit
// (a byte KVM reads on entry to KVM_RUN) and is paired with a signal sent by the kicker.
#ifndef MMUVISOR_VMM_KVM_VCPU_H_
#define MMUVISOR_VMM_KVM_VCPU_H_

#include <linux/kvm.h>

#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/host_mapping.h"
#include "vmm/kvm/unique_fd.h"

namespace mmuvisor::vmm {

class KvmVcpu {
 public:
  KvmVcpu(int id, UniqueFd fd, HostMapping run)
      : id_(id), fd_(std::move(fd)), run_(std::move(run)) {}
  KvmVcpu(KvmVcpu&&) = default;
  KvmVcpu& operator=(KvmVcpu&&) = default;

  // KVM_RUN: enters the guest until an exit userspace must handle; run()->exit_reason says
  // which. Returns OK on an exit; an Unavailable status for EINTR/EAGAIN (a signal or
  // immediate_exit; run()->exit_reason is then KVM_EXIT_INTR); any other errno is an error
  // (EFAULT may come with exit_reason KVM_EXIT_MEMORY_FAULT on kernels >= 6.8).
  // Before re-entering after a KVM_EXIT_IO IN, the data at run()+io.data_offset must be
  // filled: KVM completes the instruction from it on the next KVM_RUN.
  absl::Status Run();

  // KVM_GET_REGS / KVM_SET_REGS: general-purpose registers, RIP, RFLAGS.
  absl::StatusOr<kvm_regs> GetRegs() const;
  absl::Status SetRegs(const kvm_regs& regs) const;
  // KVM_GET_SREGS / KVM_SET_SREGS: segments, descriptor tables, control registers, EFER.
  // KVM rejects EFER.LME/LMA unless the guest CPUID (SetCpuid) advertises long mode.
  absl::StatusOr<kvm_sregs> GetSregs() const;
  absl::Status SetSregs(const kvm_sregs& sregs) const;
  // KVM_SET_CPUID2: the CPUID the guest sees. Call before SetSregs and before KVM_RUN.
  absl::Status SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) const;
  // KVM_GET_MP_STATE / KVM_SET_MP_STATE (KVM_MP_STATE_*). With an in-kernel LAPIC every
  // vCPU but 0 is created waiting for INIT/SIPI (KVM_MP_STATE_UNINITIALIZED) and blocks
  // in KVM_RUN until made KVM_MP_STATE_RUNNABLE here; without one, KVM accepts only
  // RUNNABLE, which every vCPU already is.
  absl::StatusOr<uint32_t> GetMpState() const;
  absl::Status SetMpState(uint32_t state) const;

  // Sets kvm_run::immediate_exit: the next (or current entry into) KVM_RUN returns EINTR
  // at once. Any thread. Pair with a signal to the vCPU thread to interrupt a running guest.
  void RequestImmediateExit(bool on);

  kvm_run* run() const { return reinterpret_cast<kvm_run*>(run_.data()); }
  int id() const { return id_; }
  int fd() const { return fd_.get(); }

 private:
  int id_;
  UniqueFd fd_;
  HostMapping run_;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_VCPU_H_
