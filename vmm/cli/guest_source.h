// Resolves the GUEST argument of `mmuvisor run` to ELF bytes: a built-in image name
// (vmm/boot/guest_images.h) or the path of a file. A name that is neither is an error
// listing the built-in names.
//
// File checks, each a one-line InvalidArgument/NotFound naming the path: missing, not a
// regular file, unreadable, empty, larger than kMaxImageBytes (checked with stat() before
// reading), or changed size while being read. ELF validity is the loader's job.
#ifndef MMUVISOR_VMM_CLI_GUEST_SOURCE_H_
#define MMUVISOR_VMM_CLI_GUEST_SOURCE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mmuvisor::vmm::cli {

inline constexpr uint64_t kMaxImageBytes = 64ull << 20;  // = ElfLoadLimits::max_file_bytes

struct GuestSource {
  std::string name;             // the built-in name or the path
  bool builtin = false;
  std::vector<uint8_t> file;    // the file's bytes (paths only)
  absl::Span<const uint8_t> bytes;  // the ELF image (into file or the binary's rodata)
};

absl::StatusOr<GuestSource> ResolveGuest(absl::string_view guest);

// Reads a whole regular file with the checks above.
absl::StatusOr<std::vector<uint8_t>> ReadImageFile(absl::string_view path,
                                                    uint64_t max_bytes = kMaxImageBytes);

}  // namespace mmuvisor::vmm::cli

#endif  // MMUVISOR_VMM_CLI_GUEST_SOURCE_H_
