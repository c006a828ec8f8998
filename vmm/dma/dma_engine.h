// DmaEngine: the DMA device at MMV_PORT_DMA (guests/include/mmuvisor/guest_abi.h). A 32-bit
// OUT of a descriptor's gpa rings the doorbell; the vCPU continues at once. The device
// thread copies each descriptor of the chain out of guest memory, validates the copy
// (descriptor.h), executes it page piece by page piece through a DmaMemory (so only an
// MMU that sees every invalidation is ever used to reach guest memory) and writes the
// status (and CHECKSUM's result) back into the descriptor.
//
// Untrusted input: a bad doorbell address (no descriptor can be read, so no status can be
// written) or a bad descriptor is counted, kept in a short warning list, and never stops
// the device. Nothing is written outside guest memory (RAM and its aliases).
// Errors the guest asked for (MMV_DMA_FLAG_EXPECT_ERROR) are counted apart from the
// others, which the stress verdict treats as device failures.
//
// Threads: Write() (the doorbell) on vCPU threads; one device thread, started by Start()
// and joined by Stop() or the destructor; ExecuteChain() on any thread when no device
// thread runs (tests). mu_ guards the doorbell queue and the warning list (cv_ signals its
// changes); statistics are
// relaxed atomics (exact once the device is idle).
#ifndef MMUVISOR_VMM_DMA_DMA_ENGINE_H_
#define MMUVISOR_VMM_DMA_DMA_ENGINE_H_

#include <array>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "mmuvisor/guest_abi.h"
#include "notifier/base/mutex.h"
#include "vmm/devices/port_io_bus.h"
#include "vmm/dma/descriptor.h"
#include "vmm/dma/dma_memory.h"

namespace mmuvisor::vmm::dma {

struct DmaEngineOptions {
  uint64_t ram_size = 0;       // guest RAM is [0, ram_size)
  uint32_t ram_aliases = 0;    // and, for k = 1..ram_aliases, [k * alias_stride, + ram_size)
  uint64_t alias_stride = 0;
  size_t queue_limit = 4096;   // doorbells beyond this are dropped (counted)
  size_t warnings_kept = 16;   // first warnings kept verbatim for the report
  std::function<void()> on_thread_start;  // runs first on the device thread (naming)
};

struct DmaStats {
  uint64_t doorbells = 0;           // OUTs to the port
  uint64_t bad_doorbells = 0;       // wrong width or unusable descriptor address
  uint64_t dropped_doorbells = 0;   // queue full, or stopped before they ran
  uint64_t descriptors = 0;         // descriptors read and judged
  uint64_t ops_ok = 0;              // executed with status OK
  uint64_t copies = 0, fills = 0, checksums = 0;  // of ops_ok, per op
  uint64_t bytes = 0;               // bytes moved/filled/summed by OK ops
  uint64_t errors_requested = 0;    // error statuses on descriptors flagged EXPECT_ERROR
  uint64_t errors_unrequested = 0;  // every other error status (device failures for the
                                    // verdict), plus bad doorbells
  uint64_t status_writeback_failures = 0;  // a status could not be written back
  uint64_t aborted_descriptors = 0;  // left unfinished (no status) by Abort()
  std::array<uint64_t, kDmaStatusCount> by_status{};  // descriptors per final status
  uint64_t errors() const { return errors_requested + errors_unrequested; }
};

class DmaEngine : public PortIoDevice {
 public:
  // `memory` must outlive the engine.
  DmaEngine(DmaMemory& memory, DmaEngineOptions options);
  ~DmaEngine() override;
  DmaEngine(const DmaEngine&) = delete;
  DmaEngine& operator=(const DmaEngine&) = delete;

  // Starts the device thread; clears an earlier Abort(). REQUIRES: not running.
  void Start() ABSL_LOCKS_EXCLUDED(mu_);
  // Lets the thread finish the chain it runs, drops (and counts) queued doorbells, joins.
  // Idempotent.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);
  // Stop() for a run's deadline: the chain in flight ends at its next page piece, with
  // no status written for the descriptors it did not finish (they stay PENDING; counted
  // as aborted, not as errors: the guest is being stopped, it will not look). Doorbells
  // rung after it (a vCPU that has not yet seen its stop) are dropped, counted in
  // dropped_doorbells only, not as errors. Idempotent.
  void Abort() ABSL_LOCKS_EXCLUDED(mu_);
  // Blocks until the queue is empty and no chain runs (or the engine is stopped), for at
  // most `timeout`; false if the engine was still busy then.
  bool WaitIdle(absl::Duration timeout) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs the chain starting at `gpa` on the calling thread.
  // REQUIRES: no device thread running (tests and fuzzing drive the engine this way).
  void ExecuteChain(uint64_t gpa) ABSL_LOCKS_EXCLUDED(mu_);

  // PortIoDevice: a 4-byte write at offset 0 is the doorbell; other writes are counted as
  // bad doorbells. Reads return the number of chains queued or running (0 = idle).
  IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) override
      ABSL_LOCKS_EXCLUDED(mu_);
  void Read(uint32_t vcpu, uint16_t offset, absl::Span<uint8_t> data) override
      ABSL_LOCKS_EXCLUDED(mu_);

  DmaStats stats() const;
  std::vector<std::string> warnings() const ABSL_LOCKS_EXCLUDED(mu_);
  uint64_t warnings_total() const { return warnings_total_.load(std::memory_order_relaxed); }
  const DmaEngineOptions& options() const { return options_; }

 private:
  void Loop() ABSL_LOCKS_EXCLUDED(mu_);
  // Executes one validated descriptor; returns its final status.
  uint32_t Run(uint64_t desc_gpa, const mmv_dma_desc& desc, uint64_t* result);
  void Finish(uint64_t desc_gpa, const mmv_dma_desc& desc, uint32_t status, uint64_t result);
  void Warn(std::string message) ABSL_LOCKS_EXCLUDED(mu_);
  void Count(std::atomic<uint64_t>& counter, uint64_t n = 1) {
    counter.fetch_add(n, std::memory_order_relaxed);  // relaxed: statistic
  }

  DmaMemory& memory_;
  const DmaEngineOptions options_;

  mutable Mutex mu_;  // notifier/mutex.h: TSan sees it
  std::condition_variable cv_;  // queue_, busy_, stopping_ changed
  std::deque<uint64_t> queue_ ABSL_GUARDED_BY(mu_);
  bool busy_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool running_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> warnings_ ABSL_GUARDED_BY(mu_);
  std::thread thread_;  // started/joined by the owning thread only
  // relaxed: a request the device thread polls between page pieces; what it already did
  // is published by the join in Stop().
  std::atomic<bool> abort_{false};

  std::atomic<uint64_t> warnings_total_{0};
  std::atomic<uint64_t> doorbells_{0}, bad_doorbells_{0}, dropped_{0}, descriptors_{0};
  std::atomic<uint64_t> ops_ok_{0}, copies_{0}, fills_{0}, checksums_{0}, bytes_{0};
  std::atomic<uint64_t> errors_requested_{0}, errors_unrequested_{0}, writeback_failures_{0};
  std::atomic<uint64_t> aborted_{0};
  std::array<std::atomic<uint64_t>, kDmaStatusCount> by_status_{};
};

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_VMM_DMA_DMA_ENGINE_H_
