// notifier/interval_tree.h: the interval tree behind interval subscriptions (Linux:
// interval_tree on an rb_root_cached), laid out as a B+-tree for the cache.
//
// Intervals are closed, [start, last], as in Linux (a half-open Range [s, e) queries
// [s, e - 1]); the value of each is the IntervalSubscription it belongs to. Keys are
// (start, subscription address), unique; overlaps are reported in ascending key order,
// i.e. by start, ties by address (deterministic for a given set of subscriptions).
//
// Layout: leaves hold up to kLeafCapacity entries sorted by key as parallel arrays
// (prefix_last[], start[], sub[], last[]); inner nodes hold up to kFanout children and,
// per child, its first key, its max `last` and the prefix maximum of `last` over children
// 0..i. All leaves sit at the same depth, height() inner levels below the root: for 10^5
// intervals 2 inner levels (~50 nodes, which stay cached) above ~3 100 leaves, so a
// scattered query misses on one leaf and then on the subscription, against ~20 dependent
// header loads for the treap of leaves this replaced.
//
// Query (First): the first overlap in key order is the first entry whose last reaches
// `start`, if that entry starts at or before `last` (every earlier entry ends before
// `start`; every later one starts no earlier). The prefix maxima are non-decreasing, so
// "the first child (or entry) reaching `start`" is a branch-free count of prefixes below
// `start`: First is one root-to-leaf path, O(log n). Next climbs to the nearest ancestor
// with a later child that both reaches `start` and starts by `last`, and descends its
// leftmost such path, skipping subtrees that hold no overlap: k overlaps cost
// O(log n + k) when they are adjacent in key order (the common case),
// O(log n + k log(n / k)) at worst.
//
// Leaf hint: a small direct-mapped table remembers, per bucket of query starts (half a
// leaf to one leaf wide, a power of two), the leaf that answered the last
// query starting there. First prefetches that leaf's lines before it descends, so the
// leaf's miss (the first cold node of a scattered query) overlaps the descent through
// the cached inner nodes instead of following it. The hint is only ever prefetched,
// never read: a wrong or stale one (a leaf since split, merged or freed) costs the
// prefetches and nothing else. The table is sized when the leaf count has doubled or
// halved since it was last sized (four entries per leaf, 64 to 2^16 entries, so at most
// 512 KiB), and cleared then.
//
// Insert/Remove: O(log n) node visits, each O(kFanout) or O(kLeafCapacity). A full node
// splits in halves, except that an append at the right end of the tree starts a new
// node (ascending inserts then fill nodes completely). After a remove, a node below
// half capacity is merged with a neighbour if both fit in one node, else the two are
// evened out. Invariants: every leaf depth is equal; nodes are non-empty; a node off the
// rightmost root-to-leaf path holds at least half its capacity (so the height is
// O(log n)); an inner root has >= 2 children; per-child first keys and maxima are exact.
//
// Not thread-safe by itself. The hub mutates it only under its interval lock and only
// while no invalidation walks it (walks happen while invalidate_seq is odd, and
// mutations are deferred then), so a Cursor may be advanced without the lock. First
// writes the leaf hint, so it is not const and is serialised like a mutation (the hub
// calls it under that lock); Next does not touch the hint.
#ifndef MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
#define MMUVISOR_NOTIFIER_INTERVAL_TREE_H_

#include <cstddef>
#include <cstdint>
#include <memory>

namespace mmuvisor::notifier {

class IntervalSubscription;

class IntervalTree {
 public:
  static constexpr uint32_t kLeafCapacity = 32;
  static constexpr uint32_t kFanout = 64;
  // Inner levels a Cursor can record. A tree of height h holds at least
  // 2 * (kFanout / 2)^(h - 2) full-enough leaves, so 24 levels is far beyond memory.
  static constexpr int kMaxHeight = 24;

  // A node is a Leaf at level 0 and an Inner above; the level is known from the walk.
  struct Node {};
  struct Leaf;
  struct Inner;

  // Position of a walk over the overlaps of one query [start, last]. Valid while the
  // tree is not modified.
  class Cursor {
   public:
    // REQUIRES: the last First/Next on this cursor returned true.
    IntervalSubscription* sub() const;
    uint64_t start() const;
    uint64_t last() const;

   private:
    friend class IntervalTree;
    uint64_t qstart_ = 0;
    uint64_t qlast_ = 0;
    const Leaf* leaf_ = nullptr;
    uint32_t pos_ = 0;
    // Filled by First up to the tree's height; left uninitialised beyond (no zeroing on
    // the invalidation path).
    uint8_t idx_[kMaxHeight];  // child index taken at each inner level
    const Inner* inner_[kMaxHeight];
  };

  IntervalTree() = default;
  ~IntervalTree();
  IntervalTree(const IntervalTree&) = delete;
  IntervalTree& operator=(const IntervalTree&) = delete;

  // REQUIRES: start <= last; (start, sub) not in the tree.
  void Insert(uint64_t start, uint64_t last, IntervalSubscription* sub);
  // REQUIRES: (start, sub) in the tree.
  void Remove(uint64_t start, IntervalSubscription* sub);
  bool empty() const { return size_ == 0; }
  size_t size() const { return size_; }
  size_t leaf_count() const { return leaves_; }
  size_t inner_count() const { return inners_; }
  int height() const { return height_; }  // inner levels above the leaves

  // Positions `c` on the first interval (in key order) meeting [start, last] and returns
  // true, or returns false if there is none. Prefetches that interval's subscription.
  // O(log n). Not const: it updates the leaf hint (see above).
  bool First(uint64_t start, uint64_t last, Cursor* c);
  // Moves `c` to the next interval meeting its query; false when there is none (the
  // cursor is then spent). REQUIRES: the last First/Next on `c` returned true.
  bool Next(Cursor* c) const;

  bool AnyOverlap(uint64_t start, uint64_t last) {
    Cursor c;
    return First(start, last, &c);
  }
  // Calls fn(IntervalSubscription*) for every interval meeting [start, last], in key
  // order. fn must not modify the tree.
  template <typename Fn>
  void ForEachOverlap(uint64_t start, uint64_t last, Fn&& fn) {
    Cursor c;
    for (bool more = First(start, last, &c); more; more = Next(&c)) fn(c.sub());
  }

  // Checks every invariant above; returns false (and stops) at the first violation.
  // O(n). For tests.
  bool CheckInvariants() const;

  // Query-first layout: a descent reads prefix_last (and start/sub at one index) only.
  struct alignas(64) Leaf : Node {
    // max last over entries 0..i; UINT64_MAX past count (sub[] is null there).
    uint64_t prefix_last[kLeafCapacity];
    uint64_t start[kLeafCapacity];
    IntervalSubscription* sub[kLeafCapacity];
    uint64_t last[kLeafCapacity];
    uint32_t count = 0;
  };
  struct alignas(64) Inner : Node {
    // max last over children 0..i; UINT64_MAX past count (child[] is null there).
    uint64_t prefix_last[kFanout];
    Node* child[kFanout];
    uint64_t first_start[kFanout];  // the child's first key
    uint64_t max_last[kFanout];     // the child's own max last
    const IntervalSubscription* first_sub[kFanout];
    uint32_t count = 0;
  };

 private:
  bool CheckNode(const Node* n, int level, bool rightmost, uint64_t* first_start,
                 const IntervalSubscription** first_sub, uint64_t* max_last,
                 size_t* entries) const;

  Node* root_ = nullptr;
  int height_ = 0;  // inner levels; 0: root_ is a leaf (or null when empty)
  size_t size_ = 0;
  size_t leaves_ = 0;
  size_t inners_ = 0;

  // The leaf hint (see the top of this file). hint_[b & hint_mask_] is the address of the
  // leaf that answered the last query whose start >> hint_shift_ was b, or 0.
  void MaybeResizeHint();
  std::unique_ptr<uintptr_t[]> hint_;
  uint64_t hint_mask_ = 0;
  uint32_t hint_shift_ = 0;
  size_t hint_sized_for_ = 0;  // leaf count when the table was last sized; 0: no table
};

inline IntervalSubscription* IntervalTree::Cursor::sub() const { return leaf_->sub[pos_]; }
inline uint64_t IntervalTree::Cursor::start() const { return leaf_->start[pos_]; }
inline uint64_t IntervalTree::Cursor::last() const { return leaf_->last[pos_]; }

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_INTERVAL_TREE_H_
