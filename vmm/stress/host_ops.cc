#include "vmm/stress/host_ops.h"

#include <algorithm>

#include "absl/time/time.h"
#include "notifier/base/page.h"
#include "vmm/stress/fault_injection.h"

namespace mmuvisor::vmm::stress {
namespace {
}  // namespace

const char* HostOpName(HostOp op) {
  switch (op) {
    case HostOp::kReclaim: return "reclaim";
    case HostOp::kDiscard: return "discard";
    case HostOp::kMigrate: return "migrate";
    case HostOp::kProtect: return "protect";
    case HostOp::kOomReap: return "oom-reap";
  }
  return "?";
}

HostOpDriver::HostOpDriver(const StressOptions& options, uint64_t range_start,
                           uint64_t range_end, HostOpTarget& target, TraceLog* trace)
    : options_(options), start_(range_start), end_(range_end),
      target_(target),
      trace_(trace != nullptr && trace->enabled() ? trace : nullptr) {}

HostOpDriver::~HostOpDriver() { Stop(); }

void HostOpDriver::Start() {
  const double rates[kHostOpKinds] = {options_.ops.reclaim, options_.ops.discard,
                                      options_.ops.migrate, options_.ops.protect,
                                      options_.ops.oom_reap};
  for (int k = 0; k < kHostOpKinds; ++k) {
    if (rates[k] <= 0 || !target_.Supports(static_cast<HostOp>(k))) continue;
    threads_.emplace_back([this, k, rate = rates[k]] { Loop(static_cast<HostOp>(k), rate); });
  }
}

void HostOpDriver::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
  }
  cv_.notify_all();
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

uint64_t HostOpDriver::ops_done() const { return done_.load(std::memory_order_relaxed); }
uint64_t HostOpDriver::ops_failed() const { return failed_.load(std::memory_order_relaxed); }

bool HostOpDriver::StopRequested(absl::Duration period) {
  MutexLock lock(&mu_);
  return mu_.AwaitFor(cv_, period, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; });
}

void HostOpDriver::Loop(HostOp op, double rate) {
  const int kind = static_cast<int>(op);
  if (trace_ != nullptr) trace_->NameThisThread(std::string("host ") + HostOpName(op));
  const absl::Duration period = absl::Seconds(1.0 / rate);
  const uint64_t pages = (end_ - start_) / kPageSize;
  const uint64_t span = std::min<uint64_t>(options_.op_pages, pages);
  if (span == 0) return;
  uint64_t hand = 0;  // reclaim's clock hand, in pages
  for (uint64_t n = 0; !StopRequested(period); ++n) {
    uint64_t first;
    if (op == HostOp::kReclaim) {
      const std::optional<double> resident = target_.ResidentFraction();
      if (resident.has_value() && *resident <= options_.resident_target) continue;
      if (hand + span > pages) hand = 0;
      first = hand;
      hand += span;
    } else {
      first = Mix64(options_.seed ^ (uint64_t{0x100} << kind) ^ Mix64(n)) % (pages - span + 1);
    }
    const uint64_t gpa = start_ + first * kPageSize;
    const uint64_t t0 = trace_ != nullptr ? trace_->NowNs() : 0;
    const absl::Status s = target_.Run(op, gpa, span * kPageSize);
    if (trace_ != nullptr) {
      trace_->Complete("host", HostOpName(op), t0, trace_->NowNs() - t0, "gpa", gpa, "len",
                       span * kPageSize);
    }
    // relaxed: statistics.
    (s.ok() ? done_ : failed_).fetch_add(1, std::memory_order_relaxed);
  }
}

}  // namespace mmuvisor::vmm::stress
