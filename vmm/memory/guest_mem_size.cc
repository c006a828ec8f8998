#include "vmm/memory/guest_mem_size.h"

#include <cstddef>
#include <limits>
#include <string>

#include "absl/strings/ascii.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/page.h"

namespace mmuvisor::vmm {

absl::StatusOr<uint64_t> ParseSize(absl::string_view text) {
  size_t digits = 0;
  while (digits < text.size() && absl::ascii_isdigit(static_cast<unsigned char>(text[digits]))) {
    ++digits;
  }
  if (digits == 0) return absl::InvalidArgumentError("not a size (expected e.g. 64M or 1G)");
  uint64_t number = 0;
  if (!absl::SimpleAtoi(text.substr(0, digits), &number)) {
    return absl::InvalidArgumentError("number too large");
  }
  std::string suffix = absl::AsciiStrToUpper(text.substr(digits));
  if (suffix.size() > 1 && (suffix.substr(1) == "IB" || suffix.substr(1) == "B")) {
    suffix = suffix.substr(0, 1);
  }
  unsigned shift = 0;
  if (suffix.empty() || suffix == "B") {
    shift = 0;
  } else if (suffix == "K") {
    shift = 10;
  } else if (suffix == "M") {
    shift = 20;
  } else if (suffix == "G") {
    shift = 30;
  } else if (suffix == "T") {
    shift = 40;
  } else {
    return absl::InvalidArgumentError(
        absl::StrCat("unknown unit '", text.substr(digits), "' (use K, M, G or T)"));
  }
  if (number == 0) return absl::InvalidArgumentError("size is zero");
  if (number > (std::numeric_limits<uint64_t>::max() >> shift)) {
    return absl::InvalidArgumentError("size overflows 64 bits");
  }
  return number << shift;
}

absl::StatusOr<uint64_t> ParseGuestMemSize(absl::string_view text) {
  auto bad = [text](absl::string_view why) {
    return absl::InvalidArgumentError(absl::StrCat("--mem '", text, "': ", why));
  };
  absl::StatusOr<uint64_t> bytes = ParseSize(text);
  if (!bytes.ok()) return bad(bytes.status().message());
  if (!IsPageAligned(*bytes)) {
    return bad(absl::StrFormat("not a multiple of the %u-byte page", kPageSize));
  }
  if (*bytes < kMinGuestMemBytes) {
    return bad("below the 2M minimum (the first MiB is the fixed guest layout)");
  }
  return *bytes;
}

absl::Status CheckGuestMemFitsHost(uint64_t guest_bytes, uint64_t host_ram) {
  if (host_ram == 0 || guest_bytes <= host_ram) return absl::OkStatus();
  return absl::InvalidArgumentError(absl::StrFormat(
      "--mem %u bytes: more than this host's %u bytes of RAM", guest_bytes, host_ram));
}

}  // namespace mmuvisor::vmm
