// The classic half of the hub: registration, dispatch under SRCU, young ops, teardown.
// The interval half is in hub_itree.cc.
#include "notifier/hub.h"

#include <algorithm>
#include <cassert>
#include <memory>
#include <utility>

#include "absl/strings/str_format.h"

namespace mmuvisor::notifier {
namespace {

absl::Status CheckOpCombination(const Subscription& sub) {
  const OpSet ops = sub.ops();
  if (ops.Has(Op::kArchInvalidateSecondaryTlbs) &&
      (ops.Has(Op::kInvalidateRangeStart) || ops.Has(Op::kInvalidateRangeEnd))) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "register subscription '%s': arch_invalidate_secondary_tlbs excludes "
        "invalidate_range_start/end",
        sub.name()));
  }
  if (ops.Has(Op::kStartMayFail) && ops.Has(Op::kInvalidateRangeEnd)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "register subscription '%s': a start that may fail excludes invalidate_range_end "
        "(the subscription could not learn that its start failed)",
        sub.name()));
  }
  return absl::OkStatus();
}

}  // namespace

const char* PolicyName(Policy policy) {
  switch (policy) {
    case Policy::kUpstream: return "kUpstream";
    case Policy::kSortedEndLast: return "kSortedEndLast";
    case Policy::kLegacyUnpaired: return "kLegacyUnpaired";
  }
  return "kUnknown";
}

NotifierSubscriptions::NotifierSubscriptions(HubOptions options)
    : options_(options), checker_(options.check_pairing), gate_(srcu_) {
  list_.store(new SubscriptionList(), std::memory_order_release);
}

NotifierSubscriptions::~NotifierSubscriptions() {
  srcu_.Barrier();
  std::vector<Subscription*> gets;
  {
    MutexLock lock(&reg_mu_);
    for (Subscription* sub : linked_) {
      assert(sub->allocator_ != nullptr && "~NotifierSubscriptions: still registered");
      if (sub->allocator_ != nullptr) gets.push_back(sub);
    }
    linked_.clear();
    for (Subscription* sub : unlinked_gets_) gets.push_back(sub);
    unlinked_gets_.clear();
  }
  for (Subscription* sub : gets) {
    sub->allocator_->FreeNotifier(std::unique_ptr<Subscription>(sub));
  }
  // relaxed: no reader can exist any more (destruction is single-threaded).
  delete list_.load(std::memory_order_relaxed);
}

// ---- Registration ---------------------------------------------------------------------

void NotifierSubscriptions::PublishLocked() {
  auto next = std::make_unique<SubscriptionList>();
  // Newest registered first (Linux hlist_add_head_rcu).
  next->subs.assign(linked_.rbegin(), linked_.rend());
  if (options_.policy == Policy::kSortedEndLast) {
    // The thread's v3: end-needing subscriptions last, order kept within each group.
    std::stable_partition(next->subs.begin(), next->subs.end(), [](Subscription* s) {
      return !s->ops().Has(Op::kInvalidateRangeEnd);
    });
  }
  for (Subscription* sub : next->subs) {
    if (sub->ops().Has(Op::kInvalidateRangeStart)) next->starters.push_back(sub);
    if (sub->ops().Has(Op::kInvalidateRangeEnd)) next->enders.push_back(sub);
  }
  next->end_needers = static_cast<int>(next->enders.size());
  // release: pairs with the acquire loads in dispatch, which then see a complete list.
  const SubscriptionList* old = list_.exchange(next.release(), std::memory_order_acq_rel);
  // Readers still walking `old` are in SRCU sections that began before the exchange.
  srcu_.CallAfterGracePeriod([old] { delete old; });
}

absl::Status NotifierSubscriptions::LinkLocked(Subscription& sub) {
  if (absl::Status s = CheckOpCombination(sub); !s.ok()) return s;
  if (sub.hub_ != nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "register subscription '%s': already registered with a hub", sub.name()));
  }
  if (torn_down()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "register subscription '%s': the address space was torn down", sub.name()));
  }
  // Linux registers under mm_take_all_locks(): no start/end window may be open while the
  // list changes, so a new subscription never gets an end without its start.
  gate_.Close();
  sub.hub_ = this;
  sub.register_order_ = next_order_++;
  sub.released_.store(false, std::memory_order_relaxed);  // relaxed: not yet visible
  // release: pairs with the acquire in PairingChecker::CheckLinked.
  sub.link_state_.store(Subscription::LinkState::kLinked, std::memory_order_release);
  linked_.push_back(&sub);
  PublishLocked();
  gate_.Open();
  return absl::OkStatus();
}

void NotifierSubscriptions::UnlinkLocked(Subscription& sub) {
  auto it = std::find(linked_.begin(), linked_.end(), &sub);
  if (it == linked_.end()) return;
  linked_.erase(it);
  PublishLocked();
  checker_.OnUnlinked(sub);
}

absl::Status NotifierSubscriptions::Register(Subscription& sub) {
  MutexLock lock(&reg_mu_);
  return LinkLocked(sub);
}

absl::Status NotifierSubscriptions::Unregister(Subscription& sub) {
  {
    MutexLock lock(&reg_mu_);
    if (sub.hub_ != this) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "unregister subscription '%s': not registered with this hub", sub.name()));
    }
    if (sub.allocator_ != nullptr) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "unregister subscription '%s': it came from Get; use Put", sub.name()));
    }
  }
  // Linux calls release while still linked, inside a read-side section, then unlinks.
  // acq_rel: exactly one of Unregister and teardown wins the exchange.
  if (sub.ops().Has(Op::kRelease) && !sub.released_.exchange(true, std::memory_order_acq_rel)) {
    SrcuReadSection read(srcu_);
    sub.Release(*this);
  }
  {
    MutexLock lock(&reg_mu_);
    UnlinkLocked(sub);
  }
  // Waits for every callback that may still be running on `sub`, including a release
  // started by a concurrent teardown.
  srcu_.Synchronize();
  MutexLock lock(&reg_mu_);
  sub.hub_ = nullptr;
  // release: pairs with the acquire in PairingChecker::CheckLinked.
  sub.link_state_.store(Subscription::LinkState::kUnregistered, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<Subscription*> NotifierSubscriptions::Get(SubscriptionAllocator& allocator) {
  MutexLock lock(&reg_mu_);
  for (Subscription* sub : linked_) {
    if (sub->allocator_ == &allocator) {
      ++sub->users_;
      return sub;
    }
  }
  if (torn_down()) {
    return absl::FailedPreconditionError(
        "get subscription: the address space was torn down");
  }
  absl::StatusOr<std::unique_ptr<Subscription>> made = allocator.AllocNotifier(*this);
  if (!made.ok()) return made.status();
  std::unique_ptr<Subscription> sub = *std::move(made);
  if (sub == nullptr) {
    return absl::InternalError("get subscription: AllocNotifier returned null");
  }
  if (absl::Status s = LinkLocked(*sub); !s.ok()) {
    allocator.FreeNotifier(std::move(sub));
    return s;
  }
  sub->allocator_ = &allocator;
  sub->users_ = 1;
  return sub.release();
}

absl::Status NotifierSubscriptions::Put(Subscription& sub) {
  MutexLock lock(&reg_mu_);
  if (sub.hub_ != this || sub.allocator_ == nullptr || sub.users_ == 0) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "put subscription '%s': not a Get subscription of this hub with users",
        sub.name()));
  }
  if (--sub.users_ > 0) return absl::OkStatus();
  UnlinkLocked(sub);
  unlinked_gets_.erase(std::remove(unlinked_gets_.begin(), unlinked_gets_.end(), &sub),
                       unlinked_gets_.end());
  Subscription* dying = &sub;
  // Put never calls release. The free runs after a grace period (Linux call_srcu).
  srcu_.CallAfterGracePeriod([dying] {
    dying->hub_ = nullptr;
    // release: pairs with the acquire in PairingChecker::CheckLinked.
    dying->link_state_.store(Subscription::LinkState::kUnregistered,
                             std::memory_order_release);
    dying->allocator_->FreeNotifier(std::unique_ptr<Subscription>(dying));
  });
  return absl::OkStatus();
}

void NotifierSubscriptions::Synchronize() { srcu_.Barrier(); }

size_t NotifierSubscriptions::subscription_count() const {
  MutexLock lock(&reg_mu_);
  return linked_.size();
}

PairingSummary NotifierSubscriptions::pairing_summary() const {
  PairingCounters linked;
  {
    MutexLock lock(&reg_mu_);
    for (const Subscription* sub : linked_) {
      const PairingCounters c = sub->pairing();
      linked.starts += c.starts;
      linked.ends += c.ends;
      linked.open += c.open;
    }
  }
  return checker_.Summary(linked);
}

// ---- Teardown -------------------------------------------------------------------------

void NotifierSubscriptions::Release() {
  // Interval subscriptions first: one blockable kRelease invalidation of everything
  // (Linux mn_itree_release). They stay inserted; their owners Remove them.
  if (has_itree_.load(std::memory_order_acquire)) {
    Range all{0, UINT64_MAX, Event::kRelease, /*blockable=*/true, nullptr};
    ItreeStart(all);
    ItreeEnd();
  }
  std::vector<Subscription*> subs;
  {
    MutexLock lock(&reg_mu_);
    // acq_rel: a second Release returns here; pairs with torn_down() loads.
    if (torn_down_.exchange(true, std::memory_order_acq_rel)) return;
    subs.assign(linked_.rbegin(), linked_.rend());
  }
  {
    SrcuReadSection read(srcu_);
    for (Subscription* sub : subs) {
      // acq_rel: exactly one of teardown and Unregister calls release.
      if (sub->ops().Has(Op::kRelease) &&
          !sub->released_.exchange(true, std::memory_order_acq_rel)) {
        sub->Release(*this);
      }
    }
  }
  {
    MutexLock lock(&reg_mu_);
    for (Subscription* sub : linked_) {
      checker_.OnUnlinked(*sub);
      if (sub->allocator_ != nullptr) unlinked_gets_.push_back(sub);
    }
    std::vector<Subscription*> gone;
    gone.swap(linked_);
    PublishLocked();
    srcu_.CallAfterGracePeriod([gone] {
      for (Subscription* sub : gone) {
        // release: pairs with the acquire in PairingChecker::CheckLinked.
        sub->link_state_.store(Subscription::LinkState::kTornDown, std::memory_order_release);
      }
    });
  }
  srcu_.Barrier();
}

}  // namespace mmuvisor::notifier
