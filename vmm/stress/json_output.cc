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
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot write ", path, ": ", std::strerror(errno)));
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
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0 && errno == ENOENT) {
    fd = open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
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
