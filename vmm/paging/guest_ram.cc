#include "vmm/paging/guest_ram.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {

absl::StatusOr<std::unique_ptr<GuestRam>> GuestRam::Create(size_t bytes, MemoryBacking backing) {
  const auto page_size = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (bytes == 0 || bytes % page_size != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("GuestRam: size %d is not a positive multiple of %d", bytes, page_size));
  }
  int memfd = -1;
  void* base = MAP_FAILED;
  if (backing == MemoryBacking::kMemfd) {
    memfd = memfd_create("mmuvisor-guest-ram", MFD_CLOEXEC);
    if (memfd < 0) return ErrnoToStatus(errno, "GuestRam: memfd_create");
    if (ftruncate(memfd, static_cast<off_t>(bytes)) != 0) {
      const int e = errno;
      close(memfd);
      return ErrnoToStatus(e, absl::StrFormat("GuestRam: ftruncate memfd to %d", bytes));
    }
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  } else {
    base = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  }
  if (base == MAP_FAILED) {
    const int e = errno;
    if (memfd >= 0) close(memfd);
    return ErrnoToStatus(
        e, absl::StrFormat("GuestRam: mmap %d bytes (%s)", bytes, MemoryBackingName(backing)));
  }
  return std::unique_ptr<GuestRam>(
      new GuestRam(static_cast<uint8_t*>(base), bytes, page_size, memfd, backing));
}

GuestRam::~GuestRam() {
  munmap(base_, bytes_);
  if (memfd_ >= 0) close(memfd_);
}

absl::Status GuestRam::CheckPages(const char* op, uint64_t first, uint64_t count) const {
  if (first > num_pages() || count > num_pages() - first) {
    return absl::OutOfRangeError(absl::StrFormat("GuestRam::%s pages [%d, %d) outside [0, %d)",
                                                 op, first, first + count, num_pages()));
  }
  return absl::OkStatus();
}

absl::Status GuestRam::Discard(uint64_t first, uint64_t count) {
  MMUVISOR_RETURN_IF_ERROR(CheckPages("Discard", first, count));
  if (count == 0) return absl::OkStatus();
  const int advice = backing_ == MemoryBacking::kMemfd ? MADV_REMOVE : MADV_DONTNEED;
  if (madvise(PageAddress(first), count * page_size_, advice) != 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(
        err, absl::StrFormat("GuestRam::Discard madvise(%s) pages [%d, %d)",
                               advice == MADV_REMOVE ? "MADV_REMOVE" : "MADV_DONTNEED", first,
                               first + count));
  }
  return absl::OkStatus();
}

absl::Status GuestRam::DropMappings(uint64_t first, uint64_t count) {
  MMUVISOR_RETURN_IF_ERROR(CheckPages("DropMappings", first, count));
  if (backing_ != MemoryBacking::kMemfd) {
    return absl::FailedPreconditionError(
        "GuestRam::DropMappings: only memfd-shared RAM keeps its contents without a mapping");
  }
  if (count == 0) return absl::OkStatus();
  if (madvise(PageAddress(first), count * page_size_, MADV_DONTNEED) != 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(
        err, absl::StrFormat("GuestRam::DropMappings madvise(MADV_DONTNEED) pages [%d, %d)",
                               first, first + count));
  }
  return absl::OkStatus();
}

absl::Status GuestRam::PunchHole(uint64_t first, uint64_t count) {
  MMUVISOR_RETURN_IF_ERROR(CheckPages("PunchHole", first, count));
  if (backing_ != MemoryBacking::kMemfd) {
    return absl::FailedPreconditionError("GuestRam::PunchHole: RAM is not memfd-shared");
  }
  if (count == 0) return absl::OkStatus();
  if (fallocate(memfd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(first * page_size_),
                static_cast<off_t>(count * page_size_)) != 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(
        err, absl::StrFormat("GuestRam::PunchHole fallocate(PUNCH_HOLE) pages [%d, %d)",
                               first, first + count));
  }
  return absl::OkStatus();
}

absl::Status GuestRam::ReadPages(uint64_t first, uint64_t count, uint8_t* out) const {
  MMUVISOR_RETURN_IF_ERROR(CheckPages("ReadPages", first, count));
  if (backing_ != MemoryBacking::kMemfd) {
    return absl::FailedPreconditionError("GuestRam::ReadPages: RAM is not memfd-shared");
  }
  const size_t total = count * page_size_;
  size_t done = 0;
  while (done < total) {
    const ssize_t n = pread(memfd_, out + done, total - done,
                            static_cast<off_t>(first * page_size_ + done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int err = n < 0 ? errno : EIO;  // before the message allocates
      return ErrnoToStatus(err, absl::StrFormat("GuestRam::ReadPages pread pages [%d, %d)",
                                                first, first + count));
    }
    done += static_cast<size_t>(n);
  }
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
