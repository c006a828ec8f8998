// Per-VM guest-physical layout. See boot_layout.h.
#include "vmm/boot/boot_layout.h"

#include <algorithm>

#include "absl/status/status.h"
#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {

absl::Status CheckVcpusAndRamSize(uint64_t ram_size, uint32_t nr_vcpus) {
  if (nr_vcpus == 0 || nr_vcpus > MMV_UCALL_MAX_VCPUS) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "boot layout: %u vCPUs, want 1..%u (one ucall block each)", nr_vcpus,
        MMV_UCALL_MAX_VCPUS));
  }
  if (ram_size == 0 || ram_size % 4096 != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "boot layout: guest RAM size %#x is not a non-zero multiple of 4 KiB", ram_size));
  }
  return absl::OkStatus();
}

absl::StatusOr<BootLayout> ComputeBootLayout(uint64_t ram_size, uint32_t nr_vcpus,
                                             const LoadedImage& image) {
  if (absl::Status s = CheckVcpusAndRamSize(ram_size, nr_vcpus); !s.ok()) return s;
  if (image.mode == BootMode::kReal16 && nr_vcpus != 1) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "boot layout: real-mode images run on exactly one vCPU, asked for %u", nr_vcpus));
  }
  BootLayout layout;
  layout.ram_size = ram_size;
  layout.nr_vcpus = nr_vcpus;
  // Real-mode images use their own stack below 64 KiB; long-mode images get the free range
  // after the image and the per-vCPU stacks at the top of RAM.
  const uint64_t image_end = image.mode == BootMode::kReal16
                                 ? MMV_IMAGE_GPA
                                 : std::max<uint64_t>(image.highest_gpa, MMV_IMAGE_GPA);
  layout.free_start = (image_end + 4095) & ~uint64_t{4095};
  const uint64_t stacks = uint64_t{nr_vcpus} * MMV_STACK_SIZE;
  if (ram_size < stacks || ram_size - stacks < layout.free_start) {
    return absl::OutOfRangeError(absl::StrFormat(
        "boot layout: guest RAM of %#x bytes cannot hold the image (ends at %#x) and %u "
        "stacks of %#x bytes", ram_size, layout.free_start, nr_vcpus, MMV_STACK_SIZE));
  }
  layout.free_end = ram_size - stacks;
  return layout;
}

}  // namespace mmuvisor::vmm
