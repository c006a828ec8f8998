// MemslotChurn (`--memslot-churn R`): memslot updates under a running guest, as KVM's
// memslot_modification_stress_test makes them. One spare slot, an alias of guest RAM's
// first pages, goes round a cycle at R changes per second: added at window A, moved to
// window B, deleted; again. Each change is vmm/host's AddMemslot / MoveMemslot / Unmap:
// it waits until no invalidation window is open (KVM's rule), and every secondary MMU's
// layout follows before any window opens again. Meanwhile the vCPUs fault, the host
// operations run, and the guest reads through both windows (memstress): what it reads
// there is RAM's bytes (the slot is there) or the VMM's answer for nothing (it is not;
// MachineConfig::slot_windows), never a hang.
//
// Threads: Start/Stop from the owner; the changes run on the churn's own thread. A failed
// change is counted (the stress verdict fails on it) and the cycle goes on from the state
// the space is in.
#ifndef MMUVISOR_VMM_STRESS_MEMSLOT_CHURN_H_
#define MMUVISOR_VMM_STRESS_MEMSLOT_CHURN_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <string>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "notifier/base/mutex.h"
#include "vmm/host/host_address_space.h"
#include "vmm/memory/address.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

// The spare slot: RAM pages [first_page, first_page + num_pages) as slot `slot`, at guest
// window `a` or `b` (or absent).
struct SpareSlot {
  uint32_t slot = 0;
  uint64_t first_page = 0;
  uint64_t num_pages = 0;
  Gpa a, b;
};

struct MemslotChurnStats {
  uint64_t adds = 0, moves = 0, deletes = 0, failures = 0;
  std::string first_failure;
};

class MemslotChurn {
 public:
  // `space` must outlive Stop(); `trace` may be null. REQUIRES: rate > 0.
  MemslotChurn(HostAddressSpace& space, SpareSlot spare, double rate, TraceLog* trace);
  ~MemslotChurn();
  void Start();
  // Idempotent; the change in flight completes. The slot stays as it is.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  MemslotChurnStats stats() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Step n of the cycle: 0 add at a, 1 move to b, 2 delete.
  absl::Status Step(uint64_t n);

  HostAddressSpace& space_;
  const SpareSlot spare_;
  const double rate_;
  TraceLog* const trace_;
  mutable Mutex mu_;
  std::condition_variable cv_;  // stop_ set
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string first_failure_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;
  std::atomic<uint64_t> adds_{0}, moves_{0}, deletes_{0}, failures_{0};  // relaxed
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_MEMSLOT_CHURN_H_
