// LatencyHistogram: a lock-free log2 histogram of durations in nanoseconds.
//
// Bucket i holds samples in [2^i, 2^(i+1)) ns (bucket 0 also holds 0). Record() is wait-free
// (relaxed atomic adds) and may be called from any thread, including fault hot paths.
// Snapshot() may run concurrently with Record(): it returns a consistent-enough view for
// statistics (each bucket is read atomically; the set is not a single atomic cut).
// Percentiles are interpolated linearly inside the bucket, so they are exact to within a
// factor of two and never exceed the recorded maximum.
#ifndef MMUVISOR_VMM_PAGING_LATENCY_HISTOGRAM_H_
#define MMUVISOR_VMM_PAGING_LATENCY_HISTOGRAM_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <string>

namespace mmuvisor::vmm {

class LatencyHistogram {
 public:
  static constexpr int kBuckets = 64;

  struct Snapshot {
    std::array<uint64_t, kBuckets> buckets{};
    uint64_t count = 0;
    uint64_t sum_ns = 0;
    uint64_t max_ns = 0;

    // q in [0, 1]; 0 when empty.
    uint64_t PercentileNs(double q) const;
    uint64_t MeanNs() const { return count == 0 ? 0 : sum_ns / count; }
    // "n=… p50=…ns p90=…ns p99=…ns max=…ns" for logs and reports.
    std::string Summary() const;
  };

  LatencyHistogram() = default;
  LatencyHistogram(const LatencyHistogram&) = delete;
  LatencyHistogram& operator=(const LatencyHistogram&) = delete;

  void Record(uint64_t ns);
  Snapshot TakeSnapshot() const;

 private:
  std::array<std::atomic<uint64_t>, kBuckets> buckets_{};
  std::atomic<uint64_t> count_{0};
  std::atomic<uint64_t> sum_ns_{0};
  std::atomic<uint64_t> max_ns_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_PAGING_LATENCY_HISTOGRAM_H_
