#include "vmm/kvm/vcpu.h"

#include <sys/ioctl.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "notifier/base/errno_status.h"
#include "vmm/kvm/kvm_constants.h"

namespace mmuvisor::vmm {

absl::Status KvmVcpu::Run() {
  // KVM writes exit_reason on every exit it reports, but an error return may leave it as it
  // was (api.rst: outside EFAULT/EHWPOISON's memory-fault exit it is stale). Cleared here,
  // a reason read after a failed KVM_RUN is never the previous exit's.
  run()->exit_reason = KVM_EXIT_UNKNOWN;
  if (::ioctl(fd_.get(), KVM_RUN, 0) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_RUN vcpu=", id_));
  }
  return absl::OkStatus();
}

absl::StatusOr<kvm_regs> KvmVcpu::GetRegs() const {
  kvm_regs regs{};
  if (::ioctl(fd_.get(), KVM_GET_REGS, &regs) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_GET_REGS vcpu=", id_));
  }
  return regs;
}

absl::Status KvmVcpu::SetRegs(const kvm_regs& regs) const {
  if (::ioctl(fd_.get(), KVM_SET_REGS, &regs) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_SET_REGS vcpu=", id_, " rip=0x",
                                             absl::Hex(regs.rip)));
  }
  return absl::OkStatus();
}

absl::StatusOr<kvm_sregs> KvmVcpu::GetSregs() const {
  kvm_sregs sregs{};
  if (::ioctl(fd_.get(), KVM_GET_SREGS, &sregs) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_GET_SREGS vcpu=", id_));
  }
  return sregs;
}

absl::Status KvmVcpu::SetSregs(const kvm_sregs& sregs) const {
  if (::ioctl(fd_.get(), KVM_SET_SREGS, &sregs) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(
        err, absl::StrCat("KVM_SET_SREGS vcpu=", id_, " cr0=0x", absl::Hex(sregs.cr0),
                            " cr4=0x", absl::Hex(sregs.cr4), " efer=0x", absl::Hex(sregs.efer),
                            " cs.sel=0x", absl::Hex(sregs.cs.selector)));
  }
  return absl::OkStatus();
}

absl::Status KvmVcpu::SetCpuid(const std::vector<kvm_cpuid_entry2>& entries) const {
  // Hand-laid struct kvm_cpuid2 (see kvm_constants.h): 8-byte header, then the entries.
  std::vector<uint8_t> buffer(kvm_abi::kCpuid2HeaderBytes +
                              entries.size() * sizeof(kvm_cpuid_entry2));
  const uint32_t nent = static_cast<uint32_t>(entries.size());
  std::memcpy(buffer.data(), &nent, sizeof(nent));
  if (!entries.empty()) {
    std::memcpy(buffer.data() + kvm_abi::kCpuid2HeaderBytes, entries.data(),
                entries.size() * sizeof(kvm_cpuid_entry2));
  }
  if (::ioctl(fd_.get(), kvm_abi::kSetCpuid2, buffer.data()) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err,
                         absl::StrCat("KVM_SET_CPUID2 vcpu=", id_, " nent=", entries.size()));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint32_t> KvmVcpu::GetMpState() const {
  kvm_mp_state mp{};
  if (::ioctl(fd_.get(), KVM_GET_MP_STATE, &mp) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_GET_MP_STATE vcpu=", id_));
  }
  return mp.mp_state;
}

absl::Status KvmVcpu::SetMpState(uint32_t state) const {
  kvm_mp_state mp{state};
  if (::ioctl(fd_.get(), KVM_SET_MP_STATE, &mp) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err,
                         absl::StrCat("KVM_SET_MP_STATE vcpu=", id_, " mp_state=", state));
  }
  return absl::OkStatus();
}

void KvmVcpu::RequestImmediateExit(bool on) {
  // The kernel reads this byte (READ_ONCE) on entry to KVM_RUN and in its signal check.
  // The release store pairs with nothing in userspace; what orders it before the guest
  // is interrupted is the kicker's pthread_kill(), a syscall issued after this store.
  __atomic_store_n(&run()->immediate_exit, on ? 1 : 0, __ATOMIC_RELEASE);
}

}  // namespace mmuvisor::vmm
