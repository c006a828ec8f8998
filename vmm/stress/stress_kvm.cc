#include "vmm/stress/stress_kvm.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mmuvisor::vmm::stress {

absl::Status ProbeKvm(const std::string& kvm_path) {
  const int fd = ::open(kvm_path.c_str(), O_RDWR | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    return absl::FailedPreconditionError(
        absl::StrCat("cannot open ", kvm_path, ": ", std::strerror(e)));
  }
  ::close(fd);
  return absl::OkStatus();
}

absl::StatusOr<HostStressOutcome> RunKvmStress(const StressOptions& options,
                                               std::FILE* /*progress*/, bool /*tty*/) {
  if (absl::Status s = ProbeKvm(options.kvm_path); !s.ok()) return s;
  return absl::UnimplementedError(
      "the KVM stress run needs three VMM-core pieces that are not there yet: Machine "
      "RAM from a HostAddressSpace (and a UcallDevice reading through it), extra port "
      "devices on the Machine (the DMA engine), and KVM_RUN=EFAULT handling in VcpuRunner "
      "(HostAddressSpace::ClassifyGuestFault/WaitForPage); see vmm/stress/README.md");
}

}  // namespace mmuvisor::vmm::stress
