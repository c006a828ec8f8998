#include "vmm/stress/kvm_device_hooks.h"

#include <sys/mman.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "absl/strings/str_cat.h"
#include "notifier/base/page.h"

namespace mmuvisor::vmm::stress {

HostDeviceHooks::~HostDeviceHooks() {
  if (alias_ != nullptr) ::munmap(alias_, alias_bytes_);
}

absl::Status HostDeviceHooks::MapDeviceView() {
  const int fd = space_.ram() != nullptr ? space_.ram()->memfd() : -1;
  if (fd < 0) return absl::FailedPreconditionError("device view: guest RAM has no memfd");
  alias_bytes_ = space_.num_pages() * kPageSize;
  void* p = ::mmap(nullptr, alias_bytes_, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  if (p == MAP_FAILED) {
    const int e = errno;
    return absl::InternalError(absl::StrCat("mmap of the guest RAM memfd: ", std::strerror(e)));
  }
  alias_ = p;
  return absl::OkStatus();
}

void HostDeviceHooks::BeforeWrite(uint64_t host) {
  space_.NoteHostWrite(PageRange{(host - space_.AddressOf(0)) / kPageSize, 1});
}

uint64_t HostDeviceHooks::DeviceAddress(uint64_t host) {
  if (alias_ == nullptr) return host;
  return reinterpret_cast<uint64_t>(alias_) + (host - space_.AddressOf(0));
}

double ResidentFraction(HostAddressSpace& space) {
  const uint64_t pages = space.num_pages();
  std::vector<unsigned char> vec(pages);
  if (::mincore(space.PagePointer(0), pages * kPageSize, vec.data()) != 0) return 0;
  uint64_t resident = 0;
  for (unsigned char v : vec) resident += v & 1;
  return static_cast<double>(resident) / static_cast<double>(pages);
}

}  // namespace mmuvisor::vmm::stress
