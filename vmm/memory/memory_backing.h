// MemoryBacking: what the user chooses for guest RAM (`mmuvisor run --memory memfd|anon`),
// and the host's physical RAM, the ceiling for --mem. The RAM itself is owned by
// vmm/host/HostAddressSpace (vmm/paging/GuestRam): kMemfd = GuestRamBacking::kMemfdShared,
// kAnonymous = GuestRamBacking::kAnonymousPrivate. Pure values; any thread.
#ifndef MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_
#define MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_

#include <cstdint>

#include "absl/strings/string_view.h"

namespace mmuvisor::vmm {

enum class MemoryBacking {
  kMemfd,      // memfd_create + MAP_SHARED (default): shareable, hole-punchable
  kAnonymous,  // MAP_PRIVATE | MAP_ANONYMOUS
};

absl::string_view MemoryBackingName(MemoryBacking backing);

// Physical RAM of this host in bytes (sysconf), 0 if unknown.
uint64_t HostPhysicalMemoryBytes();

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_
