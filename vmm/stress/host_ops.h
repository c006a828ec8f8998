// HostOpDriver: the host operations of a stress run that the guest does not cause itself —
// one thread per enabled kind (migrate, protect, OOM reap), each doing its operation on
// vmm/host's HostAddressSpace over a seeded pseudo-random page range of the workload's
// memory at its rate. Reclaim is not here: vmm/host's ReclaimDriver paces it to
// --resident (the one reclaim pacer); discards come from the guest's balloon calls.
//   migrate   vmm/host Migrate                                 (migrate window)
//   protect   vmm/host Protect(range, kReadWrite): a protection_vma window that
//             leaves the pages read-write (every secondary MMU zaps and refaults; the
//             guest's stores keep working: a read-only protect would make them
//             protected-write events, not a stress condition)
//   oom-reap  vmm/host OomReap (non-blockable; a range it skipped after its retries —
//             busy pages, refused starts, --eagain — is the non-blockable path's expected
//             outcome: counted as skipped, not failed)
// Any other error of an operation is a failure (counted, the first one kept): the run's
// verdict fails on it.
//
// Threads: Start/Stop from the owner; the operations run on the driver's threads (one per
// kind). Counters are relaxed atomics; mu_ guards the stop flag and the first failure.
#ifndef MMUVISOR_VMM_STRESS_HOST_OPS_H_
#define MMUVISOR_VMM_STRESS_HOST_OPS_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"
#include "vmm/host/host_address_space.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

enum class HostOp { kMigrate, kProtect, kOomReap };
// The flag's word: "migrate", "protect", "oom-reap" (trace slices, thread rows).
const char* HostOpName(HostOp op);

class HostOpDriver {
 public:
  // Operations cover the guest-physical [range_start, range_end) (rounded inwards to
  // pages). `trace` may be null. `space` must outlive Stop().
  HostOpDriver(const StressOptions& options, uint64_t range_start, uint64_t range_end,
               HostAddressSpace& space, TraceLog* trace);
  ~HostOpDriver();
  void Start();
  // Idempotent; joins the threads (the operation in flight completes).
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t ops_done() const;
  uint64_t ops_skipped() const;  // OOM reaps skipped after their retries (not failures)
  uint64_t ops_failed() const;   // operations that returned any other error
  // "migrate [0x200000, +0x10000): <error>" of the first failed operation, or "".
  std::string first_failure() const ABSL_LOCKS_EXCLUDED(mu_);
  // Operation `n` of kind `op`, counted as the driver's thread counts it.
  // REQUIRES: called by the driver's threads, or by a test with none started.
  void RunOne(HostOp op, uint64_t n) ABSL_LOCKS_EXCLUDED(mu_);

 private:
  absl::Status Run(HostOp op, uint64_t gpa, uint64_t len);
  void Loop(HostOp op, double rate) ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps up to `period`; true once Stop() was called.
  bool StopRequested(absl::Duration period) ABSL_LOCKS_EXCLUDED(mu_);

  const StressOptions options_;
  const uint64_t start_, end_;
  HostAddressSpace& space_;
  TraceLog* const trace_;
  mutable Mutex mu_;
  std::condition_variable cv_;  // stop_ set
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::string first_failure_ ABSL_GUARDED_BY(mu_);
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> done_{0}, skipped_{0}, failed_{0};
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOST_OPS_H_
