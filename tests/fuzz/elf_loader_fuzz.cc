// libFuzzer target `elf_loader`: the bytes of a guest image file (`mmuvisor run PATH`) fed
// to LoadElf (vmm/boot/elf_loader.h). It must never crash, read out of bounds or write
// outside guest RAM, whatever the bytes; a rejected image leaves RAM untouched (the
// loader's contract: every bound is checked before the first byte is written); an accepted
// one reports a non-empty [lowest_gpa, highest_gpa) inside RAM and an entry inside it.
// Guest RAM is 2 MiB + 64 KiB with guard bytes on each side (ASan catches accesses past
// the vector; the guards catch in-bounds misuse).
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "vmm/boot/elf_loader.h"

namespace {

constexpr size_t kGuard = 4096;
constexpr size_t kRam = (2u << 20) + (64u << 10);
constexpr uint8_t kGuardByte = 0xee;
const uint8_t kZeroRam[kRam] = {};
const auto kGuardBytes = [] {
  std::array<uint8_t, kGuard> g;
  g.fill(kGuardByte);
  return g;
}();

[[noreturn]] void Fail(const char* what) {
  std::fprintf(stderr, "elf_loader fuzz: %s\n", what);
  std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static std::vector<uint8_t> memory = [] {
    std::vector<uint8_t> m(kRam + 2 * kGuard, 0);
    std::fill(m.begin(), m.begin() + kGuard, kGuardByte);
    std::fill(m.end() - kGuard, m.end(), kGuardByte);
    return m;
  }();
  uint8_t* const ram_host = memory.data() + kGuard;
  mmuvisor::vmm::GuestRamView ram{ram_host, kRam};
  mmuvisor::vmm::ElfLoadLimits limits;
  limits.max_file_bytes = 1 << 20;
  auto image = mmuvisor::vmm::LoadElf(absl::MakeConstSpan(data, size), ram, limits);
  if (image.ok()) {
    if (image->lowest_gpa >= image->highest_gpa || image->highest_gpa > kRam) {
      Fail("accepted image with an empty or out-of-RAM extent");
    }
    if (image->entry < image->lowest_gpa || image->entry >= image->highest_gpa) {
      Fail("accepted image whose entry lies outside its segments");
    }
    std::memset(ram_host, 0, kRam);  // the next input starts from zeroed RAM
  } else if (std::memcmp(ram_host, kZeroRam, kRam) != 0) {  // libc: no per-byte coverage
    Fail("rejected image wrote guest RAM");
  }
  if (std::memcmp(memory.data(), kGuardBytes.data(), kGuard) != 0 ||
      std::memcmp(memory.data() + kGuard + kRam, kGuardBytes.data(), kGuard) != 0) {
    Fail("write outside guest RAM (guard bytes changed)");
  }
  return 0;
}
