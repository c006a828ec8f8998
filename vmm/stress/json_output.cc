#include "vmm/stress/json_output.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>

#include "absl/strings/str_cat.h"

namespace mmuvisor::vmm::stress {

std::string DumpJson(const JsonDoc& doc) {
  return doc.dump(/*indent=*/-1, /*indent_char=*/' ', /*ensure_ascii=*/false,
                  nlohmann::json::error_handler_t::replace);
}

double ThreeDecimals(double value) {
  if (!std::isfinite(value)) return value;
  return std::round(value * 1000.0) / 1000.0;
}

std::string HexString(uint64_t value) { return absl::StrCat("0x", absl::Hex(value)); }

absl::Status WriteTextFile(const std::string& path, absl::string_view text) {
  // O_NONBLOCK for the open only: a FIFO with no reader fails at once (ENXIO) instead of
  // blocking the run's end for good; the writes block as usual.
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_NONBLOCK | O_CLOEXEC, 0644);
  std::FILE* f = nullptr;
  if (fd >= 0 && fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) == 0) f = fdopen(fd, "w");
  if (f == nullptr) {
    const int e = errno;
    if (fd >= 0) close(fd);
    return absl::InvalidArgumentError(absl::StrCat("cannot write ", path, ": ", std::strerror(e)));
  }
  const size_t written = std::fwrite(text.data(), 1, text.size(), f);
  const int close_result = std::fclose(f);
  if (written != text.size() || close_result != 0) {
    return absl::DataLossError(absl::StrCat("writing ", path, " failed: ", std::strerror(errno)));
  }
  return absl::OkStatus();
}

absl::Status CheckWritable(const std::string& path, bool* created) {
  *created = false;
  // O_NONBLOCK: opening a FIFO with no reader for writing would block until one comes
  // (for ever, before anything is printed); non-blocking it fails with ENXIO instead.
  int fd = open(path.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NONBLOCK | O_CLOEXEC, 0644);
    *created = fd >= 0;
  }
  if (fd < 0) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
  }
  close(fd);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm::stress
