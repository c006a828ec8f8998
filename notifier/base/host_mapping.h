// HostMapping: owns one mmap()ed host range [addr, addr + size) and munmaps it exactly once.
// Move-only. Used for each vCPU's struct kvm_run, KVM's dirty rings, and tables that must
// start zero without being written (AnonymousZeroed).
#ifndef MMUVISOR_NOTIFIER_BASE_HOST_MAPPING_H_
#define MMUVISOR_NOTIFIER_BASE_HOST_MAPPING_H_

#include <cstddef>
#include <cstdint>
#include <utility>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mmuvisor {

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

  // `bytes` (> 0) of private anonymous memory that reads as zero and is not written here:
  // for a table with an entry per guest page (the swap store's checksums and flags, the
  // host address space's page state), most of which is never written. A value-initialised
  // heap array would write all of it at creation, a page fault per 4 KiB before the guest
  // runs; here a page is allocated where an entry in it is first written (a read of an
  // untouched page maps the shared zero page). MAP_NORESERVE: virtual until written.
  // Entries that threads share are accessed through std::atomic_ref over the bytes.
  static absl::StatusOr<HostMapping> AnonymousZeroed(size_t bytes, absl::string_view what);

  uint8_t* data() const { return static_cast<uint8_t*>(addr_); }
  size_t size() const { return size_; }
  bool valid() const { return addr_ != nullptr; }
  void Reset();

 private:
  HostMapping(void* addr, size_t size) : addr_(addr), size_(size) {}
  void* addr_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_HOST_MAPPING_H_
