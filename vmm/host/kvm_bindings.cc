#include "vmm/host/kvm_bindings.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "vmm/kvm/errno_status.h"

namespace mmuvisor::vmm {

absl::Status KvmMemslotControl::SetSlot(const GuestMemorySlot& slot) {
  return vm_.SetUserMemoryRegion(slot.slot, slot.flags, slot.gpa.value, slot.size.value,
                                 slot.hva.value);
}

absl::Status KvmMemslotControl::DeleteSlot(const GuestMemorySlot& slot) {
  return vm_.SetUserMemoryRegion(slot.slot, slot.flags, slot.gpa.value, 0, slot.hva.value);
}

absl::StatusOr<std::vector<uint64_t>> KvmDirtyLog::Fetch(const GuestMemorySlot& slot) {
  const uint64_t pages = slot.size.value / kPageSize;
  std::vector<uint64_t> bitmap((pages + 63) / 64, 0);
  kvm_dirty_log log{};
  log.slot = slot.slot;
  log.dirty_bitmap = bitmap.data();
  if (ioctl(vm_.fd(), KVM_GET_DIRTY_LOG, &log) != 0) {
    return ErrnoToStatus(errno, absl::StrFormat("KVM_GET_DIRTY_LOG slot=%d pages=%d",
                                                slot.slot, pages));
  }
  return bitmap;
}

}  // namespace mmuvisor::vmm
