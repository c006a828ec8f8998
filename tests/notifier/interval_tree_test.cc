// Unit tests of notifier/interval_tree.h on its own: overlap queries against a brute-force
// list, the reported order, splits and merges at the capacity boundaries, the cursor, and
// 10^5 entries. Every randomised test uses a fixed seed and prints it on failure.
#include "notifier/interval_tree.h"

#include <algorithm>
#include <cstdint>
#include <memory>
#include <random>
#include <set>
#include <vector>

#include "gtest/gtest.h"
#include "notifier/interval_subscription.h"

namespace mmuvisor::notifier {
namespace {

// The tree only uses a subscription's address (as a key tie-break and as the value).
class Dummy : public IntervalSubscription {
 public:
  bool Invalidate(const Range&, uint64_t) override { return true; }
};

struct Entry {
  uint64_t start = 0;
  uint64_t last = 0;
  IntervalSubscription* sub = nullptr;
};

bool KeyLess(const Entry& a, const Entry& b) {
  if (a.start != b.start) return a.start < b.start;
  return reinterpret_cast<uintptr_t>(a.sub) < reinterpret_cast<uintptr_t>(b.sub);
}

// A tree and the brute-force list it must agree with.
class Fixture {
 public:
  explicit Fixture(size_t capacity) : pool_(capacity) {
    for (Dummy& d : pool_) free_.push_back(&d);
  }
  ~Fixture() {
    for (const Entry& e : live_) tree.Remove(e.start, e.sub);
  }

  void Insert(uint64_t start, uint64_t last) {
    ASSERT_FALSE(free_.empty());
    Entry e{start, last, free_.back()};
    free_.pop_back();
    tree.Insert(e.start, e.last, e.sub);
    live_.push_back(e);
  }
  // Removes the live entry with index `i` (in insertion-order bookkeeping).
  void RemoveAt(size_t i) {
    const Entry e = live_[i];
    tree.Remove(e.start, e.sub);
    live_[i] = live_.back();
    live_.pop_back();
    free_.push_back(static_cast<Dummy*>(e.sub));
  }
  // Removes the live entry that starts at `start` (the first found).
  void RemoveStart(uint64_t start) {
    for (size_t i = 0; i < live_.size(); ++i) {
      if (live_[i].start == start) return RemoveAt(i);
    }
    FAIL() << "no live entry starts at " << start;
  }
  size_t live() const { return live_.size(); }

  // The tree's answer for [start, last] must be exactly the brute-force overlaps, in key
  // order; AnyOverlap must agree.
  void ExpectQuery(uint64_t start, uint64_t last) {
    std::vector<Entry> want;
    for (const Entry& e : live_) {
      if (e.start <= last && e.last >= start) want.push_back(e);
    }
    std::sort(want.begin(), want.end(), KeyLess);
    std::vector<IntervalSubscription*> got, want_subs;
    tree.ForEachOverlap(start, last, [&](IntervalSubscription* s) { got.push_back(s); });
    for (const Entry& e : want) want_subs.push_back(e.sub);
    ASSERT_EQ(got, want_subs) << "query [" << start << ", " << last << "]";
    ASSERT_EQ(tree.AnyOverlap(start, last), !want.empty())
        << "query [" << start << ", " << last << "]";
  }
  void ExpectSound() const {
    ASSERT_EQ(tree.size(), live_.size());
    ASSERT_TRUE(tree.CheckInvariants()) << "size " << tree.size() << " height " << tree.height();
  }

  IntervalTree tree;

 private:
  std::vector<Dummy> pool_;
  std::vector<Dummy*> free_;
  std::vector<Entry> live_;
};

// Random inserts, removes and queries, checked after every step against the list.
void RandomOps(uint64_t seed, int steps, uint64_t span, uint64_t max_len, int insert_pct) {
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  Fixture f(static_cast<size_t>(steps) + 1);
  for (int step = 0; step < steps; ++step) {
    const int op = static_cast<int>(rng() % 100);
    if (op < insert_pct || f.live() == 0) {
      const uint64_t start = rng() % span;
      const uint64_t len = rng() % 8 == 0 ? rng() % (span / 4 + 1) : rng() % max_len;
      ASSERT_NO_FATAL_FAILURE(f.Insert(start, start + len)) << "step " << step;
    } else {
      f.RemoveAt(rng() % f.live());
    }
    if (step % 7 == 0) {
      ASSERT_NO_FATAL_FAILURE(f.ExpectSound()) << "step " << step;
    }
    const uint64_t qs = rng() % span;
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(qs, qs + rng() % (2 * max_len)))
        << "step " << step;
  }
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  // Drain: every remove path, down to the empty tree.
  while (f.live() > 0) {
    f.RemoveAt(rng() % f.live());
    if (f.live() % 5 == 0) {
      ASSERT_NO_FATAL_FAILURE(f.ExpectSound()) << "live " << f.live();
      const uint64_t qs = rng() % span;
      ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(qs, qs + rng() % (2 * max_len)));
    }
  }
  EXPECT_TRUE(f.tree.empty());
  EXPECT_EQ(f.tree.leaf_count(), 0u);
  EXPECT_EQ(f.tree.inner_count(), 0u);
  EXPECT_FALSE(f.tree.AnyOverlap(0, UINT64_MAX));
}

TEST(IntervalTreeTest, RandomOpsMatchBruteForceShortIntervals) {
  for (uint64_t seed : {1u, 2u, 3u}) RandomOps(seed, 3000, 100000, 300, 60);
}

TEST(IntervalTreeTest, RandomOpsMatchBruteForceDenseLongIntervals) {
  // Few distinct starts (many equal keys but for the address) and long intervals.
  for (uint64_t seed : {11u, 12u}) RandomOps(seed, 3000, 500, 200, 55);
}

TEST(IntervalTreeTest, RandomOpsMatchBruteForceGrowAndShrink) {
  // Insert-heavy then, in the drain, remove-only: exercises splits, then merges/borrows
  // at every level.
  for (uint64_t seed : {21u, 22u}) RandomOps(seed, 4000, 1u << 30, 1u << 16, 85);
}

// Exactly at the split boundaries: a full leaf, one more (split), a full inner node of
// leaves, one more (a new root); then back down through merges to the empty tree.
TEST(IntervalTreeTest, SplitsAndMergesAtCapacityBoundaries) {
  constexpr uint32_t kL = IntervalTree::kLeafCapacity;
  constexpr uint32_t kF = IntervalTree::kFanout;
  for (bool ascending : {true, false}) {
    SCOPED_TRACE(ascending ? "ascending" : "descending");
    const size_t n = static_cast<size_t>(kL) * kF + 1;
    Fixture f(n);
    auto key = [&](size_t i) { return ascending ? i * 16 : (n - i) * 16; };
    for (size_t i = 0; i < n; ++i) {
      f.Insert(key(i), key(i) + 20);  // each overlaps its neighbour
      ASSERT_NO_FATAL_FAILURE(f.ExpectSound()) << "insert " << i;
      if (i + 1 == kL) {
        EXPECT_EQ(f.tree.leaf_count(), 1u);
        EXPECT_EQ(f.tree.height(), 0);
      }
      if (i + 1 == kL + 1) {
        EXPECT_EQ(f.tree.leaf_count(), 2u);
        EXPECT_EQ(f.tree.height(), 1);
      }
      ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(key(i), key(i)));
    }
    // Ascending appends keep leaves full: kF full leaves and one more, two levels.
    if (ascending) {
      EXPECT_EQ(f.tree.leaf_count(), static_cast<size_t>(kF) + 1);
      EXPECT_EQ(f.tree.height(), 2);
    }
    for (uint64_t q = 0; q < n * 16 + 40; q += 37) {
      ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(q, q + 5));
    }
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(0, UINT64_MAX));
    // Remove from the front: the leftmost leaf underflows at every step past half.
    while (f.live() > 0) {
      f.RemoveAt(0);
      ASSERT_NO_FATAL_FAILURE(f.ExpectSound()) << "live " << f.live();
    }
    EXPECT_EQ(f.tree.height(), 0);
    EXPECT_TRUE(f.tree.empty());
  }
}

// The same key order under duplicate starts, and intervals reaching UINT64_MAX.
TEST(IntervalTreeTest, EqualStartsAndExtremeBounds) {
  Fixture f(300);
  for (int i = 0; i < 100; ++i) f.Insert(5000, 5000 + static_cast<uint64_t>(i));
  for (int i = 0; i < 100; ++i) f.Insert(UINT64_MAX - static_cast<uint64_t>(i), UINT64_MAX);
  for (int i = 0; i < 50; ++i) f.Insert(0, static_cast<uint64_t>(i));
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  const std::vector<uint64_t> queries = {0,    1,    49,   50,   4999, 5000, 5050, 5099, 5100,
                                         UINT64_MAX - 100, UINT64_MAX - 99, UINT64_MAX};
  for (uint64_t q : queries) {
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(q, q));
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(q, UINT64_MAX));
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(0, q));
  }
}

// The cursor reports the interval it stands on, and a spent cursor stays spent.
TEST(IntervalTreeTest, CursorWalksOverlapsInKeyOrder) {
  Fixture f(8);
  f.Insert(100, 199);
  f.Insert(150, 160);
  f.Insert(300, 399);
  f.Insert(500, 599);
  IntervalTree::Cursor c;
  ASSERT_TRUE(f.tree.First(155, 310, &c));
  EXPECT_EQ(c.start(), 100u);
  EXPECT_EQ(c.last(), 199u);
  ASSERT_TRUE(f.tree.Next(&c));
  EXPECT_EQ(c.start(), 150u);
  ASSERT_TRUE(f.tree.Next(&c));
  EXPECT_EQ(c.start(), 300u);
  EXPECT_FALSE(f.tree.Next(&c));
  EXPECT_FALSE(f.tree.First(200, 299, &c));
  EXPECT_FALSE(f.tree.First(600, 700, &c));
}

// Next ends a leaf at its first empty slot (a null subscription), not at its count: a
// walk that leaves a partly emptied leaf must go on into the next one, and a walk that
// ends inside one must report nothing past its last entry.
TEST(IntervalTreeTest, WalksCrossPartlyEmptiedLeaves) {
  constexpr uint32_t kL = IntervalTree::kLeafCapacity;
  const size_t n = static_cast<size_t>(kL) * 6;
  Fixture f(n);
  for (size_t i = 0; i < n; ++i) f.Insert(i * 100, i * 100 + 150);  // overlaps the next
  ASSERT_EQ(f.tree.leaf_count(), 6u);
  // Empty the last quarter of leaves 1 and 3 (too few removals to merge them).
  for (uint64_t leaf : {1u, 3u}) {
    for (uint64_t k = 0; k < kL / 4; ++k) f.RemoveStart((leaf * kL + kL - 1 - k) * 100);
  }
  ASSERT_EQ(f.tree.leaf_count(), 6u);
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  for (uint64_t q = 0; q < n * 100 + 200; q += 50) {
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(q, q));
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(q, q + kL * 100));
  }
  ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(0, UINT64_MAX));
}

// 10^5 intervals laid out as the benchmark does (ascending, 64 KiB apart): shallow
// tree, single-hit queries, then random removal of half and a full check.
TEST(IntervalTreeTest, HundredThousandEntries) {
  constexpr size_t kN = 100000;
  Fixture f(kN);
  for (size_t i = 0; i < kN; ++i) {
    const uint64_t s = static_cast<uint64_t>(i) << 16;
    f.Insert(s, s + 4095);
  }
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  EXPECT_LE(f.tree.height(), 3);
  // Ascending appends fill every leaf.
  EXPECT_EQ(f.tree.leaf_count(),
            (kN + IntervalTree::kLeafCapacity - 1) / IntervalTree::kLeafCapacity);
  for (size_t i = 0; i < kN; i += 7919 % kN) {
    IntervalTree::Cursor c;
    const uint64_t s = static_cast<uint64_t>(i) << 16;
    ASSERT_TRUE(f.tree.First(s, s + 4095, &c)) << i;
    EXPECT_EQ(c.start(), s);
    EXPECT_FALSE(f.tree.Next(&c));
  }
  const uint64_t seed = 31;
  SCOPED_TRACE(::testing::Message() << "seed " << seed);
  std::mt19937_64 rng(seed);
  for (size_t i = 0; i < kN / 2; ++i) f.RemoveAt(rng() % f.live());
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  for (int q = 0; q < 200; ++q) {
    const uint64_t s = rng() % (static_cast<uint64_t>(kN) << 16);
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(s, s + rng() % (1u << 20)));
  }
}

// The leaf hint (see interval_tree.h) is only prefetched: hints learned on one shape of
// the tree, then left naming freed or wrong leaves (the leaf count stays within the
// range that keeps the table), change no answer.
TEST(IntervalTreeTest, StaleLeafHintsChangeNoAnswer) {
  constexpr size_t kN = 4096;
  Fixture f(2 * kN);
  for (size_t i = 0; i < kN; ++i) {
    const uint64_t s = static_cast<uint64_t>(i) << 16;
    f.Insert(s, s + 4095);
  }
  for (size_t i = 0; i < kN; ++i) {
    const uint64_t s = static_cast<uint64_t>(i) << 16;
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(s, s + 4095));
  }
  const size_t leaves = f.tree.leaf_count();
  // The first quarter goes (its leaves are freed), and as many intervals come in between
  // those of the third quarter (its leaves split): the leaf count stays within the range
  // that keeps the table, so its hints now name freed leaves and leaves holding half of
  // what they held.
  for (size_t i = 0; i < kN / 4; ++i) f.RemoveStart(static_cast<uint64_t>(i) << 16);
  for (size_t i = kN / 2; i < 3 * kN / 4; ++i) {
    const uint64_t s = (static_cast<uint64_t>(i) << 16) + 0x8000;
    f.Insert(s, s + 4095);
  }
  ASSERT_NO_FATAL_FAILURE(f.ExpectSound());
  EXPECT_GT(2 * f.tree.leaf_count(), leaves);
  EXPECT_LT(f.tree.leaf_count(), 2 * leaves);
  for (size_t i = 0; i < kN; ++i) {
    const uint64_t s = static_cast<uint64_t>(i) << 16;
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(s, s + 4095));
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(s + 0x8000, s + 0x8000 + 4095));
    ASSERT_NO_FATAL_FAILURE(f.ExpectQuery(s, s + 0xffff));
  }
}

}  // namespace
}  // namespace mmuvisor::notifier
