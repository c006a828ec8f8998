#include "vmm/paging/latency_histogram.h"

#include <algorithm>
#include <bit>

#include "absl/strings/str_format.h"

namespace mmuvisor::vmm {
namespace {

int BucketOf(uint64_t ns) { return ns == 0 ? 0 : 63 - std::countl_zero(ns); }

}  // namespace

// All counters are statistics only: relaxed, no ordering partner.
void LatencyHistogram::Record(uint64_t ns) {
  buckets_[BucketOf(ns)].fetch_add(1, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_ns_.fetch_add(ns, std::memory_order_relaxed);
  uint64_t seen = max_ns_.load(std::memory_order_relaxed);
  while (ns > seen && !max_ns_.compare_exchange_weak(seen, ns, std::memory_order_relaxed)) {
  }
}

LatencyHistogram::Snapshot LatencyHistogram::TakeSnapshot() const {
  Snapshot s;
  for (int i = 0; i < kBuckets; ++i) {
    s.buckets[i] = buckets_[i].load(std::memory_order_relaxed);
    s.count += s.buckets[i];
  }
  s.sum_ns = sum_ns_.load(std::memory_order_relaxed);
  s.max_ns = max_ns_.load(std::memory_order_relaxed);
  return s;
}

uint64_t LatencyHistogram::Snapshot::PercentileNs(double q) const {
  if (count == 0) return 0;
  q = std::clamp(q, 0.0, 1.0);
  // Rank of the wanted sample, 1-based.
  const uint64_t rank =
      std::max<uint64_t>(1, static_cast<uint64_t>(q * static_cast<double>(count) + 0.5));
  uint64_t below = 0;
  for (int i = 0; i < kBuckets; ++i) {
    if (buckets[i] == 0) continue;
    if (below + buckets[i] >= rank) {
      const double lo = i == 0 ? 0.0 : static_cast<double>(uint64_t{1} << i);
      const double hi =
          i >= 63 ? static_cast<double>(max_ns) : static_cast<double>(uint64_t{1} << (i + 1));
      const double frac = static_cast<double>(rank - below) / static_cast<double>(buckets[i]);
      const double value = lo + frac * (hi - lo);
      // Compare in double first: near 2^64 the cast itself would overflow.
      if (value >= static_cast<double>(max_ns)) return max_ns;
      return static_cast<uint64_t>(value);
    }
    below += buckets[i];
  }
  return max_ns;
}

std::string LatencyHistogram::Snapshot::Summary() const {
  return absl::StrFormat("n=%d p50=%dns p90=%dns p99=%dns max=%dns", count, PercentileNs(0.5),
                         PercentileNs(0.9), PercentileNs(0.99), max_ns);
}

}  // namespace mmuvisor::vmm
