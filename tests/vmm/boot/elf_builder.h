// ElfBuilder: builds small ELF64 x86-64 images in memory for the boot tests, and accessors
// to corrupt their headers afterwards. Test-only.
#ifndef MMUVISOR_TESTS_VMM_BOOT_ELF_BUILDER_H_
#define MMUVISOR_TESTS_VMM_BOOT_ELF_BUILDER_H_

#include <elf.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace mmuvisor::vmm::testing {

struct SegmentSpec {
  uint32_t type = PT_LOAD;
  uint32_t flags = PF_R | PF_X;
  uint64_t paddr = 0;
  std::vector<uint8_t> data;  // file contents (p_filesz = data.size())
  uint64_t memsz = 0;         // 0: same as data.size()
};

// A PT_NOTE payload with one note.
inline std::vector<uint8_t> Note(const std::string& name, uint32_t type,
                                 const std::vector<uint8_t>& desc) {
  std::vector<uint8_t> out;
  auto put32 = [&out](uint32_t v) {
    for (int i = 0; i < 4; ++i) out.push_back(static_cast<uint8_t>(v >> (8 * i)));
  };
  put32(static_cast<uint32_t>(name.size() + 1));
  put32(static_cast<uint32_t>(desc.size()));
  put32(type);
  for (char c : name) out.push_back(static_cast<uint8_t>(c));
  out.push_back(0);
  while (out.size() % 4) out.push_back(0);
  out.insert(out.end(), desc.begin(), desc.end());
  while (out.size() % 4) out.push_back(0);
  return out;
}

inline std::vector<uint8_t> BootModeNote(uint32_t mode) {
  return Note("mmuvisor", 1, {static_cast<uint8_t>(mode), static_cast<uint8_t>(mode >> 8),
                              static_cast<uint8_t>(mode >> 16),
                              static_cast<uint8_t>(mode >> 24)});
}

// Layout: ELF header, program headers, then each segment's data in order.
inline std::vector<uint8_t> BuildElf(uint64_t entry, const std::vector<SegmentSpec>& segs) {
  Elf64_Ehdr ehdr{};
  std::memcpy(ehdr.e_ident, ELFMAG, SELFMAG);
  ehdr.e_ident[EI_CLASS] = ELFCLASS64;
  ehdr.e_ident[EI_DATA] = ELFDATA2LSB;
  ehdr.e_ident[EI_VERSION] = EV_CURRENT;
  ehdr.e_type = ET_EXEC;
  ehdr.e_machine = EM_X86_64;
  ehdr.e_version = EV_CURRENT;
  ehdr.e_entry = entry;
  ehdr.e_phoff = sizeof(Elf64_Ehdr);
  ehdr.e_ehsize = sizeof(Elf64_Ehdr);
  ehdr.e_phentsize = sizeof(Elf64_Phdr);
  ehdr.e_phnum = static_cast<uint16_t>(segs.size());
  std::vector<uint8_t> out(sizeof(Elf64_Ehdr) + segs.size() * sizeof(Elf64_Phdr));
  std::memcpy(out.data(), &ehdr, sizeof(ehdr));
  for (size_t i = 0; i < segs.size(); ++i) {
    Elf64_Phdr ph{};
    ph.p_type = segs[i].type;
    ph.p_flags = segs[i].flags;
    ph.p_offset = out.size();
    ph.p_vaddr = ph.p_paddr = segs[i].paddr;
    ph.p_filesz = segs[i].data.size();
    ph.p_memsz = segs[i].memsz ? segs[i].memsz : segs[i].data.size();
    ph.p_align = 1;
    std::memcpy(out.data() + sizeof(Elf64_Ehdr) + i * sizeof(Elf64_Phdr), &ph, sizeof(ph));
    out.insert(out.end(), segs[i].data.begin(), segs[i].data.end());
  }
  return out;
}

// Read-modify-write access to the headers of a built image.
inline Elf64_Ehdr GetEhdr(const std::vector<uint8_t>& elf) {
  Elf64_Ehdr e;
  std::memcpy(&e, elf.data(), sizeof(e));
  return e;
}
inline void SetEhdr(std::vector<uint8_t>& elf, const Elf64_Ehdr& e) {
  std::memcpy(elf.data(), &e, sizeof(e));
}
inline Elf64_Phdr GetPhdr(const std::vector<uint8_t>& elf, size_t i) {
  Elf64_Phdr p;
  std::memcpy(&p, elf.data() + GetEhdr(elf).e_phoff + i * sizeof(p), sizeof(p));
  return p;
}
inline void SetPhdr(std::vector<uint8_t>& elf, size_t i, const Elf64_Phdr& p) {
  std::memcpy(elf.data() + GetEhdr(elf).e_phoff + i * sizeof(p), &p, sizeof(p));
}

}  // namespace mmuvisor::vmm::testing

#endif  // MMUVISOR_TESTS_VMM_BOOT_ELF_BUILDER_H_
