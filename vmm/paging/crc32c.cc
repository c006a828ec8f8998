#include "vmm/paging/crc32c.h"

#include <array>
#include <cstring>

#if defined(__x86_64__)
#include <cpuid.h>
#include <nmmintrin.h>
#endif

namespace mmuvisor::vmm {
namespace {

constexpr uint32_t kPolyReflected = 0x82F63B78u;

constexpr std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> table{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ kPolyReflected : c >> 1;
    table[i] = c;
  }
  return table;
}
constexpr std::array<uint32_t, 256> kTable = MakeTable();

uint32_t UpdatePortable(uint32_t crc, const unsigned char* p, size_t n) {
  while (n-- > 0) crc = kTable[(crc ^ *p++) & 0xFF] ^ (crc >> 8);
  return crc;
}

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint64_t UpdateWords(uint64_t c, const unsigned char* p,
                                                       size_t words) {
  for (size_t i = 0; i < words; ++i) {
    uint64_t word;
    std::memcpy(&word, p + 8 * i, sizeof(word));
    c = _mm_crc32_u64(c, word);
  }
  return c;
}

// Three streams: `crc32` has a latency of 3 cycles and a throughput of 1, so one dependent
// chain runs at a third of the instruction's speed. A run of 3 * kBlock bytes is three
// chains over its thirds, joined with Shift(): the raw CRC (no final xor) is linear, so
// crc(s, A || B) = Shift(crc(s, A)) ^ crc(0, B) for |B| = kBlock, where Shift runs kBlock
// zero bytes through the register. Shift is linear in the 32-bit state: four 256-entry
// tables, built once from the 32 basis states. 3 * 1360 = 4080: one run per 4 KiB page.
constexpr size_t kBlock = 1360;  // bytes, a multiple of 8

struct ShiftTables {
  uint32_t t[4][256];
};

const ShiftTables& Tables() {
  static const ShiftTables tables = [] {
    ShiftTables st{};
    uint32_t basis[32];
    static const unsigned char kZeros[kBlock] = {};
    for (int bit = 0; bit < 32; ++bit) {
      basis[bit] = static_cast<uint32_t>(UpdateWords(uint64_t{1} << bit, kZeros, kBlock / 8));
    }
    for (int k = 0; k < 4; ++k) {
      for (uint32_t b = 0; b < 256; ++b) {
        uint32_t v = 0;
        for (int i = 0; i < 8; ++i) {
          if (b & (1u << i)) v ^= basis[8 * k + i];
        }
        st.t[k][b] = v;
      }
    }
    return st;
  }();
  return tables;
}

uint32_t Shift(const ShiftTables& st, uint32_t c) {
  return st.t[0][c & 0xff] ^ st.t[1][(c >> 8) & 0xff] ^ st.t[2][(c >> 16) & 0xff] ^
         st.t[3][c >> 24];
}

__attribute__((target("sse4.2"))) uint32_t UpdateHardware(uint32_t crc, const unsigned char* p,
                                                          size_t n) {
  uint64_t c = crc;
  if (n >= 3 * kBlock) {
    const ShiftTables& st = Tables();
    while (n >= 3 * kBlock) {
      uint64_t c1 = 0;
      uint64_t c2 = 0;
      for (size_t i = 0; i < kBlock; i += 8) {
        uint64_t w0, w1, w2;
        std::memcpy(&w0, p + i, 8);
        std::memcpy(&w1, p + kBlock + i, 8);
        std::memcpy(&w2, p + 2 * kBlock + i, 8);
        c = _mm_crc32_u64(c, w0);
        c1 = _mm_crc32_u64(c1, w1);
        c2 = _mm_crc32_u64(c2, w2);
      }
      c = Shift(st, Shift(st, static_cast<uint32_t>(c)) ^ static_cast<uint32_t>(c1)) ^
          static_cast<uint32_t>(c2);
      p += 3 * kBlock;
      n -= 3 * kBlock;
    }
  }
  c = UpdateWords(c, p, n / 8);
  p += n / 8 * 8;
  n %= 8;
  uint32_t c32 = static_cast<uint32_t>(c);
  while (n-- > 0) c32 = _mm_crc32_u8(c32, *p++);
  return c32;
}

// One CPUID at first use. Not __builtin_cpu_supports: that links libgcc's CPU-model
// constructor, which probes a dozen CPUID leaves at every process start (each a VM exit on
// a guest host: ~7 µs apiece on the development machine).
bool HaveSse42() {
  static const bool have = [] {
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_SSE4_2) != 0;
  }();
  return have;
}
#endif

}  // namespace

uint32_t Crc32cPortable(const void* data, size_t length) {
  return ~UpdatePortable(~0u, static_cast<const unsigned char*>(data), length);
}

uint32_t Crc32c(const void* data, size_t length) {
#if defined(__x86_64__)
  if (HaveSse42()) return ~UpdateHardware(~0u, static_cast<const unsigned char*>(data), length);
#endif
  return Crc32cPortable(data, length);
}

}  // namespace mmuvisor::vmm
