// notifier/subscription.h: a classic subscription (Linux: struct mmu_notifier plus its
// struct mmu_notifier_ops) and the allocator used by Get/Put.
//
// A Subscription is a base class: override the ops you implement and declare them in the
// OpSet given to the constructor, so the hub can check the registration rules:
//   - kArchInvalidateSecondaryTlbs excludes kInvalidateRangeStart and kInvalidateRangeEnd;
//   - kStartMayFail (start may return kAgain in non-blockable ranges) excludes
//     kInvalidateRangeEnd: such a subscription can never learn that its start failed.
// Ops not declared are never called, even if overridden.
//
// Threads: every op may be called concurrently with every other op, from any thread that
// invalidates, ages or tears down the address space (Linux gives the same guarantee, i.e.
// none). Ops run inside the hub's SRCU read-side section: they may sleep when the range is
// blockable, must not sleep otherwise, and must never call Unregister/Synchronize on their
// own hub (the grace period would wait for itself). Put may be called from Release.
//
// Identity matters: copying and moving are deleted. The object must stay alive while
// registered; after Unregister returns, no op runs and the object may be destroyed.
#ifndef MMUVISOR_NOTIFIER_SUBSCRIPTION_H_
#define MMUVISOR_NOTIFIER_SUBSCRIPTION_H_

#include <atomic>
#include <cstdint>
#include <initializer_list>
#include <memory>
#include <string>

#include "absl/status/statusor.h"
#include "notifier/range.h"

namespace mmuvisor::notifier {

class NotifierSubscriptions;
class PairingChecker;
class SubscriptionAllocator;

// The ops a subscription implements (Linux: the non-NULL members of mmu_notifier_ops).
enum class Op : uint32_t {
  kRelease = 1u << 0,
  kClearFlushYoung = 1u << 1,
  kClearYoung = 1u << 2,
  kTestYoung = 1u << 3,
  kInvalidateRangeStart = 1u << 4,
  kInvalidateRangeEnd = 1u << 5,
  kArchInvalidateSecondaryTlbs = 1u << 6,
  // Not an op: a declaration that InvalidateRangeStart may return kAgain.
  kStartMayFail = 1u << 7,
};

class OpSet {
 public:
  constexpr OpSet() = default;
  constexpr OpSet(std::initializer_list<Op> ops) {
    for (Op op : ops) bits_ |= static_cast<uint32_t>(op);
  }
  constexpr bool Has(Op op) const { return (bits_ & static_cast<uint32_t>(op)) != 0; }
  constexpr uint32_t bits() const { return bits_; }
  // The ops a KVM-like secondary MMU implements: all but arch TLBs, start never fails.
  static constexpr OpSet KvmLike() {
    return {Op::kRelease, Op::kClearFlushYoung, Op::kClearYoung, Op::kTestYoung,
            Op::kInvalidateRangeStart, Op::kInvalidateRangeEnd};
  }

 private:
  uint32_t bits_ = 0;
};

// What a start callback may return. There is no other failure: only a non-blockable start
// may fail, and only as "try again" (Linux: -EAGAIN).
enum class StartResult : uint8_t { kOk, kAgain };

// Per-subscription pairing counters kept by the hub's PairingChecker (relaxed atomics;
// exact once the hub is quiescent).
struct PairingCounters {
  // Successful starts delivered; a blockable start that returned kAgain counts too (the
  // hub treats it as done). Without a start op: the ends delivered (each one a window).
  uint64_t starts = 0;
  uint64_t ends = 0;          // ends delivered
  uint64_t failed_starts = 0; // starts that returned kAgain
  int64_t open = 0;           // starts - ends (only if it has an end): open windows
  int64_t max_depth = 0;      // largest `open` seen (nesting / concurrency depth)
};

class Subscription {
 public:
  // `name` appears in violation reports.
  explicit Subscription(OpSet ops, std::string name = "subscription");
  virtual ~Subscription();
  Subscription(const Subscription&) = delete;
  Subscription& operator=(const Subscription&) = delete;

  OpSet ops() const { return ops_; }
  const std::string& name() const { return name_; }
  // The allocator that created it through Get, or null (Linux: ops identity for get/put).
  const SubscriptionAllocator* allocator() const { return allocator_; }
  // Counts of the current (or last) registration: Register resets them.
  PairingCounters pairing() const;

  // Teardown of the address space, or Unregister while still linked. Called at most once.
  // Must drop every secondary mapping and keep new ones from being made.
  virtual void Release(NotifierSubscriptions& hub);
  // Test-and-clear the accessed state of [start, end) and flush the secondary TLB.
  virtual bool ClearFlushYoung(uint64_t start, uint64_t end);
  // As ClearFlushYoung, the flush may be skipped.
  virtual bool ClearYoung(uint64_t start, uint64_t end);
  // Is `address` young? Does not clear.
  virtual bool TestYoung(uint64_t address);
  // No secondary mapping of the range may exist or be created until the matching end.
  // May return kAgain only when !range.blockable and kStartMayFail was declared.
  virtual StartResult InvalidateRangeStart(const Range& range);
  // Called once per successful start (same range), after the primary change is done.
  virtual void InvalidateRangeEnd(const Range& range);
  // For secondary TLBs that share the primary page tables. Must not sleep.
  virtual void ArchInvalidateSecondaryTlbs(uint64_t start, uint64_t end);

 private:
  friend class NotifierSubscriptions;
  friend class PairingChecker;

  enum class LinkState : uint8_t { kIdle, kLinked, kUnregistered, kTornDown };

  const OpSet ops_;
  const std::string name_;
  // Everything below is owned by the hub; written under its registration lock except
  // the atomics, which the dispatch paths touch.
  NotifierSubscriptions* hub_ = nullptr;
  SubscriptionAllocator* allocator_ = nullptr;
  uint64_t users_ = 0;                      // Get/Put count (allocator subscriptions)
  uint64_t register_order_ = 0;             // monotonic, larger = newer
  std::atomic<bool> released_{false};       // exactly-once Release
  std::atomic<LinkState> link_state_{LinkState::kIdle};
  // Pairing counters (PairingChecker; relaxed: statistics, not synchronisation).
  // pairs_ = (successful starts << kOpenBits) | open windows, so a start or an end is
  // one read-modify-write; ends = starts - open. open stays 0 without an end op.
  static constexpr int kOpenBits = 24;
  static constexpr uint64_t kOpenMask = (uint64_t{1} << kOpenBits) - 1;
  // An open count with this bit set is an end that found no window (it borrowed from
  // the start count until the checker puts it back); real windows never reach 2^23.
  static constexpr uint64_t kBorrowBit = uint64_t{1} << (kOpenBits - 1);
  std::atomic<uint64_t> pairs_{0};
  std::atomic<uint64_t> failed_starts_{0};
  std::atomic<int64_t> max_depth_{0};
};

// Linux: ops->alloc_notifier / ops->free_notifier. The allocator's address is the identity
// Get uses to share one subscription per address space among all users of the same kind.
class SubscriptionAllocator {
 public:
  virtual ~SubscriptionAllocator() = default;
  // Called by Get (under the hub's registration lock) when no subscription of this kind is
  // registered. Must not call back into the hub.
  virtual absl::StatusOr<std::unique_ptr<Subscription>> AllocNotifier(
      NotifierSubscriptions& hub) = 0;
  // Called after the last Put and a grace period (no op of `sub` can run), or by a Get
  // that could not link `sub`, or by the hub's destructor. Default: delete.
  // After a Put it runs as an SRCU callback (Linux: free_notifier from call_srcu), in
  // whichever thread's Synchronize/Barrier runs the queue, under the domain's grace-period
  // lock (SrcuDomain::sync_mu_). REQUIRES: it does not call Synchronize, Unregister or
  // Release on this hub, nor destroy it (each waits for a grace period: a self-deadlock).
  // Get, Put and the introspection calls are allowed (no hub lock is held otherwise).
  virtual void FreeNotifier(std::unique_ptr<Subscription> sub);
};

}  // namespace mmuvisor::notifier

#endif  // MMUVISOR_NOTIFIER_SUBSCRIPTION_H_
