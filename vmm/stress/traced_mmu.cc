#include "vmm/stress/traced_mmu.h"

#include <vector>

namespace mmuvisor::vmm::stress {
namespace {

struct OpenWindow {
  const void* mmu;
  uint64_t start_ns;
};
// Windows this thread has open, innermost last.
thread_local std::vector<OpenWindow> tls_open_windows;

// A window's slice name: the event as Linux spells it (enum mmu_notifier_event without
// MMU_NOTIFY_, lower case), the word a kernel engineer reads in the trace, not the enum's.
const char* SliceName(notifier::Event event) {
  switch (event) {
    case notifier::Event::kUnmap: return "unmap";
    case notifier::Event::kClear: return "clear";
    case notifier::Event::kProtectionVma: return "protection_vma";
    case notifier::Event::kProtectionPage: return "protection_page";
    case notifier::Event::kSoftDirty: return "soft_dirty";
    case notifier::Event::kRelease: return "release";
    case notifier::Event::kMigrate: return "migrate";
    case notifier::Event::kExclusive: return "exclusive";
  }
  return "unknown";
}

}  // namespace

TracedSecondaryMmu::TracedSecondaryMmu(mmu::Primary& primary,
                                       mmu::SecondaryMmuOptions options, TraceLog* trace,
                                       uint32_t slot)
    : dma::DeviceMmu(primary, options),
      trace_(trace != nullptr && trace->enabled() ? trace : nullptr),
      slot_(slot),
      name_(options.name) {}

notifier::StartResult TracedSecondaryMmu::InvalidateRangeStart(const notifier::Range& range) {
  if (trace_ != nullptr) tls_open_windows.push_back(OpenWindow{this, trace_->NowNs()});
  return dma::DeviceMmu::InvalidateRangeStart(range);
}

void TracedSecondaryMmu::InvalidateRangeEnd(const notifier::Range& range) {
  mmu::SecondaryMmu::InvalidateRangeEnd(range);
  if (trace_ == nullptr) return;
  for (auto it = tls_open_windows.rbegin(); it != tls_open_windows.rend(); ++it) {
    if (it->mmu != this) continue;
    const uint64_t start = it->start_ns;
    tls_open_windows.erase(std::next(it).base());
    trace_->Complete("invalidate", SliceName(range.event), start,
                     trace_->NowNs() - start, "start", range.start, "end", range.end,
                     trace_->TrackFor(slot_, name_));
    return;
  }
}

void DmaTrace::OnDmaFault(uint64_t gpa, uint64_t duration_ns, bool ok) {
  const uint64_t now = trace_.NowNs();
  trace_.Complete(ok ? "fault" : "fault-failed", fault_name_,
                  now > duration_ns ? now - duration_ns : 0, duration_ns, "gpa", gpa);
}

void DmaTrace::OnDmaRetry(uint64_t gpa) { trace_.Instant("retry", retry_name_, "gpa", gpa); }

}  // namespace mmuvisor::vmm::stress
