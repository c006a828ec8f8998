#include "vmm/stress/host_ops.h"

#include <algorithm>
#include <string>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "notifier/base/page.h"
#include "notifier/base/random.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/migrate.h"
#include "vmm/host/oom_reap.h"
#include "vmm/host/protect.h"

namespace mmuvisor::vmm::stress {

const char* HostOpName(HostOp op) {
  switch (op) {
    case HostOp::kMigrate: return "migrate";
    case HostOp::kProtect: return "protect";
    case HostOp::kOomReap: return "oom-reap";
  }
  return "?";
}

HostOpDriver::HostOpDriver(const StressOptions& options, uint64_t range_start,
                           uint64_t range_end, HostAddressSpace& space, TraceLog* trace)
    : options_(options),
      start_((range_start + kPageSize - 1) / kPageSize * kPageSize),
      end_(std::max(start_, range_end / kPageSize * kPageSize)),
      space_(space),
      trace_(trace != nullptr && trace->enabled() ? trace : nullptr) {}

HostOpDriver::~HostOpDriver() { Stop(); }

void HostOpDriver::Start() {
  const std::pair<HostOp, double> kinds[] = {{HostOp::kMigrate, options_.ops.migrate},
                                             {HostOp::kProtect, options_.ops.protect},
                                             {HostOp::kOomReap, options_.ops.oom_reap}};
  for (const std::pair<HostOp, double>& kind : kinds) {
    if (kind.second <= 0) continue;
    threads_.emplace_back([this, kind] { Loop(kind.first, kind.second); });
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
uint64_t HostOpDriver::ops_skipped() const { return skipped_.load(std::memory_order_relaxed); }
uint64_t HostOpDriver::ops_failed() const { return failed_.load(std::memory_order_relaxed); }

std::string HostOpDriver::first_failure() const {
  MutexLock lock(&mu_);
  return first_failure_;
}

bool HostOpDriver::StopRequested(absl::Duration period) {
  MutexLock lock(&mu_);
  return mu_.AwaitFor(cv_, period, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; });
}

absl::Status HostOpDriver::Run(HostOp op, uint64_t gpa, uint64_t len) {
  MMUVISOR_ASSIGN_OR_RETURN(const PageRange pages, space_.PagesOf(Gpa{gpa}, ByteSize{len}));
  switch (op) {
    case HostOp::kMigrate:
      return vmm::Migrate(space_, pages).status();
    case HostOp::kProtect:
      return vmm::Protect(space_, pages, PageProtection::kReadWrite);
    case HostOp::kOomReap: {
      MMUVISOR_ASSIGN_OR_RETURN(const OomReapResult r, vmm::OomReap(space_, pages));
      if (!r.reaped) return absl::UnavailableError("OOM reap skipped after EAGAIN retries");
      return absl::OkStatus();
    }
  }
  return absl::InternalError("unknown host operation");
}

void HostOpDriver::RunOne(HostOp op, uint64_t n) {
  const uint64_t pages = (end_ - start_) / kPageSize;
  const uint64_t span = std::min<uint64_t>(options_.op_pages, pages);
  if (span == 0) return;
  const uint64_t stream = uint64_t{0x100} << (static_cast<int>(op) + 2);
  const uint64_t first = Mix64(options_.seed ^ stream ^ Mix64(n)) % (pages - span + 1);
  const uint64_t gpa = start_ + first * kPageSize;
  const uint64_t t0 = trace_ != nullptr ? trace_->NowNs() : 0;
  const absl::Status s = Run(op, gpa, span * kPageSize);
  if (trace_ != nullptr) {
    trace_->Complete("host", HostOpName(op), t0, trace_->NowNs() - t0, "gpa", gpa, "len",
                     span * kPageSize);
  }
  // relaxed: statistics.
  if (s.ok()) {
    done_.fetch_add(1, std::memory_order_relaxed);
  } else if (op == HostOp::kOomReap && absl::IsUnavailable(s)) {
    skipped_.fetch_add(1, std::memory_order_relaxed);  // the non-blockable path gave up
  } else if (failed_.fetch_add(1, std::memory_order_relaxed) == 0) {
    MutexLock lock(&mu_);
    first_failure_ = absl::StrCat(HostOpName(op), " [0x", absl::Hex(gpa), ", +0x",
                                  absl::Hex(span * kPageSize), "): ", s.message());
  }
}

void HostOpDriver::Loop(HostOp op, double rate) {
  if (trace_ != nullptr) trace_->NameThisThread(std::string("host ") + HostOpName(op));
  if (end_ == start_) return;  // no page to operate on
  const absl::Duration period = absl::Seconds(1.0 / rate);
  for (uint64_t n = 0; !StopRequested(period); ++n) RunOne(op, n);
}

}  // namespace mmuvisor::vmm::stress
