#include "notifier/base/errno_status.h"

#include <cerrno>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mmuvisor {

absl::StatusCode ErrnoToCode(int err) {
  switch (err) {
    case EINVAL:
    case E2BIG:
    case ERANGE:
    case ENOEXEC:
      return absl::StatusCode::kInvalidArgument;
    case ENOMEM:
    case ENOSPC:
    case EMFILE:
    case ENFILE:
      return absl::StatusCode::kResourceExhausted;
    case EAGAIN:
    case EINTR:
    case EBUSY:
      return absl::StatusCode::kUnavailable;
    case ENOENT:
    case ENODEV:
    case ENXIO:
    case ESRCH:
      return absl::StatusCode::kNotFound;
    case EACCES:
    case EPERM:
      return absl::StatusCode::kPermissionDenied;
    case EEXIST:
      return absl::StatusCode::kAlreadyExists;
    case EFAULT:
      return absl::StatusCode::kOutOfRange;
    default:
      return absl::StatusCode::kInternal;
  }
}

std::string ErrnoText(int err) {
  char buf[128];
  // GNU strerror_r returns the message pointer (possibly a static string, not buf).
  const char* msg = strerror_r(err, buf, sizeof(buf));
  return msg != nullptr ? std::string(msg) : absl::StrCat("errno ", err);
}

absl::Status ErrnoToStatus(int err, absl::string_view what) {
  return absl::Status(ErrnoToCode(err), absl::StrCat(what, ": ", ErrnoText(err)));
}

}  // namespace mmuvisor
