// BM_Crc32cPage: Crc32c (vmm/paging/crc32c.h: three interleaved crc32 streams per 4080-byte
// run) over 256 distinct 4 KiB pages (1 MiB, L2-resident on the development machine),
// against one dependent chain of the same instruction over the same pages, in the same
// iterations: the swap store's per-page checksum before and after the three streams.
// Counters: ns_per_page, baseline_ns_per_page, x_baseline (lower is better), and
// portable_ns_per_page (the table fallback, once per run). Every result is checked against
// the portable table, so a wrong checksum stops the benchmark instead of timing it.
#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstring>
#include <vector>

#include "vmm/paging/crc32c.h"

#if defined(__x86_64__)
#include <nmmintrin.h>
#endif

namespace mmuvisor::vmm {
namespace {

constexpr size_t kPage = 4096;
constexpr size_t kPages = 256;

#if defined(__x86_64__)
__attribute__((target("sse4.2"))) uint32_t OneChain(const unsigned char* p, size_t n) {
  uint64_t c = 0xFFFFFFFFu;
  for (; n >= 8; p += 8, n -= 8) {
    uint64_t w;
    std::memcpy(&w, p, sizeof(w));
    c = _mm_crc32_u64(c, w);
  }
  return ~static_cast<uint32_t>(c);  // kPage is a multiple of 8: no tail
}
#endif

template <typename F>
double NsPerPage(const std::vector<unsigned char>& buf, F crc, uint32_t* sink) {
  const auto t0 = std::chrono::steady_clock::now();
  for (size_t i = 0; i < kPages; ++i) *sink ^= crc(buf.data() + i * kPage, kPage);
  const auto t1 = std::chrono::steady_clock::now();
  return std::chrono::duration<double, std::nano>(t1 - t0).count() / kPages;
}

void BM_Crc32cPage(benchmark::State& state) {
#if !defined(__x86_64__)
  state.SkipWithError("x86-64 only (the baseline is the SSE4.2 instruction)");
  return;
#else
  if (!__builtin_cpu_supports("sse4.2")) {
    state.SkipWithError("needs SSE4.2 (Crc32c uses the portable table here)");
    return;
  }
  std::vector<unsigned char> buf(kPage * kPages);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (unsigned char& b : buf) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<unsigned char>(x);
  }
  std::vector<uint32_t> want(kPages);
  double portable_ns = 0;
  {
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t i = 0; i < kPages; ++i) want[i] = Crc32cPortable(buf.data() + i * kPage, kPage);
    portable_ns = std::chrono::duration<double, std::nano>(std::chrono::steady_clock::now() - t0)
                      .count() / kPages;
  }
  for (size_t i = 0; i < kPages; ++i) {
    const unsigned char* p = buf.data() + i * kPage;
    if (Crc32c(p, kPage) != want[i] || OneChain(p, kPage) != want[i]) {
      state.SkipWithError("a checksum differs from the portable table's");
      return;
    }
  }
  uint32_t sink = 0;
  double ours = 0;
  double base = 0;
  for (auto _ : state) {
    // Alternating order, so neither pays the other's cache misses every time.
    if (state.iterations() % 2 == 0) {
      ours += NsPerPage(buf, [](const unsigned char* p, size_t n) { return Crc32c(p, n); }, &sink);
      base += NsPerPage(buf, OneChain, &sink);
    } else {
      base += NsPerPage(buf, OneChain, &sink);
      ours += NsPerPage(buf, [](const unsigned char* p, size_t n) { return Crc32c(p, n); }, &sink);
    }
  }
  benchmark::DoNotOptimize(sink);
  const auto iters = static_cast<double>(state.iterations());
  state.counters["ns_per_page"] = ours / iters;
  state.counters["baseline_ns_per_page"] = base / iters;
  state.counters["x_baseline"] = ours / base;
  state.counters["portable_ns_per_page"] = portable_ns;
#endif
}
BENCHMARK(BM_Crc32cPage);

}  // namespace
}  // namespace mmuvisor::vmm
