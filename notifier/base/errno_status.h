// ErrnoToStatus: turns an errno from a failed syscall or ioctl into an absl::Status whose
// message names the operation and its arguments, then strerror:
//   "KVM_SET_USER_MEMORY_REGION slot=3 gpa=0x100000 size=0x200000: Invalid argument".
// The code follows status.h: EINVAL/E2BIG/ERANGE -> InvalidArgument, ENOMEM/ENOSPC/EMFILE
// -> ResourceExhausted, EAGAIN/EINTR/EBUSY -> Unavailable, ENOENT/ENODEV/ENXIO -> NotFound,
// EACCES/EPERM -> PermissionDenied, EEXIST -> AlreadyExists, EFAULT -> OutOfRange,
// ESRCH -> NotFound, anything else -> Internal. Thread-safe (strerror_r).
//
// The project's one errno mapping (every layer uses it, never absl::ErrnoToStatus, whose
// table differs: EFAULT and EBUSY above are what the vCPU loop and the host operations
// branch on). ErrnoText is strerror_r's text, for messages that pick their own code.
// Read errno into a local before a call whose message is built by StrCat/StrFormat: the
// arguments are evaluated in an unspecified order, and the message's allocation may set
// errno (malloc falling back from sbrk to mmap leaves ENOMEM behind).
#ifndef MMUVISOR_NOTIFIER_BASE_ERRNO_STATUS_H_
#define MMUVISOR_NOTIFIER_BASE_ERRNO_STATUS_H_

#include <string>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"

namespace mmuvisor {

absl::StatusCode ErrnoToCode(int err);
std::string ErrnoText(int err);
absl::Status ErrnoToStatus(int err, absl::string_view what);

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_ERRNO_STATUS_H_
