// Writes the malformed guest images the CLI bad-input tests feed to the mmuvisor binary:
//   empty.elf      0 bytes
//   text.elf       not an ELF file
//   truncated.elf  the first 100 bytes of hello64 (program headers cut off)
//   wrong_arch.elf hello64 with e_machine = EM_AARCH64
//   outside.elf    a valid image whose PT_LOAD segment sits at 1 GiB (outside 64M of RAM)
//   oversized.elf  a sparse 65 MiB file (over the 64 MiB image limit)
// Usage: make_bad_images DIR
#include <elf.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "vmm/boot/elf_builder.h"
#include "vmm/boot/guest_images.h"

namespace {

bool WriteFile(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::FILE* f = std::fopen(path.c_str(), "wb");
  if (f == nullptr) return false;
  const bool ok =
      bytes.empty() || std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size();
  return std::fclose(f) == 0 && ok;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s DIR\n", argv[0]);
    return 2;
  }
  const std::string dir = argv[1];
  mkdir(dir.c_str(), 0755);  // EEXIST is fine; any other failure shows in the writes below
  auto hello = mmuvisor::vmm::BuiltinGuestImage("hello64");
  if (!hello.ok()) {
    std::fprintf(stderr, "%s\n", hello.status().ToString().c_str());
    return 1;
  }
  const std::vector<uint8_t> image(hello->begin(), hello->end());
  std::vector<uint8_t> wrong_arch = image;
  Elf64_Ehdr ehdr;
  std::memcpy(&ehdr, wrong_arch.data(), sizeof(ehdr));
  ehdr.e_machine = EM_AARCH64;
  std::memcpy(wrong_arch.data(), &ehdr, sizeof(ehdr));

  using mmuvisor::vmm::testing::BuildElf;
  using mmuvisor::vmm::testing::SegmentSpec;
  const std::vector<uint8_t> outside =
      BuildElf(0x40000000, {SegmentSpec{PT_LOAD, PF_R | PF_X, 0x40000000, {0xeb, 0xfe}, 0}});

  const std::string text = "this is not an ELF image\n";
  bool ok = WriteFile(dir + "/empty.elf", {}) &&
            WriteFile(dir + "/text.elf", std::vector<uint8_t>(text.begin(), text.end())) &&
            WriteFile(dir + "/truncated.elf",
                      std::vector<uint8_t>(image.begin(), image.begin() + 100)) &&
            WriteFile(dir + "/wrong_arch.elf", wrong_arch) &&
            WriteFile(dir + "/outside.elf", outside) &&
            WriteFile(dir + "/oversized.elf", {}) &&
            truncate((dir + "/oversized.elf").c_str(), 65ll << 20) == 0;
  if (!ok) {
    std::perror("make_bad_images");
    return 1;
  }
  return 0;
}
