// ELF64 loader: validate everything, then copy. See elf_loader.h for the contract.
#include "vmm/boot/elf_loader.h"

#include <elf.h>

#include <algorithm>
#include <cstring>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "mmuvisor/guest_abi.h"

namespace mmuvisor::vmm {
namespace {

absl::Status Invalid(absl::string_view what) {
  return absl::InvalidArgumentError(absl::StrCat("ELF image: ", what));
}
absl::Status OutOfRange(absl::string_view what) {
  return absl::OutOfRangeError(absl::StrCat("ELF image: ", what));
}

// True when [offset, offset + len) lies inside a buffer of `size` bytes, without wrapping.
bool InBounds(uint64_t offset, uint64_t len, uint64_t size) {
  return offset <= size && len <= size - offset;
}

template <typename T>
T ReadAt(absl::Span<const uint8_t> bytes, uint64_t offset) {
  T value;
  std::memcpy(&value, bytes.data() + offset, sizeof(T));
  return value;
}

// Reads the boot mode from a PT_NOTE segment's notes into `*mode`; leaves it alone when the
// segment holds no "mmuvisor" boot-mode note. A note that disagrees with one seen before
// (in this segment or an earlier one) is an error: which one wins would be a guess.
absl::Status ParseNotes(absl::Span<const uint8_t> note, std::optional<BootMode>* mode) {
  constexpr absl::string_view kName(MMV_ELF_NOTE_NAME, sizeof(MMV_ELF_NOTE_NAME));
  uint64_t pos = 0;
  while (note.size() - pos >= sizeof(Elf64_Nhdr)) {
    const auto nhdr = ReadAt<Elf64_Nhdr>(note, pos);
    pos += sizeof(Elf64_Nhdr);
    const uint64_t name_len = (uint64_t{nhdr.n_namesz} + 3) & ~uint64_t{3};
    const uint64_t desc_len = (uint64_t{nhdr.n_descsz} + 3) & ~uint64_t{3};
    if (!InBounds(pos, name_len, note.size()) ||
        !InBounds(pos + name_len, desc_len, note.size())) {
      return Invalid(absl::StrFormat("PT_NOTE entry at +%#x: n_namesz %u / n_descsz %u run "
                                     "past the segment", pos - sizeof(Elf64_Nhdr),
                                     nhdr.n_namesz, nhdr.n_descsz));
    }
    const absl::string_view name(reinterpret_cast<const char*>(note.data() + pos),
                                 nhdr.n_namesz);
    if (name == kName && nhdr.n_type == MMV_ELF_NOTE_BOOT_MODE) {
      if (nhdr.n_descsz != 4) {
        return Invalid(absl::StrFormat("mmuvisor boot-mode note: n_descsz %u, want 4",
                                       nhdr.n_descsz));
      }
      const auto value = ReadAt<uint32_t>(note, pos + name_len);
      BootMode this_mode;
      switch (value) {
        case MMV_BOOT_MODE_LONG64: this_mode = BootMode::kLong64; break;
        case MMV_BOOT_MODE_REAL16: this_mode = BootMode::kReal16; break;
        default:
          return Invalid(absl::StrFormat("mmuvisor boot-mode note: unknown mode %u", value));
      }
      if (mode->has_value() && **mode != this_mode) {
        return Invalid(absl::StrFormat("two mmuvisor boot-mode notes disagree: %s, then %s",
                                       BootModeName(**mode), BootModeName(this_mode)));
      }
      *mode = this_mode;
    }
    pos += name_len + desc_len;
  }
  return absl::OkStatus();
}

absl::StatusOr<Elf64_Ehdr> CheckHeader(absl::Span<const uint8_t> elf,
                                       const ElfLoadLimits& limits) {
  if (elf.empty()) return Invalid("empty file");
  if (elf.size() > limits.max_file_bytes) {
    return OutOfRange(absl::StrFormat("file size %u exceeds the limit of %u bytes", elf.size(),
                                      limits.max_file_bytes));
  }
  if (elf.size() < EI_NIDENT || std::memcmp(elf.data(), ELFMAG, SELFMAG) != 0) {
    return Invalid("bad magic (not an ELF file)");
  }
  if (elf[EI_CLASS] != ELFCLASS64) {
    return Invalid(absl::StrFormat("e_ident[EI_CLASS] = %u, want ELFCLASS64 (ELF32 images "
                                   "are not supported)", elf[EI_CLASS]));
  }
  if (elf[EI_DATA] != ELFDATA2LSB) {
    return Invalid(absl::StrFormat("e_ident[EI_DATA] = %u, want little-endian", elf[EI_DATA]));
  }
  if (elf[EI_VERSION] != EV_CURRENT) {
    return Invalid(absl::StrFormat("e_ident[EI_VERSION] = %u, want 1", elf[EI_VERSION]));
  }
  if (elf.size() < sizeof(Elf64_Ehdr)) {
    return Invalid(absl::StrFormat("truncated ELF header: %u bytes, need %u", elf.size(),
                                   sizeof(Elf64_Ehdr)));
  }
  const auto ehdr = ReadAt<Elf64_Ehdr>(elf, 0);
  if (ehdr.e_machine != EM_X86_64) {
    return Invalid(absl::StrFormat("e_machine = %u, want EM_X86_64 (62)", ehdr.e_machine));
  }
  if (ehdr.e_type != ET_EXEC) {
    return Invalid(absl::StrFormat("e_type = %u, want ET_EXEC (2): PIE and relocatable "
                                   "images are not supported", ehdr.e_type));
  }
  if (ehdr.e_ehsize < sizeof(Elf64_Ehdr)) {
    return Invalid(absl::StrFormat("e_ehsize = %u, want at least %u", ehdr.e_ehsize,
                                   sizeof(Elf64_Ehdr)));
  }
  if (ehdr.e_phnum == 0) return Invalid("e_phnum = 0: no program headers");
  if (ehdr.e_phnum > limits.max_phnum) {
    return Invalid(absl::StrFormat("e_phnum = %u exceeds the limit of %u", ehdr.e_phnum,
                                   limits.max_phnum));
  }
  if (ehdr.e_phentsize != sizeof(Elf64_Phdr)) {
    return Invalid(absl::StrFormat("e_phentsize = %u, want %u", ehdr.e_phentsize,
                                   sizeof(Elf64_Phdr)));
  }
  if (!InBounds(ehdr.e_phoff, uint64_t{ehdr.e_phnum} * sizeof(Elf64_Phdr), elf.size())) {
    return Invalid(absl::StrFormat("program headers (e_phoff %#x, e_phnum %u) lie outside "
                                   "the %u-byte file", ehdr.e_phoff, ehdr.e_phnum, elf.size()));
  }
  return ehdr;
}

// The guest-physical window segments of `mode` must lie in, clipped to RAM by the caller.
struct Window {
  uint64_t begin;
  uint64_t end;
};
Window AllowedWindow(BootMode mode) {
  if (mode == BootMode::kReal16) return {MMV_REAL_MODE_LOAD_GPA, MMV_REAL_MODE_LOAD_END_GPA};
  return {MMV_IMAGE_GPA, UINT64_MAX};
}

}  // namespace

absl::string_view BootModeName(BootMode mode) {
  switch (mode) {
    case BootMode::kLong64: return "long64";
    case BootMode::kReal16: return "real16";
  }
  return "unknown";
}

namespace {

// The PT_LOAD segments with p_memsz > 0, each checked on its own (in the file, filesz <=
// memsz, no wrap, identity-mapped); PT_NOTEs set *mode (long mode when none says).
absl::StatusOr<std::vector<Elf64_Phdr>> ReadSegments(absl::Span<const uint8_t> elf,
                                                     const Elf64_Ehdr& ehdr, BootMode* mode) {
  std::optional<BootMode> noted;
  std::vector<Elf64_Phdr> loads;
  for (uint32_t i = 0; i < ehdr.e_phnum; ++i) {
    const auto ph = ReadAt<Elf64_Phdr>(elf, ehdr.e_phoff + uint64_t{i} * sizeof(Elf64_Phdr));
    if (ph.p_type != PT_LOAD && ph.p_type != PT_NOTE) continue;
    if (ph.p_type == PT_LOAD && ph.p_filesz > ph.p_memsz) {
      return Invalid(absl::StrFormat("phdr[%u]: p_filesz %#x > p_memsz %#x", i, ph.p_filesz,
                                     ph.p_memsz));
    }
    // A PT_LOAD of p_memsz 0 (so p_filesz 0) describes no bytes, in memory or in the file:
    // ignored wherever its addresses and offset point (GNU ld emits one at 0 for an empty
    // data segment).
    if (ph.p_type == PT_LOAD && ph.p_memsz == 0) continue;
    if (!InBounds(ph.p_offset, ph.p_filesz, elf.size())) {
      return Invalid(absl::StrFormat("phdr[%u]: p_offset %#x + p_filesz %#x lies outside the "
                                     "%u-byte file", i, ph.p_offset, ph.p_filesz, elf.size()));
    }
    if (ph.p_type == PT_NOTE) {
      if (absl::Status s = ParseNotes(elf.subspan(ph.p_offset, ph.p_filesz), &noted); !s.ok()) {
        return s;
      }
      continue;
    }
    if (ph.p_paddr + ph.p_memsz < ph.p_paddr) {
      return Invalid(absl::StrFormat("phdr[%u]: p_paddr %#x + p_memsz %#x wraps around", i,
                                     ph.p_paddr, ph.p_memsz));
    }
    if (ph.p_vaddr != ph.p_paddr) {
      return Invalid(absl::StrFormat("phdr[%u]: p_vaddr %#x != p_paddr %#x (guests run "
                                     "identity-mapped)", i, ph.p_vaddr, ph.p_paddr));
    }
    loads.push_back(ph);
  }
  if (loads.empty()) return Invalid("no PT_LOAD segment with p_memsz > 0");
  *mode = noted.value_or(BootMode::kLong64);
  return loads;
}

// The segments against each other, the boot mode's window (which a PT_NOTE anywhere in the
// table may set), guest RAM, the stack area and the entry point; fills image's entry and
// gpa bounds.
absl::Status PlaceSegments(const std::vector<Elf64_Phdr>& loads, const Elf64_Ehdr& ehdr,
                           const GuestRamView& ram, const ElfLoadTarget& target,
                           LoadedImage& image) {
  const Window window = AllowedWindow(image.mode);
  bool entry_ok = false;
  image.lowest_gpa = UINT64_MAX;
  for (size_t i = 0; i < loads.size(); ++i) {
    const Elf64_Phdr& ph = loads[i];
    const uint64_t end = ph.p_paddr + ph.p_memsz;
    if (ph.p_paddr < window.begin || end > window.end) {
      const bool vmm_area = image.mode == BootMode::kLong64 && ph.p_paddr < window.begin;
      const std::string what = absl::StrFormat(
          "PT_LOAD [%#x, %#x) lies outside the %s window [%#x, %#x)", ph.p_paddr, end,
          BootModeName(image.mode), window.begin, window.end);
      // Below MMV_IMAGE_GPA is the VMM's own area (GDT, boot info, ucall, page tables).
      return vmm_area ? Invalid(absl::StrCat(what, ": overlaps the VMM-owned area"))
                      : OutOfRange(what);
    }
    if (!ram.Contains(ph.p_paddr, ph.p_memsz)) {
      return OutOfRange(absl::StrFormat("PT_LOAD [%#x, %#x) lies outside guest RAM [0, %#x)",
                                        ph.p_paddr, end, ram.size));
    }
    if (end > target.stacks_begin) {
      return OutOfRange(absl::StrFormat(
          "PT_LOAD [%#x, %#x) runs into the vCPU stacks [%#x, %#x) at the top of guest RAM",
          ph.p_paddr, end, target.stacks_begin, ram.size));
    }
    for (size_t j = 0; j < i; ++j) {
      const uint64_t other_end = loads[j].p_paddr + loads[j].p_memsz;
      if (ph.p_paddr < other_end && loads[j].p_paddr < end) {
        return Invalid(absl::StrFormat("PT_LOAD [%#x, %#x) overlaps PT_LOAD [%#x, %#x)",
                                       ph.p_paddr, end, loads[j].p_paddr, other_end));
      }
    }
    // The entry must be a byte from the file: past p_filesz the segment is zero-filled,
    // and the guest would run zeros (add %al,(%rax)) into a fault at 0.
    const uint64_t file_end = ph.p_paddr + ph.p_filesz;
    if ((ph.p_flags & PF_X) != 0 && ehdr.e_entry >= ph.p_paddr && ehdr.e_entry < end) {
      if (ehdr.e_entry >= file_end) {
        return Invalid(absl::StrFormat(
            "e_entry %#x lies in the zero-filled part [%#x, %#x) of PT_LOAD [%#x, %#x) "
            "(past p_filesz %#x): no code there", ehdr.e_entry, file_end, end, ph.p_paddr,
            end, ph.p_filesz));
      }
      entry_ok = true;
    }
    image.lowest_gpa = std::min<uint64_t>(image.lowest_gpa, ph.p_paddr);
    image.highest_gpa = std::max<uint64_t>(image.highest_gpa, end);
  }
  if (!entry_ok) {
    return Invalid(absl::StrFormat("e_entry %#x is not inside an executable PT_LOAD segment",
                                   ehdr.e_entry));
  }
  image.entry = ehdr.e_entry;
  return absl::OkStatus();
}

// All the checks, writing nothing: the image and the PT_LOAD segments to copy.
absl::StatusOr<LoadedImage> Inspect(absl::Span<const uint8_t> elf, const GuestRamView& ram,
                                    const ElfLoadLimits& limits, const ElfLoadTarget& target,
                                    std::vector<Elf64_Phdr>* loads) {
  absl::StatusOr<Elf64_Ehdr> checked = CheckHeader(elf, limits);
  if (!checked.ok()) return checked.status();
  const Elf64_Ehdr& ehdr = *checked;
  LoadedImage image;
  absl::StatusOr<std::vector<Elf64_Phdr>> read = ReadSegments(elf, ehdr, &image.mode);
  if (!read.ok()) return read.status();
  if (absl::Status placed = PlaceSegments(*read, ehdr, ram, target, image); !placed.ok()) {
    return placed;
  }
  *loads = *std::move(read);
  return image;
}

}  // namespace

absl::StatusOr<LoadedImage> InspectElf(absl::Span<const uint8_t> elf, const GuestRamView& ram,
                                       const ElfLoadLimits& limits,
                                       const ElfLoadTarget& target) {
  std::vector<Elf64_Phdr> loads;
  return Inspect(elf, ram, limits, target, &loads);
}

absl::StatusOr<LoadedImage> LoadElf(absl::Span<const uint8_t> elf, const GuestRamView& ram,
                                    const ElfLoadLimits& limits, const ElfLoadTarget& target) {
  std::vector<Elf64_Phdr> loads;
  absl::StatusOr<LoadedImage> image = Inspect(elf, ram, limits, target, &loads);
  if (!image.ok()) return image.status();
  for (const Elf64_Phdr& ph : loads) {
    uint8_t* dst = ram.At(ph.p_paddr);
    std::memcpy(dst, elf.data() + ph.p_offset, ph.p_filesz);
    // Skipped on fresh RAM: a bss of nearly all RAM would otherwise fault in every page of
    // it here, before the guest runs and outside its --timeout.
    if (!target.ram_is_zero) std::memset(dst + ph.p_filesz, 0, ph.p_memsz - ph.p_filesz);
  }
  return image;
}

}  // namespace mmuvisor::vmm
