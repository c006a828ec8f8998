#include "vmm/kvm/system.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/mutex.h"
#include "vmm/kvm/kvm_constants.h"
#include "vmm/kvm/vm.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {

std::string KvmOpenErrorMessage(absl::string_view path, int err) {
  switch (err) {
    case ENOENT:
      return absl::StrCat("cannot open ", path,
                          ": it does not exist (KVM is not available on this host: load "
                          "kvm_intel/kvm_amd, or run where /dev/kvm exists)");
    case EACCES:
    case EPERM:
      return absl::StrCat("cannot open ", path,
                          ": permission denied (add your user to the 'kvm' group or run as "
                          "root)");
    case ENODEV:
    case ENXIO:
      return absl::StrCat("cannot open ", path,
                          ": no KVM driver is bound to it (hardware virtualisation disabled, "
                          "or nested KVM not offered by this host)");
    default:
      return absl::StrCat("cannot open ", path, ": ", ErrnoText(err));
  }
}

absl::StatusOr<KvmSystem> KvmSystem::Open(absl::string_view path) {
  const std::string p(path);
  int fd = ::open(p.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    return absl::Status(ErrnoToCode(err), KvmOpenErrorMessage(path, err));
  }
  KvmSystem system{UniqueFd(fd)};
  MMUVISOR_ASSIGN_OR_RETURN(int version, system.ApiVersion());
  if (version != KVM_API_VERSION) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "%s: KVM_GET_API_VERSION returned %d, mmuvisor needs %d", path, version,
        KVM_API_VERSION));
  }
  for (auto [cap, name] : {std::pair{KVM_CAP_USER_MEMORY, "KVM_CAP_USER_MEMORY"},
                           std::pair{KVM_CAP_IMMEDIATE_EXIT, "KVM_CAP_IMMEDIATE_EXIT"}}) {
    MMUVISOR_ASSIGN_OR_RETURN(int have, system.CheckExtension(cap));
    if (have <= 0) {
      return absl::FailedPreconditionError(
          absl::StrCat(path, ": KVM lacks ", name, ", which mmuvisor needs"));
    }
  }
  return system;
}

absl::StatusOr<int> KvmSystem::ApiVersion() const {
  int r = ::ioctl(fd_.get(), KVM_GET_API_VERSION, 0);
  if (r < 0) return ErrnoToStatus(errno, "KVM_GET_API_VERSION");
  return r;
}

absl::StatusOr<int> KvmSystem::CheckExtension(int cap) const {
  int r = ::ioctl(fd_.get(), KVM_CHECK_EXTENSION, cap);
  if (r < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("KVM_CHECK_EXTENSION cap=", cap));
  }
  return r;
}

absl::StatusOr<int> KvmSystem::VcpuMmapSize() const {
  int r = ::ioctl(fd_.get(), KVM_GET_VCPU_MMAP_SIZE, 0);
  if (r < 0) return ErrnoToStatus(errno, "KVM_GET_VCPU_MMAP_SIZE");
  if (static_cast<size_t>(r) < sizeof(kvm_run)) {
    return absl::InternalError(absl::StrFormat(
        "KVM_GET_VCPU_MMAP_SIZE returned %d, smaller than struct kvm_run (%d)", r,
        sizeof(kvm_run)));
  }
  return r;
}

namespace {

// KVM_GET_SUPPORTED_CPUID's answers, per KVM device (st_rdev), for the process. cache_mu is
// a leaf lock, held across the one ioctl so that concurrent first callers ask KVM once.
Mutex cache_mu;
std::map<dev_t, std::vector<kvm_cpuid_entry2>>& CpuidCache() {
  static auto* cache = new std::map<dev_t, std::vector<kvm_cpuid_entry2>>();
  return *cache;
}

}  // namespace

bool KvmSystem::SupportedCpuidCached(absl::string_view path) {
  struct stat st {};
  if (stat(std::string(path).c_str(), &st) != 0) return false;
  MutexLock lock(&cache_mu);
  return CpuidCache().count(st.st_rdev) != 0;
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSystem::SupportedCpuid() const {
  auto* cache = &CpuidCache();
  struct stat st {};
  const bool keyed = fstat(fd_.get(), &st) == 0;
  MutexLock lock(&cache_mu);
  if (keyed) {
    if (auto it = cache->find(st.st_rdev); it != cache->end()) return it->second;
  }
  MMUVISOR_ASSIGN_OR_RETURN(std::vector<kvm_cpuid_entry2> entries, QuerySupportedCpuid());
  if (keyed) (*cache)[st.st_rdev] = entries;
  return entries;
}

absl::StatusOr<std::vector<kvm_cpuid_entry2>> KvmSystem::QuerySupportedCpuid() const {
  // struct kvm_cpuid2 is laid out by hand (kvm_constants.h explains why): an 8-byte header
  // {nent, padding} followed by nent entries. 256 is KVM_MAX_CPUID_ENTRIES since Linux 5.x,
  // so one ioctl answers; grow on E2BIG.
  for (uint32_t n = 256; n <= 4096; n *= 2) {
    std::vector<uint8_t> buffer(kvm_abi::kCpuid2HeaderBytes + n * sizeof(kvm_cpuid_entry2));
    std::memcpy(buffer.data(), &n, sizeof(n));
    int r = ::ioctl(fd_.get(), kvm_abi::kGetSupportedCpuid, buffer.data());
    const int err = errno;
    if (r == 0) {
      uint32_t nent = 0;
      std::memcpy(&nent, buffer.data(), sizeof(nent));
      if (nent > n) return absl::InternalError("KVM_GET_SUPPORTED_CPUID: nent grew");
      std::vector<kvm_cpuid_entry2> entries(nent);
      if (nent > 0) {
        std::memcpy(entries.data(), buffer.data() + kvm_abi::kCpuid2HeaderBytes,
                    nent * sizeof(kvm_cpuid_entry2));
      }
      return entries;
    }
    if (err != E2BIG) {
      return ErrnoToStatus(err, absl::StrCat("KVM_GET_SUPPORTED_CPUID nent=", n));
    }
  }
  return absl::InternalError("KVM_GET_SUPPORTED_CPUID: more than 4096 entries");
}

absl::StatusOr<KvmVm> KvmSystem::CreateVm() const {
  // EINTR: KVM_CREATE_VM registers the VM's mmu_notifier, which takes every mm lock
  // interruptibly and gives up on any pending signal; nothing was created, so try again
  // (QEMU loops the same way).
  int r;
  do {
    r = ::ioctl(fd_.get(), KVM_CREATE_VM, 0);
  } while (r < 0 && errno == EINTR);
  if (r < 0) return ErrnoToStatus(errno, "KVM_CREATE_VM type=0");
  return KvmVm(UniqueFd(r));
}

absl::StatusOr<KvmLimits> KvmSystem::ProbeLimits() const {
  KvmLimits limits;
  MMUVISOR_ASSIGN_OR_RETURN(limits.nr_memslots, CheckExtension(KVM_CAP_NR_MEMSLOTS));
  MMUVISOR_ASSIGN_OR_RETURN(limits.recommended_vcpus, CheckExtension(KVM_CAP_NR_VCPUS));
  MMUVISOR_ASSIGN_OR_RETURN(limits.max_vcpus, CheckExtension(KVM_CAP_MAX_VCPUS));
  MMUVISOR_ASSIGN_OR_RETURN(limits.max_vcpu_id, CheckExtension(KVM_CAP_MAX_VCPU_ID));
  MMUVISOR_ASSIGN_OR_RETURN(int immediate_exit, CheckExtension(KVM_CAP_IMMEDIATE_EXIT));
  limits.immediate_exit = immediate_exit > 0;
  MMUVISOR_ASSIGN_OR_RETURN(limits.vcpu_mmap_size, VcpuMmapSize());
  // api.rst: "if KVM_CAP_MAX_VCPUS is not available, use KVM_CAP_NR_VCPUS"; the same
  // fallback chain applies to MAX_VCPU_ID -> MAX_VCPUS.
  if (limits.max_vcpus <= 0) limits.max_vcpus = limits.recommended_vcpus;
  if (limits.max_vcpus <= 0) limits.max_vcpus = 4;
  if (limits.max_vcpu_id <= 0) limits.max_vcpu_id = limits.max_vcpus;
  return limits;
}

}  // namespace mmuvisor::vmm
