#include "notifier/base/host_mapping.h"

#include <sys/mman.h>

#include <cerrno>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"

namespace mmuvisor {

HostMapping& HostMapping::operator=(HostMapping&& other) noexcept {
  if (this != &other) {
    Reset();
    addr_ = std::exchange(other.addr_, nullptr);
    size_ = std::exchange(other.size_, 0);
  }
  return *this;
}

absl::StatusOr<HostMapping> HostMapping::Map(size_t size, int prot, int flags, int fd,
                                             int64_t offset, absl::string_view what) {
  void* addr = ::mmap(nullptr, size, prot, flags, fd, offset);
  if (addr == MAP_FAILED) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("mmap %s size=%#x fd=%d", what, size, fd));
  }
  return HostMapping(addr, size);
}

absl::StatusOr<HostMapping> HostMapping::AnonymousZeroed(size_t bytes, absl::string_view what) {
  if (bytes == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: a table of 0 bytes", what));
  }
  return Map(bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
             what);
}

void HostMapping::Reset() {
  if (addr_ != nullptr) ::munmap(addr_, size_);
  addr_ = nullptr;
  size_ = 0;
}

}  // namespace mmuvisor
