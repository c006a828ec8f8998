// The one stress rig: everything a stress run does around its guest, built once over the
// guest's RAM — vmm/host's HostAddressSpace, an mmu::Primary with its notifier hub — in
// both modes:
//   - the EAGAIN injector (vmm/host's StartFaultSubscription, --eagain), first on the hub;
//   - the DMA path: a SecondaryMmu "dma-mmu" (TracedSecondaryMmu) or an interval Mirror
//     "dma-mirror" (--dma-path), with the fault-path delays (--delay-prob) and, for the
//     must-fail control, the checks off and a reclaim forced into each DMA data fault's
//     window; device writes announced to the space (HostDeviceHooks);
//   - the DMA engine (its device thread; the guest rings its doorbell);
//   - the host's own operations: vmm/host's ReclaimDriver paces reclaim to --resident,
//     HostOpDriver migrates, protects and OOM-reaps at their rates, MemslotChurn adds,
//     moves and deletes the guest's spare slot (--memslot-churn);
//   - the time bound (README "Bounded run time"), the progress line, and the result:
//     counts, in-progress counts, verdict, JSON report and trace.
// The guest is the only thing the two modes differ in (StressGuest): the memstress guest
// on KVM vCPUs (stress_kvm.h), or the same algorithm on host threads standing in for
// vCPUs (host_threads.h). RunStress is the whole run.
//
// Lifetimes: the guest owns the space (and, under KVM, the Machine) and outlives the rig;
// the rig tears the space down (hub.Release: each subscription's Release exactly once)
// before anything it subscribed is destroyed.
// Threads: the caller's thread runs RunStress and joins every thread the run starts.
#ifndef MMUVISOR_VMM_STRESS_STRESS_RIG_H_
#define MMUVISOR_VMM_STRESS_STRESS_RIG_H_

#include <cstdint>
#include <cstdio>
#include <optional>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/host/host_address_space.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/stress/memslot_churn.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/stress_result.h"
#include "vmm/stress/stress_run.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

struct HostStressOutcome {
  StressResult result;  // verdict decided
  std::vector<std::vector<uint64_t>> digests;  // per vCPU, per round (replay checks)
  // Ok, or why a report file (--json, --trace, --hostile-log) could not be written after
  // the run: the run and its verdict stand, the file is missing or incomplete.
  absl::Status files_written;
};

// What the rig hands a guest that stands in for the vCPUs' own MMU (host threads).
struct GuestWiring {
  TraceLog& trace;
  LatencyHistogram& fault_latency;
  absl::Duration fault_timeout;     // the run's bounded fault retry timeout
  dma::DeviceAccessHooks& cpu_hooks;  // writes announced to the space, no device view
};

// Live counts for the progress line.
struct GuestProgress {
  uint64_t pages_verified = 0, mismatches = 0, faults = 0, retries = 0;
};

// The guest of a stress run: KVM vCPUs or host threads. Called from the run's thread in
// this order: Create, Wire, Connect, Start, Done (polled), Stop (only at the deadline),
// Join, Collect; digests after.
class StressGuest {
 public:
  virtual ~StressGuest() = default;
  virtual const char* mode() const = 0;  // "kvm", "host-threads" (the report's words)
  // Creates guest RAM and the guest. InvalidArgument for options it cannot run with.
  virtual absl::Status Create() = 0;
  // Valid after a successful Create, until the guest is destroyed.
  virtual HostAddressSpace& space() = 0;
  // [free_start, free_end): the workload's guest-physical memory (host ops go there).
  virtual uint64_t free_start() const = 0;
  virtual uint64_t free_end() const = 0;
  // The fault retry timeout when --fault-timeout is not given.
  virtual absl::Duration default_fault_timeout() const = 0;
  // How long past --duration a --rounds run may take (its rounds bound it instead).
  virtual absl::Duration rounds_grace() const = 0;
  // Where alias k of guest RAM starts (k * stride) under --aliases (KVM guests; else 0).
  virtual uint64_t alias_stride() const { return 0; }
  // The slot --memslot-churn adds, moves and deletes, and where (KVM guests).
  virtual std::optional<SpareSlot> spare_slot() const { return std::nullopt; }
  // Subscribes what stands in for the vCPUs' MMU (after the injector, before the DMA path).
  virtual absl::Status Wire(const GuestWiring& wiring) = 0;
  // Gives the guest the DMA device: a port for KVM, a doorbell for host threads.
  virtual absl::Status Connect(dma::DmaEngine& engine) = 0;
  virtual absl::Status Start() = 0;
  // Every vCPU ended (its rounds, DONE or a failure).
  virtual bool Done() = 0;
  // The deadline: stop where they are, by `give_up` at the latest.
  virtual void Stop(absl::Time give_up) = 0;
  virtual void Join() = 0;
  virtual GuestProgress Progress() = 0;
  // The guest's counts, notes and problem, once everything stopped (after the rig's own
  // counts: it may correct the device's).
  virtual absl::Status Collect(StressRun& run) = 0;
  virtual std::vector<std::vector<uint64_t>> digests() = 0;
};

// A whole run of `guest`. `progress` (may be null): where the live progress goes; `tty`
// picks its style. Errors: the guest's Create (InvalidArgument for options it cannot run
// with), a subscription that could not be made. A report file that could not be written
// after the run is no error of the run: the outcome says so (files_written).
absl::StatusOr<HostStressOutcome> RunStress(const StressOptions& options, StressGuest& guest,
                                            std::FILE* progress, bool tty);

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_STRESS_RIG_H_
