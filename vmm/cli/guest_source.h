// Resolves the GUEST argument of `mmuvisor run` to ELF bytes: a built-in image name that
// `run` can boot (kRunGuests, vmm/boot/guest_images.h) or the path of a file. A name that
// is neither is an error listing kRunGuests; the stress scenario's guests
// (kStressOnlyGuests) are refused with a pointer to `mmuvisor stress`.
//
// File checks, each a one-line InvalidArgument/NotFound naming the path: missing, not a
// regular file, unreadable, empty, larger than kMaxImageBytes (checked with stat() before
// reading), or changed size while being read. ELF validity is the loader's job. Every
// image error reads "<path>: ELF image: <why>", as the loader's do after the CLI's prefix.
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

// The built-in guests `mmuvisor run` boots (listed by `run --help` and the README).
inline constexpr absl::string_view kRunGuests[] = {"hello64", "hello16", "smp", "crash"};
// Built-in, but only for `mmuvisor stress`: they need its DMA device and stop word and
// would never end under `run`.
inline constexpr absl::string_view kStressOnlyGuests[] = {"memstress", "dmahostile", "hostile"};

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
