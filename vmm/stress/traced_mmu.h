// Trace plumbing for stress runs:
//   - TracedSecondaryMmu: a dma::DeviceMmu (an mmu::SecondaryMmu) that records each invalidation window it
//     sees (start..end) as a complete event on a per-subscription row of the invalidating
//     thread. Recording is an append to a per-thread buffer (trace_log.h); with the trace
//     off it adds one branch.
//   - DmaTrace: the DMA path's faults (with their duration) and retries.
// Threads: hub callbacks on invalidating threads; the open-window stack is thread_local
// (a start and its end run on the same thread, hub.h).
#ifndef MMUVISOR_VMM_STRESS_TRACED_MMU_H_
#define MMUVISOR_VMM_STRESS_TRACED_MMU_H_

#include <cstdint>
#include <string>

#include "mmu/secondary_mmu.h"
#include "vmm/dma/device_mmu.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

class TracedSecondaryMmu : public dma::DeviceMmu {
 public:
  // `trace` may be null or disabled; `slot` (0..15) picks this MMU's row per thread.
  TracedSecondaryMmu(mmu::Primary& primary, mmu::SecondaryMmuOptions options,
                     TraceLog* trace, uint32_t slot);
  notifier::StartResult InvalidateRangeStart(const notifier::Range& range) override;
  void InvalidateRangeEnd(const notifier::Range& range) override;

 private:
  TraceLog* const trace_;
  const uint32_t slot_;
  const std::string name_;
};

class DmaTrace : public dma::DmaTraceSink {
 public:
  // `fault_name`/`retry_name`: static event names ("dma fault", "vcpu fault", ...).
  DmaTrace(TraceLog& trace, const char* fault_name, const char* retry_name)
      : trace_(trace), fault_name_(fault_name), retry_name_(retry_name) {}
  void OnDmaFault(uint64_t gpa, uint64_t duration_ns, bool ok) override;
  void OnDmaRetry(uint64_t gpa) override;

 private:
  TraceLog& trace_;
  const char* const fault_name_;
  const char* const retry_name_;
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_TRACED_MMU_H_
