// The classic half of the hub: registration, dispatch under SRCU, young ops, teardown.
// The interval half is in hub_itree.cc.
#include "notifier/hub.h"

#include <algorithm>
#include <cassert>
#include <memory>
#include <utility>

#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"

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

absl::Status NotifierSubscriptions::CheckLinkableLocked(const Subscription& sub) const {
  MMUVISOR_RETURN_IF_ERROR(CheckOpCombination(sub));
  if (sub.hub_ != nullptr) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "register subscription '%s': already registered with a hub", sub.name()));
  }
  if (torn_down()) {
    return absl::FailedPreconditionError(absl::StrFormat(
        "register subscription '%s': the address space was torn down", sub.name()));
  }
  return absl::OkStatus();
}

absl::Status NotifierSubscriptions::LinkLocked(Subscription& sub) {
  // Tested again with the gate closed: teardown may have begun while the closer waited.
  MMUVISOR_RETURN_IF_ERROR(CheckLinkableLocked(sub));
  sub.hub_ = this;
  sub.register_order_ = next_order_++;
  sub.released_.store(false, std::memory_order_relaxed);  // relaxed: not yet visible
  // A re-registered subscription starts its pairing counts afresh: the previous link's
  // totals went to the checker's retired sums when it was unlinked, and would be added
  // twice at the next unlink. No walk can touch them now: Unregister's grace period
  // finished every walk of the old link. relaxed: statistics, not yet visible.
  sub.pairs_.store(0, std::memory_order_relaxed);
  sub.failed_starts_.store(0, std::memory_order_relaxed);
  sub.max_depth_.store(0, std::memory_order_relaxed);
  // release: pairs with the acquire in PairingChecker::CheckLinked.
  sub.link_state_.store(Subscription::LinkState::kLinked, std::memory_order_release);
  linked_.push_back(&sub);
  PublishLocked();
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
  {
    // Fail fast: a registration that cannot succeed does not wait for open windows.
    MutexLock lock(&reg_mu_);
    MMUVISOR_RETURN_IF_ERROR(CheckLinkableLocked(sub));
  }
  MutexLock link(&link_mu_);
  // Linux registers under mm_take_all_locks(): no start/end window may be open while the
  // list changes, so a new subscription never gets an end without its start. The wait
  // for open windows holds link_mu_ only, so a leaked window blocks registrations, not
  // Unregister, Put, teardown or the introspection calls (which take reg_mu_).
  gate_.Close();
  absl::Status s;
  {
    MutexLock lock(&reg_mu_);
    s = LinkLocked(sub);
  }
  gate_.Open();
  return s;
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
  {
    // Linux mmu_notifier_unregister: srcu_read_lock *before* ->release. The section is
    // entered before the claim below, so a teardown that finds the release claimed
    // (its exchange reads ours: our section's count happens-before its grace period)
    // waits in its closing grace period until this ->release has returned.
    SrcuReadSection read(srcu_);
    // acq_rel: exactly one of Unregister and teardown wins the exchange.
    if (sub.ops().Has(Op::kRelease) &&
        !sub.released_.exchange(true, std::memory_order_acq_rel)) {
      if (hooks_ != nullptr && hooks_->unregister_release_claimed) {
        hooks_->unregister_release_claimed(sub);
      }
      // acquire: pairs with the release store at the end of Release(); a ->release that
      // starts after teardown returned is what this ordering exists to prevent.
      checker_.OnRelease(sub, teardown_returned_.load(std::memory_order_acquire));
      sub.Release(*this);
    }
  }
  {
    MutexLock lock(&reg_mu_);
    UnlinkLocked(sub);
  }
  // Waits for every callback that may still be running on `sub`: dispatch walks, a
  // release run by a concurrent teardown, and teardown's walk itself (it is a reader and
  // may still hold `sub` in the list it loaded).
  srcu_.Synchronize();
  MutexLock lock(&reg_mu_);
  sub.hub_ = nullptr;
  // release: pairs with the acquire in PairingChecker::CheckLinked.
  sub.link_state_.store(Subscription::LinkState::kUnregistered, std::memory_order_release);
  return absl::OkStatus();
}

absl::StatusOr<Subscription*> NotifierSubscriptions::FindGetLocked(
    SubscriptionAllocator& allocator) {
  // Before the search: a linked subscription of a dying hub is being released; a new
  // user would get one that no longer mirrors anything (Linux: get needs mm_users > 0).
  if (torn_down()) {
    return absl::FailedPreconditionError(
        "get subscription: the address space was torn down");
  }
  for (Subscription* sub : linked_) {
    if (sub->allocator_ == &allocator) {
      ++sub->users_;
      return sub;
    }
  }
  return nullptr;
}

absl::StatusOr<Subscription*> NotifierSubscriptions::AllocAndLinkLocked(
    SubscriptionAllocator& allocator, std::unique_ptr<Subscription>* unlinked) {
  // Again: another Get may have linked one, or teardown begun, while the gate closed.
  absl::StatusOr<Subscription*> found = FindGetLocked(allocator);
  if (!found.ok() || *found != nullptr) return found;
  absl::StatusOr<std::unique_ptr<Subscription>> made = allocator.AllocNotifier(*this);
  if (!made.ok()) return made.status();
  std::unique_ptr<Subscription> sub = *std::move(made);
  if (sub == nullptr) {
    return absl::InternalError("get subscription: AllocNotifier returned null");
  }
  if (absl::Status s = LinkLocked(*sub); !s.ok()) {
    *unlinked = std::move(sub);
    return s;
  }
  sub->allocator_ = &allocator;
  sub->users_ = 1;
  return sub.release();
}

absl::StatusOr<Subscription*> NotifierSubscriptions::Get(SubscriptionAllocator& allocator) {
  {
    // A linked subscription needs no registration: no wait for open windows.
    MutexLock lock(&reg_mu_);
    absl::StatusOr<Subscription*> found = FindGetLocked(allocator);
    if (!found.ok() || *found != nullptr) return found;
  }
  std::unique_ptr<Subscription> unlinked;  // made but refused by LinkLocked
  absl::StatusOr<Subscription*> got;
  {
    MutexLock link(&link_mu_);
    gate_.Close();  // as in Register
    {
      MutexLock lock(&reg_mu_);
      got = AllocAndLinkLocked(allocator, &unlinked);
    }
    gate_.Open();
  }
  // Freed with no hub lock held: FreeNotifier may call into the hub (Get, Put,
  // subscription_count...), which would deadlock on reg_mu_. It was never visible.
  if (unlinked != nullptr) allocator.FreeNotifier(std::move(unlinked));
  return got;
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

void NotifierSubscriptions::SetHooksForTesting(HubHooks hooks) {
  srcu_.SetWaitHooksForTesting(hooks.grace_period_waits, hooks.gate_waits);
  hooks_ = std::make_unique<const HubHooks>(std::move(hooks));
}

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
  if (hooks_ != nullptr && hooks_->release_waits) {
    // Test only: report a Release that will block below because another one holds the
    // lock. The probe lock is dropped at once; production never takes this path.
    if (teardown_mu_.TryLock()) {
      teardown_mu_.Unlock();
    } else {
      hooks_->release_waits();
    }
  }
  MutexLock teardown(&teardown_mu_);  // a second caller waits for the first to finish
  {
    MutexLock lock(&reg_mu_);
    // relaxed: read and written under teardown_mu_ here; true means a Release returned.
    if (torn_down_.load(std::memory_order_relaxed)) return;
    // The dying mark, before anything is walked: from here Register and Get fail (they
    // test it under reg_mu_) and so does Insert (itree_dying_, under itree_mu_), so
    // nothing can join the hub behind the walks below. release: pairs with torn_down().
    torn_down_.store(true, std::memory_order_release);
    MutexLock itree_lock(&itree_mu_);
    itree_dying_ = true;
  }
  if (hooks_ != nullptr && hooks_->teardown_marked) hooks_->teardown_marked();
  // Intervals first (Linux mn_itree_release): one blockable kRelease invalidation of
  // everything. They stay inserted; their owners Remove them.
  ItreeRelease();
  {
    // Linux mn_hlist_release: the walk runs inside a read-side section and loads the list
    // inside it. An Unregister (or a last Put) that unlinks a subscription this walk can
    // still see waits for the walk in its grace period (or queues its free behind it),
    // so the walk never touches a subscription after its Unregister returned.
    SrcuReadSection read(srcu_);
    // acquire: pairs with the release in PublishLocked.
    const SubscriptionList* list = list_.load(std::memory_order_acquire);
    if (hooks_ != nullptr && hooks_->teardown_walk) hooks_->teardown_walk();
    for (Subscription* sub : list->subs) {
      // acq_rel: exactly one of teardown and Unregister calls release.
      if (sub->ops().Has(Op::kRelease) &&
          !sub->released_.exchange(true, std::memory_order_acq_rel)) {
        checker_.OnRelease(*sub, /*teardown_returned=*/false);
        sub->Release(*this);
      }
    }
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
  // Linux ends mn_hlist_release with synchronize_srcu: a ->release that a racing
  // Unregister claimed runs inside that Unregister's read-side section, which began
  // before the claim this walk lost, so this grace period waits for it to return.
  srcu_.Barrier();
  // release: pairs with the acquire in Unregister (checker only).
  teardown_returned_.store(true, std::memory_order_release);
}

}  // namespace mmuvisor::notifier
