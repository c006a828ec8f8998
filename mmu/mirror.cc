// Mirror: the machinery of the HMM-style mirror (test_hmm's dmirror, in our words).
#include "mmu/mirror.h"

#include <thread>
#include <utility>

#include "absl/strings/str_cat.h"
#include "notifier/base/mutex.h"
#include "notifier/hub.h"

namespace mmuvisor::mmu {
namespace {

constexpr int kYieldingRetries = 64;

}  // namespace

Mirror::Mirror(Primary& primary, MirrorOptions options)
    : primary_(primary), options_(std::move(options)) {}

Mirror::~Mirror() = default;

void Mirror::SetFaultHooksForTesting(FaultHooks hooks) {
  hooks_ = std::make_unique<FaultHooks>(std::move(hooks));
}

bool Mirror::Covers(uint64_t address) const {
  const uint64_t page = address >> kPageShift;
  return attached_ && page >= first_page_ && page < end_page_;
}

absl::Status Mirror::Attach(notifier::NotifierSubscriptions& hub, uint64_t start,
                            uint64_t length) {
  if ((start | length) & (kPageSize - 1)) {
    return absl::InvalidArgumentError(absl::StrCat("Mirror::Attach start=0x", absl::Hex(start),
                                                   " length=0x", absl::Hex(length),
                                                   ": not page aligned"));
  }
  {
    MutexLock lock(&mu_);
    if (attached_) {
      return absl::FailedPreconditionError(absl::StrCat(
          "Mirror::Attach start=0x", absl::Hex(start), ": ", options_.name,
          " is already attached"));
    }
  }
  absl::Status inserted = Insert(hub, start, length);
  if (!inserted.ok()) return inserted;
  MutexLock lock(&mu_);
  attached_ = true;
  first_page_ = start >> kPageShift;
  end_page_ = (start + length) >> kPageShift;
  return absl::OkStatus();
}

void Mirror::SetDetachHookForTesting(std::function<void()> between_steps) {
  detach_hook_ = std::move(between_steps);
}

absl::Status Mirror::DetachedError(const char* op, uint64_t address) const {
  return absl::FailedPreconditionError(absl::StrCat("Mirror::", op, " address=0x",
                                                    absl::Hex(address), ": ", options_.name,
                                                    " is detached"));
}

absl::Status Mirror::Detach() {
  // Step 1, under the user lock: from here Fault installs nothing and AccessPage uses
  // nothing, so the window before Remove (invalidations may still reach us, or may already
  // not) holds no entry an invalidation could miss. Linux drivers do the same: stop their
  // device's use of the range, then mmu_interval_notifier_remove.
  {
    MutexLock lock(&mu_);
    if (!attached_) {
      return absl::FailedPreconditionError(
          absl::StrCat("Mirror::Detach: ", options_.name, " is not attached"));
    }
    attached_ = false;
    zapped_.fetch_add(pt_.ZapRange({0, kMaxGfn + 1}), std::memory_order_relaxed);
    pt_.ReclaimRetired();  // no lockless readers of pt_
  }
  if (detach_hook_) detach_hook_();
  // Faults that entered before step 1 may still call ReadBegin (it requires the interval
  // inserted): let them end. Each stops at its next attached_ check (the locked one before
  // the install, or the next attempt's), so within one attempt.
  {
    MutexLock lock(&flight_mu_);
    flight_mu_.Await(flight_cv_, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
      return faults_in_flight_ == 0;  // flight_mu_ is held inside Await
    });
  }
  // Step 2: no Invalidate runs after Remove returns (dmirror release).
  absl::Status removed = Remove();
  if (!removed.ok()) {
    // Still inserted as far as we know: be attached again, with no entries (consistent:
    // faults refill the table under the interval's protocol).
    MutexLock lock(&mu_);
    attached_ = true;
    return absl::Status(removed.code(), absl::StrCat("Mirror::Detach ", options_.name,
                                                     ": remove: ", removed.message()));
  }
  return absl::OkStatus();
}

absl::Status Mirror::EnterFault(uint64_t address) {
  ReaderMutexLock lock(&mu_);
  if (!attached_) return DetachedError("Fault", address);
  if (!Covers(address)) {
    return absl::OutOfRangeError(absl::StrCat("Mirror::Fault address=0x", absl::Hex(address),
                                              ": outside the mirrored interval of ",
                                              options_.name));
  }
  // Inside mu_ with attached_ true: Detach's first step has not run yet, so its drain
  // will see us (pairs with the Await in Detach).
  MutexLock flight(&flight_mu_);
  ++faults_in_flight_;
  return absl::OkStatus();
}

void Mirror::ExitFault() {
  MutexLock lock(&flight_mu_);
  if (--faults_in_flight_ == 0) flight_cv_.notify_all();
}

bool Mirror::Invalidate(const notifier::Range& range, uint64_t cur_seq) {
  // dmirror_interval_invalidate: our own migrations are handled by the migration itself.
  if (range.event == notifier::Event::kMigrate && options_.owner != nullptr &&
      range.owner == options_.owner) {
    return true;
  }
  if (range.blockable) {
    mu_.Lock();
  } else if (!mu_.TryLock()) {
    // Would have to wait for a fault or an access holding the lock: refuse (EAGAIN).
    refusals_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  // Under the user lock, before tearing down: pairs with ReadRetry in Fault.
  SetSeq(cur_seq);
  // Round the end up without overflowing (teardown invalidates up to UINT64_MAX).
  const GfnRange pages{range.start >> kPageShift,
                       (range.end >> kPageShift) + ((range.end & (kPageSize - 1)) != 0)};
  zapped_.fetch_add(pt_.ZapRange(pages), std::memory_order_relaxed);
  pt_.ReclaimRetired();  // no lockless readers of pt_
  invalidations_.fetch_add(1, std::memory_order_relaxed);
  mu_.Unlock();
  return true;
}

absl::Status Mirror::Fault(uint64_t address, Access access) {
  faults_.fetch_add(1, std::memory_order_relaxed);
  absl::Status entered = EnterFault(address);
  if (!entered.ok()) return entered;
  const absl::Status status = FaultAttempts(address, access);
  ExitFault();
  return status;
}

absl::Status Mirror::FaultAttempts(uint64_t address, Access access) {
  const FaultHooks* hooks = hooks_.get();
  const bool checks = hooks == nullptr || hooks->retry_checks;
  const uint64_t page_address = address & ~(kPageSize - 1);
  const Gfn page_index = address >> kPageShift;
  absl::Time deadline = absl::InfinitePast();
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) {
      retries_.fetch_add(1, std::memory_order_relaxed);
      if (hooks != nullptr && hooks->on_retry) hooks->on_retry(page_index, attempt);
      {
        // Detach waits for us: stop at the next attempt, not only at the install.
        ReaderMutexLock lock(&mu_);
        if (!attached_) return DetachedError("Fault", address);
      }
      const absl::Time now = absl::Now();
      if (deadline == absl::InfinitePast()) deadline = now + options_.retry_timeout;
      if (now > deadline) {
        timeouts_.fetch_add(1, std::memory_order_relaxed);
        return absl::DeadlineExceededError(absl::StrCat(
            "Mirror::Fault address=0x", absl::Hex(address), " access=", AccessName(access),
            ": still racing invalidations after ", attempt, " attempts and ",
            absl::FormatDuration(options_.retry_timeout)));
      }
      if (attempt < kYieldingRetries) {
        std::this_thread::yield();
      } else {
        absl::SleepFor(absl::Microseconds(50));
      }
    }
    // mmu_interval_read_begin: sleeps while an overlapping window is open.
    const uint64_t seq = ReadBegin();
    if (hooks != nullptr && hooks->after_snapshot) hooks->after_snapshot(page_index, attempt);

    absl::StatusOr<PrimaryPage> page = primary_.Resolve(page_address, access);
    if (!page.ok()) {
      if (absl::IsUnavailable(page.status())) continue;  // hmm_range_fault -EBUSY: retry
      return absl::Status(page.status().code(),
                          absl::StrCat("Mirror::Fault address=0x", absl::Hex(address),
                                       " access=", AccessName(access), ": ",
                                       page.status().message()));
    }
    if (access == Access::kWrite && !page->writable) {
      return absl::PermissionDeniedError(absl::StrCat(
          "Mirror::Fault address=0x", absl::Hex(address),
          " access=write: the primary returned a read-only page"));
    }
    if (hooks != nullptr && hooks->after_resolve) hooks->after_resolve(page_index, attempt);
    // Lockless hint (mmu_interval_check_retry): skip the lock if already stale.
    if (checks && CheckRetry(seq)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    if (hooks != nullptr && hooks->before_install) hooks->before_install(page_index, attempt);

    MutexLock lock(&mu_);
    // Detach began since we entered: its zap is done, install nothing (no ReadRetry can
    // see an invalidation that no longer reaches us).
    if (!attached_) return DetachedError("Fault", address);
    // mmu_interval_read_retry under the user lock, which Invalidate holds around SetSeq.
    if (checks && ReadRetry(seq)) {
      stale_.fetch_add(1, std::memory_order_relaxed);
      continue;
    }
    absl::Status mapped =
        pt_.Map(page_index, ShadowEntry{page->host_address, page->writable, true,
                                        access == Access::kWrite});
    if (!mapped.ok()) return mapped;
    installs_.fetch_add(1, std::memory_order_relaxed);
    return absl::OkStatus();
  }
}

absl::Status Mirror::AccessPage(uint64_t address, Access access,
                                absl::FunctionRef<void(uint64_t host_address)> fn) {
  const Gfn page_index = address >> kPageShift;
  for (int faults = 0;; ++faults) {
    {
      MutexLock lock(&mu_);
      // Detach's first step zapped every entry under mu_: nothing to find. Belt and braces.
      if (!attached_) return DetachedError("AccessPage", address);
      const std::optional<ShadowEntry> entry = pt_.Lookup(page_index);
      if (entry.has_value() && (access == Access::kRead || entry->writable)) {
        pt_.MarkAccessed(page_index, entry->Encode(), access == Access::kWrite);
        accesses_.fetch_add(1, std::memory_order_relaxed);
        fn(entry->host_address);
        return absl::OkStatus();
      }
    }
    // Missing: fault it in (dmirror_read -> dmirror_fault on -ENOENT) and look again. An
    // invalidation may zap it before we relock; Fault's own deadline bounds each round.
    absl::Status faulted = Fault(address, access);
    if (!faulted.ok()) return faulted;
  }
}

std::optional<ShadowEntry> Mirror::Lookup(uint64_t address) const {
  ReaderMutexLock lock(&mu_);
  return pt_.Lookup(address >> kPageShift);
}

uint64_t Mirror::mapped_count() const {
  ReaderMutexLock lock(&mu_);
  return pt_.mapped_count();
}

MirrorStats Mirror::stats() const {
  // relaxed: statistics.
  return MirrorStats{faults_.load(std::memory_order_relaxed),
                     retries_.load(std::memory_order_relaxed),
                     stale_.load(std::memory_order_relaxed),
                     installs_.load(std::memory_order_relaxed),
                     timeouts_.load(std::memory_order_relaxed),
                     invalidations_.load(std::memory_order_relaxed),
                     refusals_.load(std::memory_order_relaxed),
                     zapped_.load(std::memory_order_relaxed),
                     accesses_.load(std::memory_order_relaxed)};
}

}  // namespace mmuvisor::mmu
