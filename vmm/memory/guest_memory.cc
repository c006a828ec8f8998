#include "vmm/memory/guest_memory.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "vmm/kvm/errno_status.h"
#include "vmm/kvm/vm.h"
#include "vmm/status_macros.h"

namespace mmuvisor::vmm {

absl::string_view MemoryBackingName(MemoryBacking backing) {
  switch (backing) {
    case MemoryBacking::kMemfd:
      return "memfd";
    case MemoryBacking::kAnonymous:
      return "anon";
  }
  return "?";
}

absl::StatusOr<GuestMemory> GuestMemory::Create(ByteSize ram_size, MemoryBacking backing,
                                                const MemslotLimits& limits) {
  if (ram_size.value == 0 || !IsPageAligned(ram_size.value)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "guest RAM size %#x is not a positive multiple of the %u-byte page", ram_size.value,
        kPageSize));
  }
  UniqueFd memfd;
  HostMapping mapping;
  if (backing == MemoryBacking::kMemfd) {
    int fd = ::memfd_create("mmuvisor-guest-ram", MFD_CLOEXEC);
    if (fd < 0) return ErrnoToStatus(errno, "memfd_create mmuvisor-guest-ram");
    memfd.Reset(fd);
    if (::ftruncate(fd, static_cast<off_t>(ram_size.value)) < 0) {
      return ErrnoToStatus(errno, absl::StrFormat("ftruncate memfd size=%#x", ram_size.value));
    }
    ASSIGN_OR_RETURN(mapping, HostMapping::Map(ram_size.value, PROT_READ | PROT_WRITE,
                                               MAP_SHARED | MAP_NORESERVE, fd, 0,
                                               "guest RAM (memfd)"));
  } else {
    ASSIGN_OR_RETURN(mapping,
                     HostMapping::Map(ram_size.value, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0,
                                      "guest RAM (anonymous)"));
  }
  // One slot covers all of RAM; guests have no MMIO holes. A RAM size above KVM's
  // per-slot limit is rejected by the table rather than split (no guest needs 8 TiB).
  GuestMemorySlot slot{.slot = 0,
                       .gpa = Gpa{0},
                       .size = ram_size,
                       .hva = Hva::Of(mapping.data()),
                       .flags = 0};
  ASSIGN_OR_RETURN(MemslotTable table, MemslotTable::Create({slot}, limits));
  return GuestMemory(backing, std::move(memfd), std::move(mapping), std::move(table));
}

absl::Status GuestMemory::RegisterWith(const KvmVm& vm) const {
  for (const GuestMemorySlot& s : table_.slots()) {
    RETURN_IF_ERROR(vm.SetUserMemoryRegion(s.slot, s.flags, s.gpa.value, s.size.value,
                                           s.hva.value));
  }
  return absl::OkStatus();
}

absl::StatusOr<uint8_t*> GuestMemory::HostRange(Gpa gpa, ByteSize len) const {
  std::optional<Hva> hva = table_.Translate(gpa, len);
  if (!hva) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest range gpa=%#x len=%#x is outside guest RAM (size %#x)", gpa.value, len.value,
        mapping_.size()));
  }
  return hva->As<uint8_t>();
}

absl::Status GuestMemory::Read(Gpa gpa, absl::Span<uint8_t> out) const {
  ASSIGN_OR_RETURN(uint8_t * src, HostRange(gpa, ByteSize{out.size()}));
  if (!out.empty()) std::memcpy(out.data(), src, out.size());
  return absl::OkStatus();
}

absl::Status GuestMemory::Write(Gpa gpa, absl::Span<const uint8_t> in) const {
  ASSIGN_OR_RETURN(uint8_t * dst, HostRange(gpa, ByteSize{in.size()}));
  if (!in.empty()) std::memcpy(dst, in.data(), in.size());
  return absl::OkStatus();
}

uint64_t HostPhysicalMemoryBytes() {
  const long pages = ::sysconf(_SC_PHYS_PAGES);
  const long page = ::sysconf(_SC_PAGESIZE);
  if (pages <= 0 || page <= 0) return 0;
  return static_cast<uint64_t>(pages) * static_cast<uint64_t>(page);
}

}  // namespace mmuvisor::vmm
