#include "notifier/window_gate.h"

#include "notifier/thread_shard.h"

namespace mmuvisor::notifier {
namespace {

// Windows this thread holds, per gate, for threads on a shared slot. A thread rarely
// works on more than one address space at a time; past kDepthSlots gates nesting is not
// tracked.
struct DepthSlot {
  const WindowGate* gate = nullptr;
  int depth = 0;
};
constexpr int kDepthSlots = 4;
thread_local DepthSlot tls_depth[kDepthSlots];

// relaxed: a hint to stop waiting; the caller's kPairOrder re-check decides.
bool ClosedHintOf(const std::atomic<uint32_t>& state) {
  return (state.load(std::memory_order_relaxed) & SrcuDomain::kClosedBit) != 0;
}

}  // namespace

int WindowGate::ThreadDepth() const {
  for (const DepthSlot& slot : tls_depth) {
    if (slot.gate == this) return slot.depth;
  }
  return 0;
}

void WindowGate::AddThreadDepth(int delta) {
  for (DepthSlot& slot : tls_depth) {
    if (slot.gate == this) {
      slot.depth += delta;
      if (slot.depth <= 0) slot = DepthSlot{};
      return;
    }
  }
  if (delta <= 0) return;  // Exit on a thread that did not Enter: nothing tracked.
  for (DepthSlot& slot : tls_depth) {
    if (slot.gate == nullptr) {
      slot = DepthSlot{this, delta};
      return;
    }
  }
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
  for (int round = 0; open_windows() != 0; ++round) internal::WaitStep(round);
}

void WindowGate::Open() {
  // release: orders the registration's writes before reopening. Entrants load the state
  // word with kPairOrder (relaxed outside TSan), so they do not rely on this: a new
  // window reads what the registration changed through its own acquire loads (the
  // hub's list_ and has_itree_, paired with PublishLocked's and EnsureItree's releases).
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
