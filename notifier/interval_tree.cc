#include "notifier/interval_tree.h"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cstddef>
#include <cstdint>

namespace mmuvisor::notifier {
namespace {

using Leaf = IntervalTree::Leaf;
using Inner = IntervalTree::Inner;
using Node = IntervalTree::Node;
constexpr uint32_t kLeafCap = IntervalTree::kLeafCapacity;
constexpr uint32_t kFanout = IntervalTree::kFanout;
constexpr uint32_t kLeafMin = kLeafCap / 2;
static_assert(kLeafCap == 32 && kFanout == 64, "the counts work in groups of 8");
static_assert(kFanout <= 256, "Cursor::idx_ is a uint8_t");
constexpr uint32_t kInnerMin = kFanout / 2;

// Key order: (start, subscription address); keys are unique.
bool KeyLess(uint64_t a_start, const IntervalSubscription* a_sub, uint64_t b_start,
             const IntervalSubscription* b_sub) {
  if (a_start != b_start) return a_start < b_start;
  return reinterpret_cast<uintptr_t>(a_sub) < reinterpret_cast<uintptr_t>(b_sub);
}

// What a parent keeps about one child.
struct Summary {
  uint64_t first_start;
  const IntervalSubscription* first_sub;
  uint64_t max_last;
  Node* node;
};

// `level` 0 is a leaf.
Leaf* AsLeaf(Node* n) { return static_cast<Leaf*>(n); }
const Leaf* AsLeaf(const Node* n) { return static_cast<const Leaf*>(n); }
Inner* AsInner(Node* n) { return static_cast<Inner*>(n); }
const Inner* AsInner(const Node* n) { return static_cast<const Inner*>(n); }

uint32_t CountOf(const Node* n, int level) {
  return level == 0 ? AsLeaf(n)->count : AsInner(n)->count;
}

Summary Summarize(Node* n, int level) {
  if (level == 0) {
    const Leaf* l = AsLeaf(n);
    return {l->start[0], l->sub[0], l->prefix_last[l->count - 1], n};
  }
  const Inner* in = AsInner(n);
  return {in->first_start[0], in->first_sub[0], in->prefix_last[in->count - 1], n};
}

void PutChild(Inner* in, uint32_t i, const Summary& s) {
  in->first_start[i] = s.first_start;
  in->first_sub[i] = s.first_sub;
  in->max_last[i] = s.max_last;
  in->child[i] = s.node;
}

Summary GetChild(const Inner* in, uint32_t i) {
  return {in->first_start[i], in->first_sub[i], in->max_last[i], in->child[i]};
}

// Recomputes prefix_last and clears the slots past count (the query relies on both).
void Seal(Inner* in) {
  uint64_t m = 0;
  for (uint32_t i = 0; i < kFanout; ++i) {
    if (i < in->count) {
      m = std::max(m, in->max_last[i]);
      in->prefix_last[i] = m;
    } else {
      in->prefix_last[i] = UINT64_MAX;
      in->child[i] = nullptr;
    }
  }
}

// The same for a leaf, after any change to its entries.
void Seal(Leaf* l) {
  uint64_t m = 0;
  for (uint32_t i = 0; i < kLeafCap; ++i) {
    if (i < l->count) {
      m = std::max(m, l->last[i]);
      l->prefix_last[i] = m;
    } else {
      l->prefix_last[i] = UINT64_MAX;
      l->sub[i] = nullptr;
    }
  }
}

// Index of the child whose subtree holds (or would hold) key (start, sub): the last one
// whose first key is <= the key, or 0.
uint32_t Route(const Inner* in, uint64_t start, const IntervalSubscription* sub) {
  uint32_t i = in->count - 1;
  while (i > 0 && KeyLess(start, sub, in->first_start[i], in->first_sub[i])) --i;
  return i;
}

// Index of the first entry of `l` whose key is not less than (start, sub).
uint32_t LowerBound(const Leaf* l, uint64_t start, const IntervalSubscription* sub) {
  uint32_t lo = 0, hi = l->count;
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (KeyLess(l->start[mid], l->sub[mid], start, sub)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

void LeafInsertAt(Leaf* l, uint32_t pos, uint64_t start, uint64_t last,
                  IntervalSubscription* sub) {
  assert(l->count < kLeafCap);
  for (uint32_t i = l->count; i > pos; --i) {
    l->start[i] = l->start[i - 1];
    l->last[i] = l->last[i - 1];
    l->sub[i] = l->sub[i - 1];
  }
  l->start[pos] = start;
  l->last[pos] = last;
  l->sub[pos] = sub;
  ++l->count;
}

void LeafEraseAt(Leaf* l, uint32_t pos) {
  for (uint32_t i = pos + 1; i < l->count; ++i) {
    l->start[i - 1] = l->start[i];
    l->last[i - 1] = l->last[i];
    l->sub[i - 1] = l->sub[i];
  }
  --l->count;
}

// Moves entries [from, count) of `a` to the front of the empty leaf `b`.
void LeafMoveTail(Leaf* a, uint32_t from, Leaf* b) {
  assert(b->count == 0);
  for (uint32_t i = from; i < a->count; ++i) {
    b->start[i - from] = a->start[i];
    b->last[i - from] = a->last[i];
    b->sub[i - from] = a->sub[i];
  }
  b->count = a->count - from;
  a->count = from;
}

void InnerInsertAt(Inner* in, uint32_t pos, const Summary& s) {
  assert(in->count < kFanout);
  for (uint32_t i = in->count; i > pos; --i) PutChild(in, i, GetChild(in, i - 1));
  PutChild(in, pos, s);
  ++in->count;
}

void InnerEraseAt(Inner* in, uint32_t pos) {
  for (uint32_t i = pos + 1; i < in->count; ++i) PutChild(in, i - 1, GetChild(in, i));
  --in->count;
}

void InnerMoveTail(Inner* a, uint32_t from, Inner* b) {
  assert(b->count == 0);
  for (uint32_t i = from; i < a->count; ++i) PutChild(b, i - from, GetChild(a, i));
  b->count = a->count - from;
  a->count = from;
}

// Copies `n` entries from a[from..] to b[to..] (a != b, or non-overlapping going down).
void LeafCopy(const Leaf* a, uint32_t from, Leaf* b, uint32_t to, uint32_t n) {
  for (uint32_t k = 0; k < n; ++k) {
    b->start[to + k] = a->start[from + k];
    b->last[to + k] = a->last[from + k];
    b->sub[to + k] = a->sub[from + k];
  }
}

// Appends every entry of `b` to `a` if they fit in one leaf, else moves entries between
// them until their counts differ by at most one; keeps the key order (every key of a <
// every key of b).
void LeafBalance(Leaf* a, Leaf* b) {
  const uint32_t total = a->count + b->count;
  const uint32_t want_a = total <= kLeafCap ? total : total / 2;
  if (a->count < want_a) {  // b's head to a's tail, then close b's gap
    const uint32_t n = want_a - a->count;
    LeafCopy(b, 0, a, a->count, n);
    LeafCopy(b, n, b, 0, b->count - n);
    b->count -= n;
  } else if (a->count > want_a) {  // open a gap at b's head, then a's tail into it
    const uint32_t n = a->count - want_a;
    for (uint32_t k = b->count; k-- > 0;) LeafCopy(b, k, b, k + n, 1);
    LeafCopy(a, want_a, b, 0, n);
    b->count += n;
  }
  a->count = want_a;
  Seal(a);
  Seal(b);
}

void InnerBalance(Inner* a, Inner* b) {
  const uint32_t total = a->count + b->count;
  const uint32_t want_a = total <= kFanout ? total : total / 2;
  if (a->count < want_a) {
    const uint32_t n = want_a - a->count;
    for (uint32_t k = 0; k < n; ++k) PutChild(a, a->count + k, GetChild(b, k));
    for (uint32_t k = n; k < b->count; ++k) PutChild(b, k - n, GetChild(b, k));
    b->count -= n;
  } else if (a->count > want_a) {
    const uint32_t n = a->count - want_a;
    for (uint32_t k = b->count; k-- > 0;) PutChild(b, k + n, GetChild(b, k));
    for (uint32_t k = 0; k < n; ++k) PutChild(b, k, GetChild(a, want_a + k));
    b->count += n;
  }
  a->count = want_a;
  Seal(a);
  Seal(b);
}

void FreeSubtree(Node* n, int level) {
  if (level == 0) {
    delete AsLeaf(n);
    return;
  }
  for (uint32_t i = 0; i < AsInner(n)->count; ++i) FreeSubtree(AsInner(n)->child[i], level - 1);
  delete AsInner(n);
}

// 1 if x < q. The counts below add these as a tree (pairs, then quads), not as one
// add-with-carry chain: a node's search is on the critical path of every invalidation,
// and its latency is paid once per level.
inline uint32_t Below(uint64_t x, uint64_t q) { return x < q ? 1u : 0u; }

// How many of a[0], a[s], ..., a[7 * s] are below q. Forced inline, as LeafCountBelow:
// at -O2 (the default preset) GCC 12 kept both out of line, a call with a run-time stride
// on every level of every descent (tree_first_ns at 10^5: 56.8-57.3 ns out of line,
// 52.5-55.1 inline; -O3 inlined them already).
[[gnu::always_inline]] inline uint32_t CountBelow8(const uint64_t* a, uint32_t s,
                                                   uint64_t q) {
  const uint32_t c01 = Below(a[0], q) + Below(a[s], q);
  const uint32_t c23 = Below(a[2 * s], q) + Below(a[3 * s], q);
  const uint32_t c45 = Below(a[4 * s], q) + Below(a[5 * s], q);
  const uint32_t c67 = Below(a[6 * s], q) + Below(a[7 * s], q);
  return (c01 + c23) + (c45 + c67);
}

// Number of entries of the non-decreasing a[0..kLeafCap) below q: first the last entry
// of each group of 8, then the 8 of the group that holds the answer (its line was read
// by the first step). The inner-node version is spelled out in Descend.
[[gnu::always_inline]] inline uint32_t LeafCountBelow(const uint64_t* a, uint64_t q) {
  const uint32_t g =
      8 * ((Below(a[7], q) + Below(a[15], q)) + (Below(a[23], q) + Below(a[31], q)));
  if (g == kLeafCap) return kLeafCap;
  return g + CountBelow8(a + g, 1, q);
}

// The caller calls into this subscription next: its (likely cold) lines start loading
// now, for write (SetSeq, the driver's lock). Three lines: the 64-byte base (vtable
// pointer, seq) and the first 64 bytes of the driver's state after it, where its lock
// usually sits, however the object is aligned (an object 8-byte aligned at offset 48 or 56
// of a line has its 65th-84th bytes, a glibc mutex's lock and kind words, on the third
// line).
[[gnu::always_inline]] inline void PrefetchSubscription(const IntervalSubscription* sub) {
  const char* obj = reinterpret_cast<const char*>(sub);
  __builtin_prefetch(obj, 1, 3);
  __builtin_prefetch(obj + 64, 1, 3);
  __builtin_prefetch(obj + 128, 1, 3);
}

enum class Scan { kFound, kDone, kExhausted };

// Looks in `l` from entry `from` on for the next entry meeting the cursor's query.
// kDone: an entry starting after the query's last was reached (so is every later one).
// The end of the leaf is its first null sub[] (Seal keeps them): count sits on a line
// of its own that First never loads, and Next runs right after a callback on a cold
// subscription, when one more miss would be paid in full.
Scan ScanLeaf(const Leaf* l, uint32_t from, uint64_t qstart, uint64_t qlast,
              const Leaf** leaf, uint32_t* pos) {
  for (uint32_t p = from; p < kLeafCap; ++p) {
    if (l->sub[p] == nullptr) return Scan::kExhausted;
    if (l->start[p] > qlast) return Scan::kDone;
    if (l->last[p] >= qstart) {
      *leaf = l;
      *pos = p;
      PrefetchSubscription(l->sub[p]);
      return Scan::kFound;
    }
  }
  return Scan::kExhausted;
}

// Descends from `n` (at inner depth `depth`) along the leftmost path to the first entry
// whose last reaches the query's start; true if that entry starts by the query's last.
bool Descend(const Node* n, int depth, int height, uint64_t qstart, uint64_t qlast,
             const Inner** inner, uint8_t* idx, const Leaf** leaf, uint32_t* pos) {
  for (int d = depth; d < height; ++d) {
    const Inner* in = AsInner(n);
    // prefix_last is non-decreasing, so the first child whose own max reaches qstart is
    // the number of prefixes below it; that child holds the first entry (in key order)
    // reaching qstart. Counted in two steps of eight: the last prefix of each group of 8
    // children, then the 8 of the group that holds the answer (its line was read by the
    // first step).
    const uint32_t g = 8 * CountBelow8(in->prefix_last + 7, 8, qstart);
    if (g == kFanout) return false;  // nothing reaches it
    // child[i] is read next: its line starts loading now, alongside the second step.
    __builtin_prefetch(&in->child[g]);
    const uint32_t i = g + CountBelow8(in->prefix_last + g, 1, qstart);
    if (in->child[i] == nullptr) return false;  // past count: nothing reaches it
    inner[d] = in;
    idx[d] = static_cast<uint8_t>(i);
    n = in->child[i];
  }
  // The same count over the leaf finds that entry; it overlaps iff it starts by qlast
  // (every later entry starts no earlier).
  const Leaf* l = AsLeaf(n);
  // The leaf is the first cold node on the path (inner nodes are few and stay cached):
  // load the lines of start[] and sub[] alongside prefix_last[], so the pick at p costs
  // no second round trip.
  for (uint32_t j = 0; j < kLeafCap; j += 8) {
    __builtin_prefetch(&l->start[j]);
    __builtin_prefetch(&l->sub[j]);
  }
  const uint32_t p = LeafCountBelow(l->prefix_last, qstart);
  if (p == kLeafCap || l->sub[p] == nullptr || l->start[p] > qlast) return false;
  *leaf = l;
  *pos = p;
  PrefetchSubscription(l->sub[p]);
  return true;
}

}  // namespace

// ---- Queries ---------------------------------------------------------------------------

bool IntervalTree::First(uint64_t start, uint64_t last, Cursor* c) {
  if (size_ == 0) return false;
  c->qstart_ = start;
  c->qlast_ = last;
  // The leaf's lines start loading now, while the descent reads the inner nodes (see
  // "Leaf hint" in the header): the same twelve lines the descent prefetches on arrival.
  uintptr_t* hint = nullptr;
  if (hint_ != nullptr) {
    hint = &hint_[(start >> hint_shift_) & hint_mask_];
    if (*hint != 0) {
      constexpr size_t kArrays[] = {offsetof(Leaf, prefix_last), offsetof(Leaf, start),
                                    offsetof(Leaf, sub)};
      for (size_t array : kArrays) {
        for (size_t line = 0; line < kLeafCap * sizeof(uint64_t); line += 64) {
          // An integer, never dereferenced: the leaf may be gone; a prefetch cannot fault.
          __builtin_prefetch(reinterpret_cast<const void*>(*hint + array + line));
        }
      }
    }
  }
  const bool found =
      Descend(root_, 0, height_, start, last, c->inner_, c->idx_, &c->leaf_, &c->pos_);
  if (found && hint != nullptr) *hint = reinterpret_cast<uintptr_t>(c->leaf_);
  return found;
}

void IntervalTree::MaybeResizeHint() {
  // No table while the root is a leaf: no inner node to overlap with.
  if (height_ == 0) {
    hint_.reset();
    hint_sized_for_ = 0;
    return;
  }
  if (hint_sized_for_ != 0 && leaves_ < 2 * hint_sized_for_ && 2 * leaves_ > hint_sized_for_) {
    return;
  }
  // A bucket is the span of starts per leaf rounded down to a power of two (half a leaf
  // to one leaf wide, so a bucket mostly meets one leaf), and the table holds four
  // entries per leaf: the span's buckets do not alias until the leaf count has doubled,
  // when the table is sized again.
  const Node* n = root_;
  for (int d = 0; d < height_; ++d) n = AsInner(n)->child[AsInner(n)->count - 1];
  const Leaf* rightmost = AsLeaf(n);
  const uint64_t span = rightmost->start[rightmost->count - 1] - AsInner(root_)->first_start[0];
  const uint64_t per_leaf = std::max<uint64_t>(span / leaves_, 1);
  hint_shift_ = static_cast<uint32_t>(std::bit_width(per_leaf) - 1);
  constexpr size_t kMinEntries = 64, kMaxEntries = size_t{1} << 16;
  const size_t entries = std::clamp(std::bit_ceil(4 * leaves_), kMinEntries, kMaxEntries);
  hint_mask_ = entries - 1;
  hint_.reset(new uintptr_t[entries]());
  hint_sized_for_ = leaves_;
}

bool IntervalTree::Next(Cursor* c) const {
  const uint64_t qstart = c->qstart_, qlast = c->qlast_;
  switch (ScanLeaf(c->leaf_, c->pos_ + 1, qstart, qlast, &c->leaf_, &c->pos_)) {
    case Scan::kFound:
      return true;
    case Scan::kDone:
      return false;
    case Scan::kExhausted:
      break;
  }
  // Climb to the nearest ancestor with a later child that reaches qstart.
  for (int d = height_ - 1; d >= 0; --d) {
    const Inner* in = c->inner_[d];
    for (uint32_t j = c->idx_[d] + 1u; j < in->count; ++j) {
      if (in->first_start[j] > qlast) return false;  // so do all later children
      if (in->max_last[j] >= qstart) {
        c->idx_[d] = static_cast<uint8_t>(j);
        return Descend(in->child[j], d + 1, height_, qstart, qlast, c->inner_, c->idx_,
                       &c->leaf_, &c->pos_);
      }
    }
  }
  return false;
}

// ---- Insert ----------------------------------------------------------------------------

namespace {

struct InsertArgs {
  uint64_t start;
  uint64_t last;
  IntervalSubscription* sub;
  size_t* leaves;
  size_t* inners;
};

// Inserts into the subtree `n` at `level`; returns the new right sibling if `n` split
// (null otherwise). `rightmost`: n is on the tree's rightmost root-to-leaf path.
Node* InsertRec(Node* n, int level, bool rightmost, const InsertArgs& a) {
  if (level == 0) {
    Leaf* l = AsLeaf(n);
    const uint32_t pos = LowerBound(l, a.start, a.sub);
    assert((pos == l->count || l->sub[pos] != a.sub || l->start[pos] != a.start) &&
           "IntervalTree::Insert: already in the tree");
    if (l->count < kLeafCap) {
      LeafInsertAt(l, pos, a.start, a.last, a.sub);
      Seal(l);
      return nullptr;
    }
    Leaf* r = new Leaf;
    ++*a.leaves;
    if (rightmost && pos == kLeafCap) {
      LeafInsertAt(r, 0, a.start, a.last, a.sub);  // an append: l stays full
    } else {
      LeafMoveTail(l, kLeafCap / 2, r);
      if (pos <= kLeafCap / 2) {
        LeafInsertAt(l, pos, a.start, a.last, a.sub);
      } else {
        LeafInsertAt(r, pos - kLeafCap / 2, a.start, a.last, a.sub);
      }
    }
    Seal(l);
    Seal(r);
    return r;
  }
  Inner* in = AsInner(n);
  const uint32_t i = Route(in, a.start, a.sub);
  Node* const split = InsertRec(in->child[i], level - 1, rightmost && i == in->count - 1, a);
  PutChild(in, i, Summarize(in->child[i], level - 1));
  if (split == nullptr) {
    Seal(in);
    return nullptr;
  }
  const Summary s = Summarize(split, level - 1);
  if (in->count < kFanout) {
    InnerInsertAt(in, i + 1, s);
    Seal(in);
    return nullptr;
  }
  Inner* r = new Inner;
  ++*a.inners;
  if (rightmost && i + 1 == kFanout) {
    InnerInsertAt(r, 0, s);
  } else {
    InnerMoveTail(in, kFanout / 2, r);
    if (i + 1 <= kFanout / 2) {
      InnerInsertAt(in, i + 1, s);
    } else {
      InnerInsertAt(r, i + 1 - kFanout / 2, s);
    }
  }
  Seal(in);
  Seal(r);
  return r;
}

}  // namespace

void IntervalTree::Insert(uint64_t start, uint64_t last, IntervalSubscription* sub) {
  assert(start <= last);
  if (root_ == nullptr) {
    root_ = new Leaf;
    ++leaves_;
    height_ = 0;
  }
  Node* const split =
      InsertRec(root_, height_, /*rightmost=*/true, {start, last, sub, &leaves_, &inners_});
  ++size_;
  if (split == nullptr) return MaybeResizeHint();
  Inner* root = new Inner;
  ++inners_;
  InnerInsertAt(root, 0, Summarize(root_, height_));
  InnerInsertAt(root, 1, Summarize(split, height_));
  Seal(root);
  root_ = root;
  ++height_;
  assert(height_ <= kMaxHeight);
  MaybeResizeHint();
}

// ---- Remove ----------------------------------------------------------------------------

namespace {

struct RemoveArgs {
  uint64_t start;
  const IntervalSubscription* sub;
  size_t* leaves;
  size_t* inners;
};

void FreeNode(Node* n, int level, const RemoveArgs& a) {
  if (level == 0) {
    delete AsLeaf(n);
    --*a.leaves;
  } else {
    delete AsInner(n);
    --*a.inners;
  }
}

// Removes the key from the subtree `n` at `level`; n may be left below its minimum (even
// empty): its parent repairs it.
void RemoveRec(Node* n, int level, const RemoveArgs& a) {
  if (level == 0) {
    Leaf* l = AsLeaf(n);
    const uint32_t pos = LowerBound(l, a.start, a.sub);
    assert(pos < l->count && l->sub[pos] == a.sub && l->start[pos] == a.start &&
           "IntervalTree::Remove: not in the tree");
    LeafEraseAt(l, pos);
    Seal(l);
    return;
  }
  Inner* in = AsInner(n);
  const uint32_t i = Route(in, a.start, a.sub);
  Node* const child = in->child[i];
  RemoveRec(child, level - 1, a);
  const uint32_t min = level - 1 == 0 ? kLeafMin : kInnerMin;
  const uint32_t count = CountOf(child, level - 1);
  if (count >= min || (in->count == 1 && count > 0)) {
    PutChild(in, i, Summarize(child, level - 1));
  } else if (in->count == 1) {
    // Emptied only child (of a node on the rightmost path): this node becomes empty and
    // its own parent merges it away.
    FreeNode(child, level - 1, a);
    in->count = 0;
  } else {
    // Underfull: merge with a neighbour, or even the two out.
    const uint32_t left = i > 0 ? i - 1 : i;
    Node* const x = in->child[left];
    Node* const y = in->child[left + 1];
    if (level - 1 == 0) {
      LeafBalance(AsLeaf(x), AsLeaf(y));
    } else {
      InnerBalance(AsInner(x), AsInner(y));
    }
    if (CountOf(y, level - 1) == 0) {
      FreeNode(y, level - 1, a);
      InnerEraseAt(in, left + 1);
    } else {
      PutChild(in, left + 1, Summarize(y, level - 1));
    }
    if (CountOf(x, level - 1) == 0) {  // both were empty (left was an empty rightmost node)
      FreeNode(x, level - 1, a);
      InnerEraseAt(in, left);
    } else {
      PutChild(in, left, Summarize(x, level - 1));
    }
  }
  Seal(in);
}

}  // namespace

void IntervalTree::Remove(uint64_t start, IntervalSubscription* sub) {
  assert(size_ > 0 && "IntervalTree::Remove: empty tree");
  const RemoveArgs a{start, sub, &leaves_, &inners_};
  RemoveRec(root_, height_, a);
  --size_;
  // An inner root keeps >= 2 children: collapse it while it has fewer.
  while (height_ > 0 && AsInner(root_)->count <= 1) {
    Inner* old = AsInner(root_);
    root_ = old->count == 1 ? old->child[0] : nullptr;
    delete old;
    --inners_;
    --height_;
    if (root_ == nullptr) height_ = 0;
  }
  if (height_ == 0 && root_ != nullptr && AsLeaf(root_)->count == 0) {
    delete AsLeaf(root_);
    --leaves_;
    root_ = nullptr;
  }
  MaybeResizeHint();
}

IntervalTree::~IntervalTree() {
  if (root_ != nullptr) FreeSubtree(root_, height_);
}

// ---- Invariant check (tests) -------------------------------------------------------------

bool IntervalTree::CheckNode(const Node* n, int level, bool rightmost, uint64_t* first_start,
                             const IntervalSubscription** first_sub, uint64_t* max_last,
                             size_t* entries) const {
  if (n == nullptr) return false;
  const bool is_root = n == root_;
  if (level == 0) {
    const Leaf* l = AsLeaf(n);
    if (l->count == 0 || l->count > kLeafCap) return false;
    if (!rightmost && !is_root && l->count < kLeafMin) return false;
    uint64_t m = 0;
    for (uint32_t i = l->count; i < kLeafCap; ++i) {
      if (l->prefix_last[i] != UINT64_MAX || l->sub[i] != nullptr) return false;
    }
    for (uint32_t i = 0; i < l->count; ++i) {
      if (l->start[i] > l->last[i] || l->sub[i] == nullptr) return false;
      if (i > 0 && !KeyLess(l->start[i - 1], l->sub[i - 1], l->start[i], l->sub[i])) {
        return false;
      }
      m = std::max(m, l->last[i]);
      if (l->prefix_last[i] != m) return false;
    }
    *first_start = l->start[0];
    *first_sub = l->sub[0];
    *max_last = m;
    *entries += l->count;
    return true;
  }
  const Inner* in = AsInner(n);
  if (in->count == 0 || in->count > kFanout) return false;
  if (is_root && in->count < 2) return false;
  if (!rightmost && !is_root && in->count < kInnerMin) return false;
  uint64_t prefix = 0;
  for (uint32_t i = 0; i < kFanout; ++i) {
    if (i >= in->count) {
      if (in->prefix_last[i] != UINT64_MAX || in->child[i] != nullptr) return false;
      continue;
    }
    uint64_t fs, ml;
    const IntervalSubscription* fsub;
    if (!CheckNode(in->child[i], level - 1, rightmost && i == in->count - 1, &fs, &fsub, &ml,
                   entries)) {
      return false;
    }
    if (fs != in->first_start[i] || fsub != in->first_sub[i] || ml != in->max_last[i]) {
      return false;
    }
    if (i > 0 && !KeyLess(in->first_start[i - 1], in->first_sub[i - 1], fs, fsub)) {
      return false;
    }
    prefix = std::max(prefix, ml);
    if (in->prefix_last[i] != prefix) return false;
  }
  *first_start = in->first_start[0];
  *first_sub = in->first_sub[0];
  *max_last = prefix;
  return true;
}

bool IntervalTree::CheckInvariants() const {
  if (root_ == nullptr) return size_ == 0 && height_ == 0 && leaves_ == 0 && inners_ == 0;
  uint64_t fs, ml;
  const IntervalSubscription* fsub;
  size_t entries = 0;
  if (!CheckNode(root_, height_, /*rightmost=*/true, &fs, &fsub, &ml, &entries)) return false;
  return entries == size_;
}

}  // namespace mmuvisor::notifier
