#include "notifier/interval_tree.h"

#include <algorithm>
#include <cassert>

namespace mmuvisor::notifier {
namespace {

// splitmix64 of the node address: a fixed pseudo-random heap priority, no RNG state.
uint64_t PriorityOf(const IntervalNode* node) {
  uint64_t z = reinterpret_cast<uintptr_t>(node) + 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

// Key order: (start, address), so equal starts are fine and keys are unique.
bool Less(const IntervalNode* a, const IntervalNode* b) {
  if (a->start != b->start) return a->start < b->start;
  return a < b;
}

void Update(IntervalNode* n) {
  uint64_t m = n->last;
  if (n->left != nullptr) m = std::max(m, n->left->subtree_last);
  if (n->right != nullptr) m = std::max(m, n->right->subtree_last);
  n->subtree_last = m;
}

// Splits `n` into keys < pivot (l) and keys > pivot (r); pivot itself is not in the tree.
void Split(IntervalNode* n, const IntervalNode* pivot, IntervalNode** l, IntervalNode** r) {
  if (n == nullptr) {
    *l = *r = nullptr;
    return;
  }
  if (Less(n, pivot)) {
    Split(n->right, pivot, &n->right, r);
    *l = n;
  } else {
    Split(n->left, pivot, l, &n->left);
    *r = n;
  }
  Update(n);
}

// Every key of l is smaller than every key of r.
IntervalNode* Merge(IntervalNode* l, IntervalNode* r) {
  if (l == nullptr) return r;
  if (r == nullptr) return l;
  if (l->priority > r->priority) {
    l->right = Merge(l->right, r);
    Update(l);
    return l;
  }
  r->left = Merge(l, r->left);
  Update(r);
  return r;
}

IntervalNode* InsertAt(IntervalNode* n, IntervalNode* node) {
  if (n == nullptr) return node;
  if (node->priority > n->priority) {
    Split(n, node, &node->left, &node->right);
    Update(node);
    return node;
  }
  if (Less(node, n)) {
    n->left = InsertAt(n->left, node);
  } else {
    n->right = InsertAt(n->right, node);
  }
  Update(n);
  return n;
}

IntervalNode* RemoveAt(IntervalNode* n, IntervalNode* node) {
  assert(n != nullptr && "IntervalTree::Remove: node not found");
  if (n == node) return Merge(n->left, n->right);
  if (Less(node, n)) {
    n->left = RemoveAt(n->left, node);
  } else {
    n->right = RemoveAt(n->right, node);
  }
  Update(n);
  return n;
}

}  // namespace

void IntervalTree::Insert(IntervalNode* node) {
  assert(!node->in_tree && node->start <= node->last);
  node->left = node->right = nullptr;
  node->priority = PriorityOf(node);
  node->subtree_last = node->last;
  root_ = InsertAt(root_, node);
  node->in_tree = true;
  ++size_;
}

void IntervalTree::Remove(IntervalNode* node) {
  assert(node->in_tree);
  root_ = RemoveAt(root_, node);
  node->left = node->right = nullptr;
  node->in_tree = false;
  --size_;
}

bool IntervalTree::AnyOverlap(uint64_t start, uint64_t last) const {
  const IntervalNode* n = root_;
  while (n != nullptr) {
    // Leftmost-first descent: if the left subtree can reach `start`, an overlap (if any
    // exists at all) with the smallest start is there or at n.
    if (n->left != nullptr && n->left->subtree_last >= start) {
      n = n->left;
      continue;
    }
    if (n->start > last) return false;
    if (n->last >= start) return true;
    n = n->right;
  }
  return false;
}

}  // namespace mmuvisor::notifier
