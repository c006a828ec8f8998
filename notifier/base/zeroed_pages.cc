#include "notifier/base/zeroed_pages.h"

#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"

namespace mmuvisor {

absl::StatusOr<ZeroedPages> ZeroedPages::Create(size_t bytes, absl::string_view what) {
  if (bytes == 0) {
    return absl::InvalidArgumentError(absl::StrFormat("%s: a table of 0 bytes", what));
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) {
    return ErrnoToStatus(errno, absl::StrFormat("%s: mmap of %d bytes", what, bytes));
  }
  return ZeroedPages(static_cast<uint8_t*>(p), bytes);
}

ZeroedPages::ZeroedPages(ZeroedPages&& other) noexcept
    : base_(std::exchange(other.base_, nullptr)), bytes_(std::exchange(other.bytes_, 0)) {}

ZeroedPages& ZeroedPages::operator=(ZeroedPages&& other) noexcept {
  if (this != &other) {
    Release();
    base_ = std::exchange(other.base_, nullptr);
    bytes_ = std::exchange(other.bytes_, 0);
  }
  return *this;
}

ZeroedPages::~ZeroedPages() { Release(); }

void ZeroedPages::Release() {
  if (base_ != nullptr) munmap(base_, bytes_);
  base_ = nullptr;
  bytes_ = 0;
}

}  // namespace mmuvisor
