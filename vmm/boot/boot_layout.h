// BootLayout: where things sit in guest-physical memory for one VM: the free range handed
// to the guest and the per-vCPU stacks and ucall blocks (the fixed part of the layout is in
// guests/include/mmuvisor/guest_abi.h; vmm/boot/README.md draws the whole map).
//
//   [image lowest, image highest)      the loaded ELF image
//   [free_start, free_end)             free for the guest; free_start = image end rounded up
//                                      to 4 KiB, free_end = ram_size - nr_vcpus * stack
//   [free_end, ram_size)               stacks: vCPU i owns
//                                      [ram_size - (i+1)*MMV_STACK_SIZE, ram_size - i*...)
//
// Stack convention: RSP starts at StackTop(i) - 8 (16-byte aligned minus 8, as after a
// call). The lowest 4 KiB of each stack region is reserved as that vCPU's ring-0 stack
// (TSS.RSP0), used only if the VMM ever installs exception handlers.
// A guest may derive its own index from RSP: index = (ram_size - rsp) / MMV_STACK_SIZE.
//
// Value type, immutable after ComputeBootLayout; thread-compatible.
#ifndef MMUVISOR_VMM_BOOT_BOOT_LAYOUT_H_
#define MMUVISOR_VMM_BOOT_BOOT_LAYOUT_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/boot/elf_loader.h"

namespace mmuvisor::vmm {

struct BootLayout {
  uint64_t ram_size = 0;
  uint32_t nr_vcpus = 0;
  uint64_t free_start = 0;
  uint64_t free_end = 0;

  // REQUIRES: vcpu < nr_vcpus (for all four).
  uint64_t StackTop(uint32_t vcpu) const { return ram_size - uint64_t{vcpu} * MMV_STACK_SIZE; }
  uint64_t StackBottom(uint32_t vcpu) const { return StackTop(vcpu) - MMV_STACK_SIZE; }
  uint64_t Ring0StackTop(uint32_t vcpu) const { return StackBottom(vcpu) + 4096; }
  uint64_t UcallGpa(uint32_t vcpu) const {
    return MMV_UCALL_GPA + uint64_t{vcpu} * MMV_UCALL_STRIDE;
  }
};

// Computes the layout for `image` in `ram_size` bytes with `nr_vcpus` vCPUs.
// Errors: InvalidArgument for nr_vcpus == 0, nr_vcpus > MMV_UCALL_MAX_VCPUS, a real-mode
// image with more than one vCPU, or ram_size not a multiple of 4 KiB; OutOfRange when the
// image and the stacks do not fit in RAM together.
absl::StatusOr<BootLayout> ComputeBootLayout(uint64_t ram_size, uint32_t nr_vcpus,
                                             const LoadedImage& image);

// The checks of ComputeBootLayout that need no image, with its errors: 1 to
// MMV_UCALL_MAX_VCPUS vCPUs, RAM a non-zero multiple of 4 KiB (InvalidArgument otherwise).
// PrepareGuest runs them first, so a bad count is not reported as an image that does not
// fit beside that many stacks.
absl::Status CheckVcpusAndRamSize(uint64_t ram_size, uint32_t nr_vcpus);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_BOOT_LAYOUT_H_
