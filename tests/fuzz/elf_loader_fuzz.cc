// libFuzzer harness: LoadElf must never crash, read out of bounds or write outside guest
// RAM, whatever the bytes. Guest RAM is 2 MiB + 64 KiB with poisoned guard bytes around it
// (ASan catches reads/writes past the vector; the guards catch in-bounds misuse).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include "vmm/boot/elf_loader.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  constexpr size_t kGuard = 4096;
  constexpr size_t kRam = (2u << 20) + (64u << 10);
  static std::vector<uint8_t> memory(kRam + 2 * kGuard);
  std::fill(memory.begin(), memory.begin() + kGuard, 0xee);
  std::fill(memory.end() - kGuard, memory.end(), 0xee);
  mmuvisor::vmm::GuestRamView ram{memory.data() + kGuard, kRam};
  mmuvisor::vmm::ElfLoadLimits limits;
  limits.max_file_bytes = 1 << 20;
  auto image = mmuvisor::vmm::LoadElf(absl::MakeConstSpan(data, size), ram, limits);
  if (image.ok() && (image->lowest_gpa >= image->highest_gpa || image->highest_gpa > kRam)) {
    abort();
  }
  for (size_t i = 0; i < kGuard; ++i) {
    if (memory[i] != 0xee || memory[memory.size() - 1 - i] != 0xee) abort();
  }
  return 0;
}
