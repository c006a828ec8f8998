#include "vmm/cli/guest_source.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "vmm/boot/guest_images.h"
#include "notifier/base/errno_status.h"
#include "vmm/kvm/unique_fd.h"

namespace mmuvisor::vmm::cli {

absl::StatusOr<std::vector<uint8_t>> ReadImageFile(absl::string_view path, uint64_t max_bytes) {
  const std::string p(path);
  // O_NONBLOCK: opening a FIFO (or a tty) for reading would otherwise wait for a writer
  // before the regular-file check below could refuse it. A regular file's reads ignore it.
  int raw = ::open(p.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  if (raw < 0) {
    const int err = errno;
    return absl::Status(ErrnoToCode(err),
                        absl::StrCat(path, ": ELF image: ", ErrnoText(err)));
  }
  UniqueFd fd(raw);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat(path, ": ELF image: fstat"));
  }
  if (!S_ISREG(st.st_mode)) {
    return absl::InvalidArgumentError(
        absl::StrCat(path, ": ELF image: not a regular file"));
  }
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  if (size == 0) {
    return absl::InvalidArgumentError(absl::StrCat(path, ": ELF image: file is empty"));
  }
  if (size > max_bytes) {  // OutOfRange, as LoadElf's own limit (elf_loader.h)
    return absl::OutOfRangeError(absl::StrFormat(
        "%s: ELF image: %u bytes, larger than the %u-byte limit", path, size, max_bytes));
  }
  std::vector<uint8_t> bytes(size);
  uint64_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd.get(), bytes.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;  // before the message allocates
      return ErrnoToStatus(err, absl::StrCat(path, ": ELF image: read"));
    }
    if (n == 0) break;
    done += static_cast<uint64_t>(n);
  }
  if (done != size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "%s: ELF image: changed while being read (%u of %u bytes)", path, done, size));
  }
  return bytes;
}

absl::StatusOr<GuestSource> ResolveGuest(absl::string_view guest) {
  GuestSource source;
  source.name = std::string(guest);
  // A name with a slash is always a path, so "./hello64" reads the file.
  if (guest.find('/') == absl::string_view::npos) {
    for (absl::string_view stress_guest : kStressOnlyGuests) {
      if (guest == stress_guest) {
        return absl::InvalidArgumentError(absl::StrCat(
            guest, ": the guest of 'mmuvisor stress' (it needs the stress runner's DMA device ",
            "and stop word, and never ends under 'run'); run guests: ",
            absl::StrJoin(kRunGuests, ", ")));
      }
    }
    absl::StatusOr<absl::Span<const uint8_t>> builtin = BuiltinGuestImage(guest);
    if (builtin.ok()) {
      source.builtin = true;
      source.bytes = *builtin;
      return source;
    }
    struct stat st;
    const std::string p(guest);
    if (::stat(p.c_str(), &st) < 0 && errno == ENOENT) {
      return absl::NotFoundError(absl::StrCat(
          "unknown guest '", guest, "': not a built-in guest (",
          absl::StrJoin(kRunGuests, ", "), ") and no such file"));
    }
  }
  absl::StatusOr<std::vector<uint8_t>> file = ReadImageFile(guest);
  if (!file.ok()) return file.status();
  source.file = std::move(*file);
  source.bytes = absl::MakeConstSpan(source.file);
  return source;
}

}  // namespace mmuvisor::vmm::cli
