// MemoryBacking: how guest RAM is mapped, the project's one backing enum: what the user
// chooses (`mmuvisor run --memory memfd|anon`), what the machine and the host address space
// pass on, and what vmm/paging/GuestRam maps. Also the host's physical RAM, the ceiling for
// --mem. Pure values; any thread.
#ifndef MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_
#define MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_

#include <cstdint>

namespace mmuvisor::vmm {

enum class MemoryBacking {
  kMemfd,      // memfd_create + MAP_SHARED (default): shareable, hole-punchable
  kAnonymous,  // MAP_PRIVATE | MAP_ANONYMOUS
};

// "memfd-shared" / "anonymous-private": how the mapping is made (log lines, messages).
const char* MemoryBackingName(MemoryBacking backing);

// Physical RAM of this host in bytes (sysconf), 0 if unknown.
uint64_t HostPhysicalMemoryBytes();

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MEMORY_MEMORY_BACKING_H_
