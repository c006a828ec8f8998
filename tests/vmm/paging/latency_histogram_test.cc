#include "vmm/paging/latency_histogram.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

TEST(LatencyHistogram, EmptyReportsZero) {
  LatencyHistogram h;
  const auto s = h.TakeSnapshot();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.PercentileNs(0.5), 0u);
  EXPECT_EQ(s.PercentileNs(0.99), 0u);
}

TEST(LatencyHistogram, PercentilesFallInTheRightLog2Bucket) {
  LatencyHistogram h;
  for (int i = 0; i < 90; ++i) h.Record(1000);  // bucket [512, 1024)
  for (int i = 0; i < 9; ++i) h.Record(20000);  // bucket [16384, 32768)
  h.Record(1000000);                            // bucket [2^19, 2^20)
  const auto s = h.TakeSnapshot();
  EXPECT_EQ(s.count, 100u);
  EXPECT_EQ(s.max_ns, 1000000u);
  EXPECT_GE(s.PercentileNs(0.5), 512u);
  EXPECT_LT(s.PercentileNs(0.5), 1024u);
  EXPECT_GE(s.PercentileNs(0.95), 16384u);
  EXPECT_LT(s.PercentileNs(0.95), 32768u);
  EXPECT_GE(s.PercentileNs(1.0), 524288u);
  EXPECT_LE(s.PercentileNs(1.0), 1000000u);
  EXPECT_EQ(s.MeanNs(), (90u * 1000 + 9u * 20000 + 1000000) / 100);
  EXPECT_THAT(s.Summary(), ::testing::HasSubstr("n=100"));
}

TEST(LatencyHistogram, ZeroAndHugeSamplesAreKept) {
  LatencyHistogram h;
  h.Record(0);
  h.Record(~uint64_t{0});
  const auto s = h.TakeSnapshot();
  EXPECT_EQ(s.count, 2u);
  EXPECT_EQ(s.buckets[0], 1u);
  EXPECT_EQ(s.buckets[63], 1u);
  EXPECT_EQ(s.PercentileNs(1.0), ~uint64_t{0});
}

}  // namespace
}  // namespace mmuvisor::vmm
