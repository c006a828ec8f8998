#include "notifier/interval_tree.h"

#include <algorithm>
#include <cassert>
#include <cstdint>

namespace mmuvisor::notifier {
namespace {

using Leaf = IntervalTree::Leaf;

// splitmix64 of the header address: a fixed pseudo-random heap priority, no RNG state
// and no space in the header.
uint64_t PriorityOf(const Leaf* leaf) {
  uint64_t z = reinterpret_cast<uintptr_t>(leaf) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Key order: (start, subscription address); keys are unique.
bool KeyLess(uint64_t a_start, const IntervalSubscription* a_sub, uint64_t b_start,
             const IntervalSubscription* b_sub) {
  if (a_start != b_start) return a_start < b_start;
  return reinterpret_cast<uintptr_t>(a_sub) < reinterpret_cast<uintptr_t>(b_sub);
}
// Leaf order: by first entry.
bool LeafLess(const Leaf* a, const Leaf* b) {
  return KeyLess(a->e->start[0], a->e->sub[0], b->e->start[0], b->e->sub[0]);
}

void UpdateLeafLast(Leaf* n) {
  uint64_t m = 0;
  for (uint32_t i = 0; i < n->count; ++i) m = std::max(m, n->e->last[i]);
  n->leaf_last = m;
}

uint64_t SubtreeLast(const Leaf* n) {
  return std::max({n->leaf_last, n->left_last, n->right_last});
}

void Update(Leaf* n) {
  n->first_start = n->e->start[0];
  n->left_last = n->left != nullptr ? SubtreeLast(n->left) : 0;
  n->right_last = n->right != nullptr ? SubtreeLast(n->right) : 0;
}

// Splits `n` into leaves < pivot (l) and > pivot (r); pivot itself is not in the tree.
void Split(Leaf* n, const Leaf* pivot, Leaf** l, Leaf** r) {
  if (n == nullptr) {
    *l = *r = nullptr;
    return;
  }
  if (LeafLess(n, pivot)) {
    Split(n->right, pivot, &n->right, r);
    *l = n;
  } else {
    Split(n->left, pivot, l, &n->left);
    *r = n;
  }
  Update(n);
}

// Every leaf of l is smaller than every leaf of r.
Leaf* Merge(Leaf* l, Leaf* r) {
  if (l == nullptr) return r;
  if (r == nullptr) return l;
  if (PriorityOf(l) > PriorityOf(r)) {
    l->right = Merge(l->right, r);
    Update(l);
    return l;
  }
  r->left = Merge(l, r->left);
  Update(r);
  return r;
}

Leaf* InsertAt(Leaf* n, Leaf* leaf) {
  if (n == nullptr) return leaf;
  if (PriorityOf(leaf) > PriorityOf(n)) {
    Split(n, leaf, &leaf->left, &leaf->right);
    Update(leaf);
    return leaf;
  }
  if (LeafLess(leaf, n)) {
    n->left = InsertAt(n->left, leaf);
  } else {
    n->right = InsertAt(n->right, leaf);
  }
  Update(n);
  return n;
}

Leaf* RemoveAt(Leaf* n, Leaf* leaf) {
  assert(n != nullptr && "IntervalTree: leaf not found");
  if (n == leaf) return Merge(n->left, n->right);
  if (LeafLess(leaf, n)) {
    n->left = RemoveAt(n->left, leaf);
  } else {
    n->right = RemoveAt(n->right, leaf);
  }
  Update(n);
  return n;
}

// Recomputes the maxima on the path from `n` down to `leaf` (whose entries changed
// without changing its place in the leaf order).
void RefreshPath(Leaf* n, Leaf* leaf) {
  assert(n != nullptr && "IntervalTree: leaf not found");
  if (n != leaf) RefreshPath(LeafLess(leaf, n) ? n->left : n->right, leaf);
  Update(n);
}

// Frees every leaf's entries (the headers belong to the pool).
void FreeEntries(Leaf* n) {
  while (n != nullptr) {
    FreeEntries(n->left);
    delete n->e;
    n = n->right;
  }
}

// Index of the first entry of `n` whose key is not less than (start, sub).
uint32_t LowerBound(const Leaf* n, uint64_t start, const IntervalSubscription* sub) {
  uint32_t lo = 0, hi = n->count;
  while (lo < hi) {
    const uint32_t mid = (lo + hi) / 2;
    if (KeyLess(n->e->start[mid], n->e->sub[mid], start, sub)) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

void InsertEntry(Leaf* n, uint32_t pos, uint64_t start, uint64_t last,
                 IntervalSubscription* sub) {
  assert(n->count < IntervalTree::kLeafCapacity);
  for (uint32_t i = n->count; i > pos; --i) {
    n->e->start[i] = n->e->start[i - 1];
    n->e->last[i] = n->e->last[i - 1];
    n->e->sub[i] = n->e->sub[i - 1];
  }
  n->e->start[pos] = start;
  n->e->last[pos] = last;
  n->e->sub[pos] = sub;
  ++n->count;
  n->leaf_last = std::max(n->leaf_last, last);
}

}  // namespace

IntervalTree::~IntervalTree() { FreeEntries(root_); }

IntervalTree::Leaf* IntervalTree::NewLeaf() {
  if (free_headers_ == nullptr) {
    headers_.push_back(std::make_unique<Leaf[]>(kPoolChunk));
    Leaf* chunk = headers_.back().get();
    for (size_t i = 0; i < kPoolChunk; ++i) {
      chunk[i].left = free_headers_;
      free_headers_ = &chunk[i];
    }
  }
  Leaf* leaf = free_headers_;
  free_headers_ = leaf->left;
  *leaf = Leaf{};
  leaf->e = new Entries;
  return leaf;
}

void IntervalTree::FreeLeaf(Leaf* leaf) {
  delete leaf->e;
  *leaf = Leaf{};
  leaf->left = free_headers_;
  free_headers_ = leaf;
}

IntervalTree::Leaf* IntervalTree::FindLeaf(uint64_t start,
                                           const IntervalSubscription* sub) const {
  // The last leaf whose first key is <= (start, sub); the leftmost leaf if there is none.
  Leaf* floor = nullptr;
  Leaf* leftmost = root_;
  for (Leaf* n = root_; n != nullptr;) {
    if (KeyLess(start, sub, n->e->start[0], n->e->sub[0])) {
      leftmost = n;
      n = n->left;
    } else {
      floor = n;
      n = n->right;
    }
  }
  return floor != nullptr ? floor : leftmost;
}

void IntervalTree::Insert(uint64_t start, uint64_t last, IntervalSubscription* sub) {
  assert(start <= last);
  ++size_;
  if (root_ == nullptr) {
    Leaf* leaf = NewLeaf();
    InsertEntry(leaf, 0, start, last, sub);
    Update(leaf);
    root_ = leaf;
    ++leaves_;
    return;
  }
  Leaf* leaf = FindLeaf(start, sub);
  const uint32_t pos = LowerBound(leaf, start, sub);
  assert(pos == leaf->count || leaf->e->sub[pos] != sub || leaf->e->start[pos] != start);
  if (leaf->count < kLeafCapacity) {
    // A new first entry only happens in the leftmost leaf: the leaf order is kept.
    InsertEntry(leaf, pos, start, last, sub);
    RefreshPath(root_, leaf);
    return;
  }
  // Full: split. Appending (ascending inserts) moves nothing, so such leaves stay full.
  Leaf* right = NewLeaf();
  ++leaves_;
  if (pos == kLeafCapacity) {
    InsertEntry(right, 0, start, last, sub);
  } else {
    constexpr uint32_t kHalf = kLeafCapacity / 2;
    for (uint32_t i = kHalf; i < kLeafCapacity; ++i) {
      right->e->start[i - kHalf] = leaf->e->start[i];
      right->e->last[i - kHalf] = leaf->e->last[i];
      right->e->sub[i - kHalf] = leaf->e->sub[i];
    }
    right->count = kLeafCapacity - kHalf;
    leaf->count = kHalf;
    UpdateLeafLast(leaf);
    UpdateLeafLast(right);
    if (pos <= kHalf) {
      InsertEntry(leaf, pos, start, last, sub);
    } else {
      InsertEntry(right, pos - kHalf, start, last, sub);
    }
  }
  // `leaf` kept its first key; refresh its path, then link `right` (which updates its own).
  RefreshPath(root_, leaf);
  Update(right);
  root_ = InsertAt(root_, right);
}

void IntervalTree::Remove(uint64_t start, IntervalSubscription* sub) {
  Leaf* leaf = FindLeaf(start, sub);
  assert(leaf != nullptr);
  const uint32_t pos = LowerBound(leaf, start, sub);
  assert(pos < leaf->count && leaf->e->sub[pos] == sub && leaf->e->start[pos] == start &&
         "IntervalTree::Remove: not in the tree");
  --size_;
  if (leaf->count == 1) {
    root_ = RemoveAt(root_, leaf);
    FreeLeaf(leaf);
    --leaves_;
    return;
  }
  for (uint32_t i = pos + 1; i < leaf->count; ++i) {
    leaf->e->start[i - 1] = leaf->e->start[i];
    leaf->e->last[i - 1] = leaf->e->last[i];
    leaf->e->sub[i - 1] = leaf->e->sub[i];
  }
  --leaf->count;
  // A removed first entry leaves the next one first: still between its neighbours.
  UpdateLeafLast(leaf);
  RefreshPath(root_, leaf);
}

bool IntervalTree::AnyOverlap(uint64_t start, uint64_t last) const {
  const Leaf* n = root_;
  while (n != nullptr) {
    // Leftmost-first descent: if the left subtree can reach `start`, an overlap (if any
    // exists at all) with the smallest key is there or later; none can be skipped.
    if (n->left != nullptr && n->left_last >= start) {
      n = n->left;
      continue;
    }
    if (n->first_start > last) return false;
    if (n->leaf_last >= start) {
      // The first entry reaching `start` decides: if it starts after `last`, every
      // later entry (here and to the right) does too.
      for (uint32_t i = 0; i < n->count; ++i) {
        if (n->e->last[i] >= start) return n->e->start[i] <= last;
      }
    }
    if (n->right_last < start) return false;
    n = n->right;
  }
  return false;
}

}  // namespace mmuvisor::notifier
