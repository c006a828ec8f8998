// LoadElf: validates an ELF64 x86-64 executable and copies its PT_LOAD segments into guest
// RAM at their physical addresses (p_paddr, which must equal p_vaddr: guests run identity
// mapped). Bytes [filesz, memsz) of each segment are zero-filled, unless the caller says
// the RAM already reads as zero (ElfLoadTarget::ram_is_zero): then they are not written.
//
// Every bound is checked before the first byte is written, so a rejected image leaves RAM
// untouched. Errors: InvalidArgument for a malformed or unsupported image (the message names
// the ELF field), OutOfRange for an image that does not fit (file larger than the limit,
// segment outside guest RAM, running into the vCPU stacks, or outside the window its boot
// mode allows). The CLI applies the same file-size limit before reading a file
// (vmm/cli/guest_source.h, ReadImageFile), with the same code.
//
// Boot mode: carried by the image as a PT_NOTE "mmuvisor" / MMV_ELF_NOTE_BOOT_MODE (see
// guest_abi.h); long mode when absent. Several such notes must agree (InvalidArgument
// naming both modes otherwise). Long-mode segments must lie at or above
// MMV_IMAGE_GPA (below it is the VMM-owned area); real-mode segments inside
// [MMV_REAL_MODE_LOAD_GPA, MMV_REAL_MODE_LOAD_END_GPA).
//
// Pure: no syscalls, no logging. Thread-compatible (callers serialise writes to RAM).
#ifndef MMUVISOR_VMM_BOOT_ELF_LOADER_H_
#define MMUVISOR_VMM_BOOT_ELF_LOADER_H_

#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"
#include "absl/types/span.h"
#include "vmm/boot/guest_ram.h"

namespace mmuvisor::vmm {

enum class BootMode {
  kLong64,  // 64-bit long mode, identity page tables, CPL3 (or CPL0 on request)
  kReal16,  // 16-bit real mode, CS base 0, one vCPU
};

absl::string_view BootModeName(BootMode mode);

struct ElfLoadLimits {
  uint64_t max_file_bytes = 64ull << 20;  // larger files: OutOfRange
  uint32_t max_phnum = 64;                // more program headers: InvalidArgument
};

// Where LoadElf may write and what it may assume of guest RAM.
struct ElfLoadTarget {
  // First byte of the vCPU stack area at the top of RAM (BootLayout::free_end): every
  // segment, bss included, must end at or below it. PrepareGuest passes
  // ram.size - nr_vcpus * MMV_STACK_SIZE; the default leaves RAM as the only bound.
  uint64_t stacks_begin = UINT64_MAX;
  // RAM reads as zero (fresh anonymous memory): [p_filesz, p_memsz) of each segment is left
  // as it is, so a bss costs no host memory until the guest touches it. The Machine's RAM
  // is; false for a buffer that may hold anything.
  bool ram_is_zero = false;
};

struct LoadedImage {
  uint64_t entry = 0;        // e_entry: first instruction (RIP, or IP in real mode)
  uint64_t lowest_gpa = 0;   // first byte of the lowest PT_LOAD segment
  uint64_t highest_gpa = 0;  // one past the last byte of the highest segment (memsz)
  BootMode mode = BootMode::kLong64;
};

// Loads `elf` into `ram`. The entry point must lie inside the file bytes of an executable
// segment ([p_paddr, p_paddr + p_filesz)), not in its zero-filled part.
absl::StatusOr<LoadedImage> LoadElf(absl::Span<const uint8_t> elf, const GuestRamView& ram,
                                    const ElfLoadLimits& limits = {},
                                    const ElfLoadTarget& target = {});

// Every check of LoadElf, with the same result and errors, writing nothing: lets a caller
// refuse an image for a reason of its own (PrepareGuest: a real-mode image on several vCPUs,
// which needs the boot mode) before any byte of RAM changes.
absl::StatusOr<LoadedImage> InspectElf(absl::Span<const uint8_t> elf, const GuestRamView& ram,
                                       const ElfLoadLimits& limits = {},
                                       const ElfLoadTarget& target = {});

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_ELF_LOADER_H_
