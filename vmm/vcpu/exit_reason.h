// Names of KVM exit reasons (struct kvm_run::exit_reason) for logs and reports, including
// the reasons newer than the installed 6.1 UAPI (vmm/kvm/kvm_constants.h).
#ifndef MMUVISOR_VMM_VCPU_EXIT_REASON_H_
#define MMUVISOR_VMM_VCPU_EXIT_REASON_H_

#include <cstdint>
#include <string>

#include "absl/strings/string_view.h"

namespace mmuvisor::vmm {

// "KVM_EXIT_SHUTDOWN", ...; "KVM_EXIT_<n>" for a number not in the table.
std::string ExitReasonName(uint32_t reason);

// Names of KVM_INTERNAL_ERROR suberrors ("emulation failure", ...).
absl::string_view InternalErrorName(uint32_t suberror);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_EXIT_REASON_H_
