// notifier/interval_tree.h: the interval tree behind interval subscriptions (Linux:
// interval_tree on an rb_root_cached).
//
// An intrusive treap keyed by (start, node address), each node augmented with the largest
// `last` in its subtree, so an overlap query costs O(log n + k) expected. Intervals are
// closed, [start, last], as in Linux (a half-open Range [s, e) queries [s, e - 1]).
//
// Not thread-safe by itself. The hub mutates it only under its interval lock and only while
// no invalidation walks it (walks happen while invalidate_seq is odd, and mutations are
// deferred then), so walks may run without the lock.
#ifndef MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
#define MMUVISOR_NOTIFIER_INTERVAL_TREE_H_

#include <cstddef>
#include <cstdint>

namespace mmuvisor::notifier {

class IntervalSubscription;

struct IntervalNode {
  uint64_t start = 0;
  uint64_t last = 0;          // inclusive
  uint64_t subtree_last = 0;  // max `last` in this subtree
  uint64_t priority = 0;      // treap heap key (hash of the address)
  IntervalNode* left = nullptr;
  IntervalNode* right = nullptr;
  bool in_tree = false;
  IntervalSubscription* sub = nullptr;
};

class IntervalTree {
 public:
  IntervalTree() = default;
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;

  // REQUIRES: !node->in_tree, node->start <= node->last.
  void Insert(IntervalNode* node);
  // REQUIRES: node->in_tree.
  void Remove(IntervalNode* node);
  bool empty() const { return root_ == nullptr; }
  size_t size() const { return size_; }

  // True if any interval meets [start, last]. O(log n).
  bool AnyOverlap(uint64_t start, uint64_t last) const;
  // Calls fn(node) for every interval meeting [start, last], in start order.
  // O(log n + k). fn must not modify the tree.
  template <typename Fn>
  void ForEachOverlap(uint64_t start, uint64_t last, Fn&& fn) const {
    Visit(root_, start, last, fn);
  }

 private:
  template <typename Fn>
  static void Visit(IntervalNode* n, uint64_t start, uint64_t last, Fn& fn) {
    while (n != nullptr && n->subtree_last >= start) {
      Visit(n->left, start, last, fn);
      if (n->start > last) return;  // right subtree starts even later
      if (n->last >= start) fn(n);
      n = n->right;  // tail position: iterate instead of recursing
    }
  }

  IntervalNode* root_ = nullptr;
  size_t size_ = 0;
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
