// Sizes of guest RAM as users write them, one parser and one set of rules for every command
// (`mmuvisor run --mem`, `mmuvisor stress --mem`), so the same input gets the same answer:
//
//   ParseSize         "4096", "64K", "64M", "1G", "2T" (binary units; K, KiB and KB all
//                     mean 1024; case-insensitive). Errors: malformed, zero, or more than
//                     64 bits.
//   ParseGuestMemSize ParseSize plus the guest-RAM rules: a multiple of the 4 KiB page and
//                     at least kMinGuestMemBytes. Errors read "--mem '<text>': <why>".
//   CheckGuestMemFitsHost  refuses more guest RAM than the host has (`host_ram` 0: unknown,
//                     accepted): "--mem N bytes: more than this host's M bytes of RAM".
//
// Pure functions; any thread.
#ifndef MMUVISOR_VMM_MEMORY_GUEST_MEM_SIZE_H_
#define MMUVISOR_VMM_MEMORY_GUEST_MEM_SIZE_H_

#include <cstdint>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mmuvisor::vmm {

// The fixed guest layout below 1 MiB plus room for an image.
inline constexpr uint64_t kMinGuestMemBytes = 2ull << 20;

absl::StatusOr<uint64_t> ParseSize(absl::string_view text);
absl::StatusOr<uint64_t> ParseGuestMemSize(absl::string_view text);
absl::Status CheckGuestMemFitsHost(uint64_t guest_bytes, uint64_t host_ram);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_GUEST_MEM_SIZE_H_
