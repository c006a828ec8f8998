// OomReap (oom_reap.h): non-blockable reclaim windows, retried with backoff.
#include "vmm/host/oom_reap.h"

#include <algorithm>

#include "absl/time/clock.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/reclaim_steps.h"

namespace mmuvisor::vmm {
namespace {

// One attempt: Unavailable when the window could not open or a step would have waited.
absl::StatusOr<ReclaimResult> ReapOnce(HostAddressSpace& space, PageRange range) {
  MMUVISOR_ASSIGN_OR_RETURN(
      HostWindow window,
      HostWindow::Open(space, range, notifier::Event::kClear, WindowMode::kNonBlockable,
                       notifier::EventName(notifier::Event::kClear)));
  absl::StatusOr<ReclaimResult> r = SaveAndDiscard(window, /*discarded=*/nullptr);
  const absl::Status closed = window.Close();
  if (!r.ok()) return r.status();
  MMUVISOR_RETURN_IF_ERROR(closed);
  return r;
}

}  // namespace

absl::StatusOr<OomReapResult> OomReap(HostAddressSpace& space, PageRange range) {
  MMUVISOR_RETURN_IF_ERROR(HostWindow::CheckRange(space, range));
  HostCounters& c = HostWindow::CountersOf(space);
  const OomReapOptions& options = HostWindow::OomOptionsOf(space);
  OomReapResult out;
  HostCounters::Add(c.oom_reaps, 1);
  absl::Duration backoff = options.initial_backoff;
  const int attempts = std::max(1, options.max_attempts);
  for (int attempt = 1; attempt <= attempts; ++attempt) {
    out.attempts = attempt;
    absl::StatusOr<ReclaimResult> r = ReapOnce(space, range);
    if (r.ok()) {
      out.reaped = true;
      out.reclaim = *r;
      HostCounters::Add(c.reclaimed_pages, r->reclaimed);
      HostCounters::Add(c.written_back, r->written_back);
      HostCounters::Add(c.skipped_clean, r->skipped_clean);
      HostCounters::Add(c.save_failures, r->save_failures);
      return out;
    }
    if (!absl::IsUnavailable(r.status())) return r.status();
    ++out.eagain_retries;
    HostCounters::Add(c.oom_eagain_retries, 1);
    if (attempt < attempts) {
      absl::SleepFor(backoff);
      backoff = std::min(backoff * 2, options.max_backoff);
    }
  }
  HostCounters::Add(c.oom_skipped, 1);
  return out;
}

}  // namespace mmuvisor::vmm
