// KvmSystem: the /dev/kvm handle. Opens the device, checks the API version (12), probes
// capabilities and system-wide limits, and creates VMs.
//
// Errors from Open() are for humans first: ENOENT ("/dev/kvm does not exist: KVM is not
// available on this host ..."), EACCES/EPERM ("permission denied ... add yourself to the kvm
// group"), ENODEV/ENXIO ("no KVM driver bound ..."); each keeps the errno's status code.
// Thread-safety: all methods are const system ioctls and may be called from any thread.
#ifndef MMUVISOR_VMM_KVM_SYSTEM_H_
#define MMUVISOR_VMM_KVM_SYSTEM_H_

#include <linux/kvm.h>

#include <memory>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "vmm/kvm/unique_fd.h"

namespace mmuvisor::vmm {

class KvmVm;

inline constexpr absl::string_view kDefaultKvmPath = "/dev/kvm";

// The limits a VM is checked against before anything is created.
struct KvmLimits {
  int nr_memslots = 0;        // KVM_CAP_NR_MEMSLOTS (slots usable per address space)
  int max_vcpus = 0;          // KVM_CAP_MAX_VCPUS
  int recommended_vcpus = 0;  // KVM_CAP_NR_VCPUS
  int max_vcpu_id = 0;        // KVM_CAP_MAX_VCPU_ID (0 if absent: use max_vcpus)
  bool immediate_exit = false;  // KVM_CAP_IMMEDIATE_EXIT
  int vcpu_mmap_size = 0;     // KVM_GET_VCPU_MMAP_SIZE
};

class KvmSystem {
 public:
  // Opens `path` (O_RDWR | O_CLOEXEC) and checks KVM_GET_API_VERSION == 12 and the
  // capabilities every mmuvisor VM needs (USER_MEMORY, IMMEDIATE_EXIT).
  static absl::StatusOr<KvmSystem> Open(absl::string_view path = kDefaultKvmPath);

  // KVM_GET_API_VERSION. Always 12 on any kernel since 2.6.22.
  absl::StatusOr<int> ApiVersion() const;
  // KVM_CHECK_EXTENSION(cap) on the system fd: 0 = absent, > 0 = present (some caps
  // return a value, e.g. NR_MEMSLOTS). Never fails for unknown caps (returns 0).
  absl::StatusOr<int> CheckExtension(int cap) const;
  // KVM_GET_VCPU_MMAP_SIZE: bytes to mmap from a vCPU fd (struct kvm_run + ring pages).
  absl::StatusOr<int> VcpuMmapSize() const;
  // KVM_GET_SUPPORTED_CPUID: the CPUID entries KVM can expose. One ioctl with room for
  // KVM's maximum (256 entries; retries with a larger buffer on E2BIG), then cached for the
  // process, per KVM device (st_rdev): the answer is the module's and costs ~0.6 ms on
  // kvm_pvm. Thread-safe.
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> SupportedCpuid() const;
  // Whether that cache already holds the answer for the device at `path` (a stat(), no
  // open). Waits while a first query for it is in flight.
  static bool SupportedCpuidCached(absl::string_view path);
  // KVM_CREATE_VM(type 0). The VM must be used from this process only.
  absl::StatusOr<KvmVm> CreateVm() const;

  // All limits at once (the ioctls above).
  absl::StatusOr<KvmLimits> ProbeLimits() const;

  int fd() const { return fd_.get(); }

 private:
  // The KVM_GET_SUPPORTED_CPUID ioctl itself (uncached).
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> QuerySupportedCpuid() const;
  explicit KvmSystem(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

// The human message for an open() failure of the KVM device, exposed for tests.
std::string KvmOpenErrorMessage(absl::string_view path, int err);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_SYSTEM_H_
