// Exit codes of the mmuvisor binary (documented in `mmuvisor --help` and the README).
#ifndef MMUVISOR_VMM_CLI_EXIT_CODES_H_
#define MMUVISOR_VMM_CLI_EXIT_CODES_H_

namespace mmuvisor::vmm::cli {

inline constexpr int kExitClean = 0;        // guest DONE with code 0 on every vCPU
inline constexpr int kExitGuestFailed = 1;  // assertion, non-zero DONE, bad ucall, no DONE
inline constexpr int kExitBadInput = 2;     // flags, image, sizes, vCPU count
inline constexpr int kExitCrashed = 3;      // triple fault, internal error, failed entry
inline constexpr int kExitTimedOut = 4;     // ran past --timeout
inline constexpr int kExitHostError = 5;    // /dev/kvm unusable or a KVM call failed

}  // namespace mmuvisor::vmm::cli

#endif  // MMUVISOR_VMM_CLI_EXIT_CODES_H_
