#include "vmm/stress/memslot_churn.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "vmm/host/memslot_change.h"
#include "vmm/host/unmap.h"

namespace mmuvisor::vmm::stress {
namespace {

const char* StepName(uint64_t n) {
  switch (n % 3) {
    case 0: return "memslot add";
    case 1: return "memslot move";
    default: return "memslot delete";
  }
}

}  // namespace

MemslotChurn::MemslotChurn(HostAddressSpace& space, SpareSlot spare, double rate,
                           TraceLog* trace)
    : space_(space),
      spare_(spare),
      rate_(rate),
      trace_(trace != nullptr && trace->enabled() ? trace : nullptr) {}

MemslotChurn::~MemslotChurn() { Stop(); }

void MemslotChurn::Start() {
  thread_ = std::thread([this] { Loop(); });
}

void MemslotChurn::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

MemslotChurnStats MemslotChurn::stats() const {
  MemslotChurnStats s;
  s.adds = adds_.load(std::memory_order_relaxed);
  s.moves = moves_.load(std::memory_order_relaxed);
  s.deletes = deletes_.load(std::memory_order_relaxed);
  s.failures = failures_.load(std::memory_order_relaxed);
  MutexLock lock(&mu_);
  s.first_failure = first_failure_;
  return s;
}

absl::Status MemslotChurn::Step(uint64_t n) {
  switch (n % 3) {
    case 0:
      return AddMemslot(space_,
                        RamSlot{spare_.slot, spare_.a, spare_.first_page, spare_.num_pages, 0});
    case 1:
      return MoveMemslot(space_, spare_.slot, spare_.b);
    default:
      return Unmap(space_, spare_.slot);
  }
}

void MemslotChurn::Loop() {
  if (trace_ != nullptr) trace_->NameThisThread("host memslot churn");
  const absl::Duration period = absl::Seconds(1.0 / rate_);
  for (uint64_t n = 0;; ++n) {
    {
      MutexLock lock(&mu_);
      if (mu_.AwaitFor(cv_, period, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; })) {
        return;
      }
    }
    const uint64_t t0 = trace_ != nullptr ? trace_->NowNs() : 0;
    const absl::Status s = Step(n);
    if (trace_ != nullptr) {
      trace_->Complete("host", StepName(n), t0, trace_->NowNs() - t0, "slot", spare_.slot,
                       "gpa", (n % 3 == 0 ? spare_.a : spare_.b).value);
    }
    if (!s.ok()) {
      failures_.fetch_add(1, std::memory_order_relaxed);
      MutexLock lock(&mu_);
      if (first_failure_.empty()) first_failure_ = absl::StrCat(StepName(n), ": ", s.message());
      continue;
    }
    std::atomic<uint64_t>& done = n % 3 == 0 ? adds_ : (n % 3 == 1 ? moves_ : deletes_);
    done.fetch_add(1, std::memory_order_relaxed);
    if (trace_ != nullptr) {
      trace_->Counter("memslots", "slots", space_.memslots()->slots().size());
    }
  }
}

}  // namespace mmuvisor::vmm::stress
