// UniqueFd: owns one file descriptor and closes it exactly once. Move-only. Not
// thread-safe; an owner shares get() with other threads only while it outlives them.
#ifndef MMUVISOR_VMM_KVM_UNIQUE_FD_H_
#define MMUVISOR_VMM_KVM_UNIQUE_FD_H_

#include <unistd.h>

#include <utility>

namespace mmuvisor::vmm {

class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) Reset(std::exchange(other.fd_, -1));
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { Reset(); }

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  void Reset(int fd = -1) {
    // close() errors are not actionable here (the fd is gone either way).
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_UNIQUE_FD_H_
