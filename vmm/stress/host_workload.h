// HostWorkload: the memstress guest's algorithm (guests/memstress) run on host threads,
// one per "vCPU", reaching memory the way a guest's accesses reach it under KVM: through
// a secondary MMU with the full retry protocol (SecondaryMmuMemory over the vCPU MMU).
// It programs the real DmaEngine through its doorbell and polls the descriptors' status in
// memory like the guest does. Used for stress runs and tests without /dev/kvm.
//
// Threads: Start() spawns one thread per vCPU; Stop() asks them to stop at the next page
// (or DMA status poll) of the round in flight; Join() joins. Counters are relaxed atomics; mismatches go to a capped list under mu_.
#ifndef MMUVISOR_VMM_STRESS_HOST_WORKLOAD_H_
#define MMUVISOR_VMM_STRESS_HOST_WORKLOAD_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "notifier/base/mutex.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/dma/dma_engine.h"
#include "vmm/dma/dma_memory.h"
#include "vmm/stress/stress_result.h"

namespace mmuvisor::vmm::stress {

struct HostWorkloadConfig {
  uint64_t seed = 1;
  uint32_t vcpus = 2;
  uint64_t free_start = 0;  // [free_start, free_end): memory the workload owns
  uint64_t free_end = 0;
  uint64_t rounds = 0;      // 0: until Stop()
  bool dma = true;
  bool balloon = true;
  std::function<void(uint32_t vcpu)> on_thread_start;  // first thing on each vCPU thread
};

// The guest-physical frames of the memstress descriptor pages (one per vCPU) for the
// layout of [free_start, free_end) over `vcpus`; empty when it cannot be laid out. The
// must-fail control forces its races on DMA data pages only: a stale descriptor read is
// garbage the device rejects, which would hide the data the verification must catch.
std::vector<uint64_t> MemstressDescriptorFrames(uint64_t free_start, uint64_t free_end,
                                                uint32_t vcpus);

class HostWorkload {
 public:
  // `memory` is the vCPUs' path to guest memory; `engine` may be null when !dma;
  // `balloon(gpa, len)` gives pages back (the host discards them). All must outlive this.
  HostWorkload(HostWorkloadConfig config, dma::DmaMemory& memory, dma::DmaEngine* engine,
               std::function<void(uint64_t gpa, uint64_t len)> balloon);
  ~HostWorkload();
  // InvalidArgument when the free memory cannot be laid out for the vCPUs.
  absl::Status Start();
  void Stop();
  // Blocks until every vCPU thread has finished (rounds reached, stopped or failed).
  void Join();

  uint64_t pages_verified() const { return pages_verified_.load(std::memory_order_relaxed); }
  uint64_t rounds_done() const { return rounds_.load(std::memory_order_relaxed); }
  uint64_t mismatches() const { return mismatches_.load(std::memory_order_relaxed); }
  uint64_t dma_ops() const { return dma_ops_.load(std::memory_order_relaxed); }
  // vCPU threads that have ended (rounds reached, stopped or failed).
  uint32_t finished() const { return finished_.load(std::memory_order_acquire); }
  std::vector<Mismatch> first_mismatches() const ABSL_LOCKS_EXCLUDED(mu_);
  // Per vCPU, per round: the digest of the verified-page sequence so far.
  std::vector<std::vector<uint64_t>> digests() const ABSL_LOCKS_EXCLUDED(mu_);
  // One line per vCPU whose round a Stop() cut short ("vCPU 1 stopped mid-round 5").
  std::vector<std::string> cut_rounds() const ABSL_LOCKS_EXCLUDED(mu_);
  // "" when every vCPU ended normally, else the first problem (a fault that failed, ...).
  std::string problem() const ABSL_LOCKS_EXCLUDED(mu_);

 private:
  void Vcpu(uint32_t index);
  bool RunRound(uint32_t vcpu, uint64_t round, uint64_t& digest, uint64_t& prev_balloon);
  bool Dma(uint32_t vcpu, uint64_t round, uint64_t batch);
  // Polls the three descriptors at d0 until none is PENDING; false (and Fail) unless all
  // ended OK, or when a Stop() cut the round.
  bool AwaitDescriptors(uint32_t vcpu, uint64_t round, uint64_t d0, mmv_dma_desc (&done)[3]);
  // True (and noted in cut_) once Stop() was called: the round in flight ends here.
  bool Stopping(uint32_t vcpu, uint64_t round) ABSL_LOCKS_EXCLUDED(mu_);
  void Mismatched(uint32_t vcpu, uint64_t round, uint32_t source, uint64_t gpa,
                  uint64_t expected, uint64_t found) ABSL_LOCKS_EXCLUDED(mu_);
  void Fail(uint32_t vcpu, const std::string& what) ABSL_LOCKS_EXCLUDED(mu_);

  const HostWorkloadConfig config_;
  dma::DmaMemory& memory_;
  dma::DmaEngine* const engine_;
  const std::function<void(uint64_t, uint64_t)> balloon_;
  std::vector<std::thread> threads_;
  std::atomic<bool> stop_{false};

  std::atomic<uint64_t> pages_verified_{0}, rounds_{0}, mismatches_{0}, dma_ops_{0};
  std::atomic<uint32_t> finished_{0};
  mutable Mutex mu_;  // notifier/mutex.h: TSan-visible
  std::vector<Mismatch> first_ ABSL_GUARDED_BY(mu_);
  std::vector<std::vector<uint64_t>> digests_ ABSL_GUARDED_BY(mu_);
  std::string problem_ ABSL_GUARDED_BY(mu_);
  std::vector<std::string> cut_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mmuvisor::vmm::stress

#endif  // MMUVISOR_VMM_STRESS_HOST_WORKLOAD_H_
