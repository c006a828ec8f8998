#include "vmm/memory/memory_backing.h"

#include <unistd.h>

namespace mmuvisor::vmm {

const char* MemoryBackingName(MemoryBacking backing) {
  switch (backing) {
    case MemoryBacking::kMemfd:
      return "memfd-shared";
    case MemoryBacking::kAnonymous:
      return "anonymous-private";
  }
  return "?";
}

uint64_t HostPhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page_size = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page_size <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page_size);
}

}  // namespace mmuvisor::vmm
