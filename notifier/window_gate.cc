#include "notifier/window_gate.h"

#include <vector>

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {
namespace {

// Windows this thread holds, per gate, for threads on a shared slot. A thread rarely
// works on more than one address space at a time: kDepthSlots entries in place, the rest
// in an overflow vector (the depth must be exact: it admits nested windows through a
// closed gate and tells an end without a start from a real one).
struct DepthSlot {
  const WindowGate* gate = nullptr;
  int depth = 0;
};
constexpr int kDepthSlots = 4;
thread_local DepthSlot tls_depth[kDepthSlots];
thread_local std::vector<DepthSlot> tls_depth_overflow;

DepthSlot* FindDepth(const WindowGate* gate) {
  for (DepthSlot& slot : tls_depth) {
    if (slot.gate == gate) return &slot;
  }
  for (DepthSlot& slot : tls_depth_overflow) {
    if (slot.gate == gate) return &slot;
  }
  return nullptr;
}

// relaxed: a hint to stop waiting; the caller's kRecheckOrder re-check decides.
bool ClosedHintOf(const std::atomic<uint32_t>& state) {
  return (state.load(std::memory_order_relaxed) & SrcuDomain::kClosedBit) != 0;
}

}  // namespace

int WindowGate::ThreadDepth() const {
  const DepthSlot* slot = FindDepth(this);
  return slot != nullptr ? slot->depth : 0;
}

void WindowGate::AddThreadDepth(int delta) {
  if (DepthSlot* slot = FindDepth(this)) {
    slot->depth += delta;
    if (slot->depth <= 0) *slot = DepthSlot{};  // free entries have gate == nullptr
    return;
  }
  if (delta <= 0) return;  // Exit on a thread that did not Enter: nothing tracked.
  if (DepthSlot* free = FindDepth(nullptr)) {
    *free = DepthSlot{this, delta};
    return;
  }
  tls_depth_overflow.push_back(DepthSlot{this, delta});
}

bool WindowGate::ThreadHoldsWindow() const {
  const int slot = internal::ThreadSlot();
  if (internal::IsExclusiveSlot(slot)) return HoldsWindowExclusive(slot);
  return ThreadDepth() > 0;
}

bool WindowGate::EnterAfterWait() {
  std::atomic<int64_t>& count = domain_.shards_[internal::ThreadSlot()].windows;
  for (int round = 0;; ++round) {
    // relaxed: only a hint to stop waiting; the re-check below decides.
    while (ClosedHintOf(domain_.state_)) internal::WaitStep(round++);
    // As in Enter (the slot's depth is 0 here: not nested).
    const int64_t depth = count.load(std::memory_order_relaxed);
    count.store(depth + 1, internal::kPairOrder);
    internal::LightFence();
    if (!closed()) return true;
    // release: pairs with the acquire loads in Close's drain.
    count.store(depth, std::memory_order_release);
  }
}

bool WindowGate::EnterShared(bool may_wait) {
  std::atomic<int64_t>& count = domain_.shards_[internal::ThreadSlot()].windows;
  const bool nested = ThreadDepth() > 0;
  for (int round = 0;; ++round) {
    // seq_cst (add and load): entrant half of the store-buffering pair with Close; the
    // locked add is a full barrier, so no LightFence is needed.
    count.fetch_add(1, std::memory_order_seq_cst);
    if (nested || (domain_.state_.load(std::memory_order_seq_cst) &
                   SrcuDomain::kClosedBit) == 0) {
      AddThreadDepth(1);
      return true;
    }
    // release: pairs with the acquire loads in Close's drain.
    count.fetch_sub(1, std::memory_order_release);
    if (!may_wait) return false;
    // relaxed: only a hint to stop spinning; the seq_cst re-check above decides.
    while (ClosedHintOf(domain_.state_)) internal::WaitStep(round++);
  }
}

void WindowGate::ExitShared() {
  AddThreadDepth(-1);
  // release: the window's work happens-before a registrar's drain (acquire in Close).
  domain_.shards_[internal::ThreadSlot()].windows.fetch_sub(1, std::memory_order_release);
}

void WindowGate::Close() {
  // seq_cst: closer half of the store-buffering pair with Enter. A read-modify-write:
  // Synchronize flips kEpochBit of the same word (under another lock).
  domain_.state_.fetch_or(SrcuDomain::kClosedBit, std::memory_order_seq_cst);
  // Closer half of the asymmetric pair: every entrant that missed the closed bit now has
  // its count visible to the loads in open_windows().
  internal::HeavyFence();
  for (int round = 0; open_windows() != 0; ++round) {
    if (round == 0 && domain_.wait_hooks_ != nullptr && domain_.wait_hooks_->gate_waits) {
      domain_.wait_hooks_->gate_waits();
    }
    internal::WaitStep(round);
  }
}

void WindowGate::Open() {
  // release: orders the registration's writes before reopening. An entrant's re-check
  // that reads this value (kRecheckOrder, acquire) synchronizes with it, so its loads of
  // the hub's list_ and has_itree_ that follow see what the registration published, even
  // when the gate closed and reopened between its first look and its re-check. (With a
  // relaxed re-check those loads could be satisfied before it on a weakly ordered CPU.)
  domain_.state_.fetch_and(~SrcuDomain::kClosedBit, std::memory_order_release);
}

int64_t WindowGate::open_windows() const {
  int64_t sum = 0;
  // seq_cst: closer half of the store-buffering pair with Enter (and an acquire of the
  // releases in Exit).
  for (const SrcuDomain::Shard& shard : domain_.shards_) {
    sum += shard.windows.load(std::memory_order_seq_cst);
  }
  return sum;
}

}  // namespace mmuvisor::notifier
