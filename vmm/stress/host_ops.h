// HostOpDriver: the host side of a stress run — one thread per enabled operation kind
// (reclaim, discard, migrate, protect, OOM reap), each doing its operation on a seeded
// pseudo-random page range at its rate. Reclaim is a pacing driver: it only reclaims (at a
// clock hand sweeping guest memory) while the resident fraction is above the target.
// The operations act on a HostOpTarget, so the same driver runs against vmm/host's
// HostAddressSpace (KVM runs) and against PagePoolSpace (host-thread runs).
//
// Threads: Start/Stop from the owner; the target's Run runs on the driver's threads (one
// per kind) and must be thread-safe. Counters are relaxed atomics; mu_ guards the stop
// flag.
#ifndef MMUVISOR_VMM_STRESS_HOST_OPS_H_
#define MMUVISOR_VMM_STRESS_HOST_OPS_H_

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <optional>
#include <thread>
#include <vector>

#include "absl/status/status.h"
#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "notifier/base/mutex.h"
#include "vmm/stress/stress_options.h"
#include "vmm/stress/trace_log.h"

namespace mmuvisor::vmm::stress {

enum class HostOp { kReclaim = 0, kDiscard, kMigrate, kProtect, kOomReap };
inline constexpr int kHostOpKinds = 5;
const char* HostOpName(HostOp op);

// What the driver's operations act on. Called from the driver's threads, concurrently.
class HostOpTarget {
 public:
  virtual ~HostOpTarget() = default;
  // Whether the target does `op` at all: the driver starts no thread for one it does not
  // (e.g. discards, which come from the guest's balloon calls instead).
  virtual bool Supports(HostOp op) const = 0;
  // `op` on the page-aligned guest-physical range [gpa, gpa + len), inside the driver's
  // [range_start, range_end). An error counts as a failed operation (EAGAIN included).
  virtual absl::Status Run(HostOp op, uint64_t gpa, uint64_t len) = 0;
  // Reclaim pacing: the resident fraction of guest RAM; nullopt: reclaim at every tick.
  virtual std::optional<double> ResidentFraction() const { return std::nullopt; }
};

class HostOpDriver {
 public:
  // Operations cover [range_start, range_end) (page aligned). `trace` may be null.
  HostOpDriver(const StressOptions& options, uint64_t range_start, uint64_t range_end,
               HostOpTarget& target, TraceLog* trace);
  ~HostOpDriver();
  void Start();
  void Stop();
  uint64_t ops_done() const;
  uint64_t ops_failed() const;  // callbacks that returned an error (EAGAIN skips included)

 private:
  void Loop(HostOp op, double rate) ABSL_LOCKS_EXCLUDED(mu_);
  // Sleeps up to `period`; true once Stop() was called.
  bool StopRequested(absl::Duration period) ABSL_LOCKS_EXCLUDED(mu_);

  const StressOptions options_;
  const uint64_t start_, end_;
  HostOpTarget& target_;
  TraceLog* const trace_;
  Mutex mu_;
  std::condition_variable cv_;  // stop_ set
  bool stop_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::thread> threads_;
  std::atomic<uint64_t> done_{0}, failed_{0};
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOST_OPS_H_
