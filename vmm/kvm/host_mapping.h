// HostMapping: owns one mmap()ed host range [addr, addr + size) and munmaps it exactly once.
// Move-only. Used for guest RAM and for each vCPU's struct kvm_run.
#ifndef MMUVISOR_VMM_KVM_HOST_MAPPING_H_
#define MMUVISOR_VMM_KVM_HOST_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mmuvisor::vmm {

class HostMapping {
 public:
  HostMapping() = default;
  HostMapping(HostMapping&& other) noexcept
      : addr_(std::exchange(other.addr_, nullptr)), size_(std::exchange(other.size_, 0)) {}
  HostMapping& operator=(HostMapping&& other) noexcept;
  HostMapping(const HostMapping&) = delete;
  HostMapping& operator=(const HostMapping&) = delete;
  ~HostMapping() { Reset(); }

  // mmap(nullptr, size, prot, flags, fd, offset); `what` names the mapping in errors.
  static absl::StatusOr<HostMapping> Map(size_t size, int prot, int flags, int fd,
                                         int64_t offset, absl::string_view what);

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }
  void Reset();

 private:
  HostMapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_HOST_MAPPING_H_
