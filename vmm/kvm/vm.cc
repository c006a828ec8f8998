#include "vmm/kvm/vm.h"

#include <linux/kvm.h>
#include <sys/ioctl.h>
#include <sys/mman.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/host_mapping.h"
#include "vmm/kvm/vcpu.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {

absl::StatusOr<int> KvmVm::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  if (r < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_CHECK_EXTENSION (vm) cap=", cap));
  }
  return r;
}

absl::Status KvmVm::SetUserMemoryRegion(uint32_t slot, uint32_t flags, uint64_t gpa,
                                        uint64_t size, uint64_t hva) const {
  kvm_userspace_memory_region region{};
  region.slot = slot;
  region.flags = flags;
  region.guest_phys_addr = gpa;
  region.memory_size = size;
  region.userspace_addr = hva;
  if (::ioctl(fd_.get(), KVM_SET_USER_MEMORY_REGION, &region) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err,
                         absl::StrFormat("KVM_SET_USER_MEMORY_REGION slot=%u gpa=%#x size=%#x "
                                         "hva=%#x flags=%#x",
                                         slot, gpa, size, hva, flags));
  }
  return absl::OkStatus();
}

absl::Status KvmVm::GetDirtyLog(uint32_t slot, absl::Span<uint64_t> bitmap) const {
  kvm_dirty_log log{};
  log.slot = slot;
  log.dirty_bitmap = bitmap.data();
  if (::ioctl(fd_.get(), KVM_GET_DIRTY_LOG, &log) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("KVM_GET_DIRTY_LOG slot=%u bitmap_words=%u",
                                                slot, bitmap.size()));
  }
  return absl::OkStatus();
}

absl::Status KvmVm::EnableCap(uint32_t cap, uint64_t arg0) const {
  kvm_enable_cap enable{};
  enable.cap = cap;
  enable.args[0] = arg0;
  if (::ioctl(fd_.get(), KVM_ENABLE_CAP, &enable) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("KVM_ENABLE_CAP (vm) cap=%u arg0=%#x", cap, arg0));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> KvmVm::ResetDirtyRings() const {
  const int r = ::ioctl(fd_.get(), KVM_RESET_DIRTY_RINGS, 0);
  if (r < 0) return ErrnoToStatus(errno, "KVM_RESET_DIRTY_RINGS");
  return static_cast<uint32_t>(r);
}

absl::Status KvmVm::SetTssAddr(uint64_t gpa) const {
  // The argument is passed by value (an unsigned long), not by pointer.
  if (::ioctl(fd_.get(), KVM_SET_TSS_ADDR, static_cast<unsigned long>(gpa)) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("KVM_SET_TSS_ADDR gpa=%#x", gpa));
  }
  return absl::OkStatus();
}

absl::Status KvmVm::SetIdentityMapAddr(uint64_t gpa) const {
  // Unlike KVM_SET_TSS_ADDR this one takes a pointer to a u64.
  uint64_t addr = gpa;
  if (::ioctl(fd_.get(), KVM_SET_IDENTITY_MAP_ADDR, &addr) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("KVM_SET_IDENTITY_MAP_ADDR gpa=%#x", gpa));
  }
  return absl::OkStatus();
}

absl::StatusOr<KvmVcpu> KvmVm::CreateVcpu(int id, int mmap_size) const {
  int r = ::ioctl(fd_.get(), KVM_CREATE_VCPU, static_cast<unsigned long>(id));
  if (r < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_CREATE_VCPU id=", id));
  }
  UniqueFd fd(r);
  MMUVISOR_ASSIGN_OR_RETURN(HostMapping run,
                   HostMapping::Map(static_cast<size_t>(mmap_size), PROT_READ | PROT_WRITE,
                                    MAP_SHARED, fd.get(), 0,
                                    absl::StrCat("kvm_run of vcpu ", id)));
  return KvmVcpu(id, std::move(fd), std::move(run));
}

}  // namespace mmuvisor::vmm
