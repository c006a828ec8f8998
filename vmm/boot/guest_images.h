// The built-in guest images: the ELF files built from guests/ are embedded into the
// mmuvisor_guest_images library at build time (an .incbin per guest, regenerated and
// relinked whenever a guest is rebuilt), so `mmuvisor run hello64` needs no file on disk.
//
// The bytes live in the binary's read-only data for the life of the process. Thread-safe
// (read-only data).
#ifndef MMUVISOR_VMM_BOOT_GUEST_IMAGES_H_
#define MMUVISOR_VMM_BOOT_GUEST_IMAGES_H_

#include <cstdint>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"

namespace mmuvisor::vmm {

// The ELF bytes of the built-in guest `name` (e.g. "hello64"). NotFound (listing the known
// names) for an unknown name.
absl::StatusOr<absl::Span<const uint8_t>> BuiltinGuestImage(absl::string_view name);

// Names of all built-in guests, sorted.
std::vector<absl::string_view> BuiltinGuestImageNames();

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_GUEST_IMAGES_H_
