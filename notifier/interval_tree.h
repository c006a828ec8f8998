// notifier/interval_tree.h: the interval tree behind interval subscriptions (Linux:
// interval_tree on an rb_root_cached), laid out for the cache.
//
// Intervals are closed, [start, last], as in Linux (a half-open Range [s, e) queries
// [s, e - 1]); the value of each is the IntervalSubscription it belongs to.
//
// Layout: entries sit in leaves of up to kLeafCapacity, sorted by (start, subscription
// address) as parallel arrays (start[], last[], sub[]); the leaves' one-line headers, kept
// in a contiguous pool, form a treap keyed by their first entry, each header carrying the
// largest `last` in its leaf and in each child subtree. A descent touches only headers
// (one line per leaf, ~n/32..n/16 of them: ~200 KiB for 10^5 intervals) and then the
// entries of the leaves it reports from, instead of one cold ~150-byte subscription per
// level as when nodes were embedded in subscriptions.
//
// Cost: expected depth O(log n). A query enters a subtree only if it holds an overlap or
// lies on the path to the first leaf starting after `last`: O(log n) expected with no
// overlap; with k overlaps the union of their root paths, O(log n + k) when they are
// adjacent in start order (the common case) and O(log n + k log(n / k)) at worst, plus a
// scan of at most kLeafCapacity entries per leaf visited. Insert and Remove are
// O(log n + kLeafCapacity) expected.
//
// Invariants: every leaf holds 1..kLeafCapacity entries; keys increase across the in-order
// leaf sequence; first_start == start[0]; leaf_last / left_last / right_last are exact
// maxima.
// Not thread-safe by itself. The hub mutates it only under its interval lock and only
// while no invalidation walks it (walks happen while invalidate_seq is odd, and mutations
// are deferred then), so walks may run without the lock.
#ifndef MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
#define MMUVISOR_NOTIFIER_INTERVAL_TREE_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

namespace mmuvisor::notifier {

class IntervalSubscription;

class IntervalTree {
 public:
  static constexpr uint32_t kLeafCapacity = 32;

  IntervalTree() = default;
  ~IntervalTree();
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;

  // REQUIRES: start <= last; (start, sub) not in the tree.
  void Insert(uint64_t start, uint64_t last, IntervalSubscription* sub);
  // REQUIRES: (start, sub) in the tree.
  void Remove(uint64_t start, IntervalSubscription* sub);
  bool empty() const { return root_ == nullptr; }
  size_t size() const { return size_; }
  size_t leaf_count() const { return leaves_; }

  // True if any interval meets [start, last]. O(log n + kLeafCapacity).
  bool AnyOverlap(uint64_t start, uint64_t last) const;
  // Calls fn(IntervalSubscription*) for every interval meeting [start, last], in
  // (start, address) order. fn must not modify the tree.
  template <typename Fn>
  void ForEachOverlap(uint64_t start, uint64_t last, Fn&& fn) const {
    if (root_ != nullptr) Visit(root_, start, last, fn);
  }

  // Entries [0, count) of a leaf, sorted by (start, sub). Allocated apart from the header.
  struct Entries {
    uint64_t start[kLeafCapacity];
    uint64_t last[kLeafCapacity];
    IntervalSubscription* sub[kLeafCapacity];
  };
  // Treap header: one cache line, allocated from a contiguous pool (headers_), so a
  // descent walks a compact array (about n/16..n/32 lines) rather than lines spread over
  // every leaf's entries. The children's maxima sit here, so deciding whether to enter
  // a child does not load the child.
  struct alignas(64) Leaf {
    Leaf* left = nullptr;       // also the free-list link of a pooled header
    Leaf* right = nullptr;
    uint64_t left_last = 0;    // max last in the left subtree (0 if none)
    uint64_t right_last = 0;   // max last in the right subtree (0 if none)
    uint64_t leaf_last = 0;    // max e->last[] in this leaf
    uint64_t first_start = 0;  // e->start[0]
    Entries* e = nullptr;
    uint32_t count = 0;
  };

 private:
  // REQUIRES: n != nullptr.
  template <typename Fn>
  static void Visit(const Leaf* n, uint64_t start, uint64_t last, Fn& fn) {
    for (;;) {
      if (n->left != nullptr && n->left_last >= start) Visit(n->left, start, last, fn);
      if (n->first_start > last) return;  // this leaf and the right subtree start later
      if (n->leaf_last >= start) {
        const Entries& e = *n->e;
        for (uint32_t i = 0; i < n->count && e.start[i] <= last; ++i) {
          if (e.last[i] >= start) fn(e.sub[i]);
        }
      }
      if (n->right == nullptr || n->right_last < start) return;
      n = n->right;  // tail position: iterate instead of recursing
    }
  }

  Leaf* FindLeaf(uint64_t start, const IntervalSubscription* sub) const;
  Leaf* NewLeaf();
  void FreeLeaf(Leaf* leaf);

  static constexpr size_t kPoolChunk = 256;  // headers per pool chunk (16 KiB)

  Leaf* root_ = nullptr;
  size_t size_ = 0;
  size_t leaves_ = 0;
  std::vector<std::unique_ptr<Leaf[]>> headers_;  // the pool
  Leaf* free_headers_ = nullptr;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
