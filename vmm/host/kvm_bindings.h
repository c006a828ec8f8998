// The KVM side of HostAddressSpace's two hypervisor interfaces, over the typed KVM layer:
//   KvmMemslotControl  MemslotControl via KvmVm::SetUserMemoryRegion (size 0 deletes);
//   KvmDirtyLog        DirtyLog via KvmVm::GetDirtyLog (KVM_GET_DIRTY_LOG);
//   RunRealModeWriteProbe  the self-check's guest store.
//
// Threads: KVM serialises memslot ioctls itself; KvmDirtyLog::Fetch is called one at a
// time by HostAddressSpace. The KvmVm must outlive both objects.
#ifndef MMUVISOR_VMM_HOST_KVM_BINDINGS_H_
#define MMUVISOR_VMM_HOST_KVM_BINDINGS_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/host/memslot_control.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"

namespace mmuvisor::vmm {

class KvmMemslotControl : public MemslotControl {
 public:
  explicit KvmMemslotControl(const KvmVm& vm) : vm_(vm) {}
  absl::Status SetSlot(const GuestMemorySlot& slot) override;
  absl::Status DeleteSlot(const GuestMemorySlot& slot) override;

 private:
  const KvmVm& vm_;
};

class KvmDirtyLog : public DirtyLog {
 public:
  explicit KvmDirtyLog(const KvmVm& vm) : vm_(vm) {}
  // KVM_GET_DIRTY_LOG: get-and-clear (without KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled,
  // which this project does not enable). REQUIRES: the slot has KVM_MEM_LOG_DIRTY_PAGES.
  absl::StatusOr<std::vector<uint64_t>> Fetch(const GuestMemorySlot& slot) override;
  std::string Describe() const override { return "kvm-dirty-log (KVM_GET_DIRTY_LOG)"; }

 private:
  const KvmVm& vm_;
};

// The dirty-log self-check's guest write (a GuestWriteProbe): puts a real-mode stub in
// the second page of `slot` ("mov byte [0], 0x5a; out kProbeDonePort, al", data segment
// at slot.gpa), runs `vcpu` until that OUT exits and checks the byte landed. It ends with
// an OUT rather than a HLT so that it also ends where KVM emulates the LAPIC (a HLT would
// wait in the kernel for an interrupt). The vCPU's registers are left
// changed: call it before the boot plan sets them; the two pages are restored. REQUIRES:
// slot at least 2 pages, gpa below 1 MiB - 64 KiB (real-mode segments);
// on the vCPU's thread. Errors: KVM_RUN's, or Internal naming an unexpected exit.
inline constexpr uint8_t kProbeDonePort = 0x80;  // the POST-code port: claimed by nothing
absl::Status RunRealModeWriteProbe(KvmVcpu& vcpu, const GuestMemorySlot& slot);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_HOST_KVM_BINDINGS_H_
