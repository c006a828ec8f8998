// notifier/interval_tree.h: the interval tree behind interval subscriptions (Linux:
// interval_tree on an rb_root_cached), laid out for the cache.
//
// Intervals are closed, [start, last], as in Linux (a half-open Range [s, e) queries
// [s, e - 1]); the value of each is the IntervalSubscription it belongs to.
//
// Layout: entries sit in leaves of up to kLeafCapacity, sorted by (start, subscription
// address) as parallel arrays (start[], last[], sub[]); the leaves form a treap keyed by
// their first entry, each leaf augmented with the largest `last` in it and in each child
// subtree.
// A query touches the treap headers (one line per leaf, ~n/16..n/32 of them: for 10^5
// intervals about 200 KiB, which stays in L2) and then the few entry lines of the leaves
// it reports from, instead of one cold ~150-byte subscription per tree level.
//
// Cost: expected depth O(log n). An overlap query visits a leaf only if it holds an
// overlapping entry or lies on one of the two boundary paths, so it costs
// O(log n + k * kLeafCapacity) expected for k overlaps, O(log n) when there are none.
// Insert and Remove are O(log n + kLeafCapacity) expected.
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

  struct alignas(64) Leaf {
    // Treap header: the only line a descent touches (the children's maxima sit here, so
    // deciding whether to enter a child does not load the child).
    Leaf* left = nullptr;
    Leaf* right = nullptr;
    uint64_t left_last = 0;    // max last in the left subtree (0 if none)
    uint64_t right_last = 0;   // max last in the right subtree (0 if none)
    uint64_t leaf_last = 0;    // max last[] in this leaf
    uint64_t first_start = 0;  // start[0]
    uint64_t priority = 0;     // heap key (hash of the address)
    uint32_t count = 0;
    // Entries [0, count), sorted by (start, sub).
    alignas(64) uint64_t start[kLeafCapacity];
    uint64_t last[kLeafCapacity];
    IntervalSubscription* sub[kLeafCapacity];
  };

 private:
  // REQUIRES: n != nullptr.
  template <typename Fn>
  static void Visit(const Leaf* n, uint64_t start, uint64_t last, Fn& fn) {
    for (;;) {
      if (n->left != nullptr && n->left_last >= start) Visit(n->left, start, last, fn);
      if (n->first_start > last) return;  // this leaf and the right subtree start later
      if (n->leaf_last >= start) {
        for (uint32_t i = 0; i < n->count && n->start[i] <= last; ++i) {
          if (n->last[i] >= start) fn(n->sub[i]);
        }
      }
      if (n->right == nullptr || n->right_last < start) return;
      n = n->right;  // tail position: iterate instead of recursing
    }
  }

  Leaf* FindLeaf(uint64_t start, const IntervalSubscription* sub) const;

  Leaf* root_ = nullptr;
  size_t size_ = 0;
  size_t leaves_ = 0;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
