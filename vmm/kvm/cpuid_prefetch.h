// SupportedCpuidPrefetch: KVM_GET_SUPPORTED_CPUID asked early, on a thread of its own, so
// that KvmSystem::SupportedCpuid() later finds the answer in its process-wide cache (or
// waits for the query in flight, whose lock it needs) instead of asking on the caller's
// critical path.
//
// The query depends on nothing but the device, and it is the slowest ioctl of a VM's setup
// on a host that is itself a VM: KVM executes ~60 CPUID instructions, each a VM exit
// (~0.4 ms of a ~4.7 ms `mmuvisor run` on kvm_pvm). The CLI begins one for `run` before it
// parses the rest of the command line (MachineConfig::cpuid_prefetch), a Machine given
// none begins its own; the query then overlaps the parsing, the VM's and vCPUs' creation
// and the host address space's.
//
// The thread runs on the CPUs the process may use other than the one Begin() runs on, set
// before it starts: left to the scheduler, a new thread may start on its creator's CPU and
// preempt it until it blocks, which serialises the two (seen on kvm_pvm: the creator waited
// 0.68 ms in pthread_create with the other CPU idle). With one usable CPU there is nothing
// to overlap and Begin() starts no thread; nor when the process has the answer already
// (KvmSystem::SupportedCpuidCached: a Machine created after another).
//
// SetOn(vcpus) hands the vCPUs over: the thread gives each the supported CPUID
// (KVM_SET_CPUID2, ~0.1 ms here) as soon as it has the answer, while the caller goes on
// (Machine registers its memslots meanwhile); Finish() waits for that and reports. Without
// a thread, Finish() makes the calls.
//
// Errors: a failed open or query on the thread leaves the cache empty and is not reported
// from there; Finish() then asks KvmSystem::SupportedCpuid() itself and reports its error,
// as a caller without a prefetch would. KVM_SET_CPUID2 errors are KvmVcpu::SetCpuid's.
// Thread-safety: Begin, SetOn and Finish from one thread (the owner's); the destructor
// waits for the thread, which then sets nothing more.
#ifndef MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_
#define MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_

#include <pthread.h>

#include <linux/kvm.h>

#include <atomic>
#include <condition_variable>
#include <memory>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "notifier/base/mutex.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"

namespace mmuvisor::vmm {

class SupportedCpuidPrefetch {
 public:
  static std::unique_ptr<SupportedCpuidPrefetch> Begin(absl::string_view kvm_path);
  ~SupportedCpuidPrefetch();
  SupportedCpuidPrefetch(const SupportedCpuidPrefetch&) = delete;
  SupportedCpuidPrefetch& operator=(const SupportedCpuidPrefetch&) = delete;

  // Whether a thread was started (false with one usable CPU, with the answer cached, or
  // if it could not be).
  bool started() const { return started_; }
  const std::string& path() const { return path_; }
  // True for the first caller only: a prefetch serves one set of vCPUs (SetOn and Finish
  // once). A Machine claims the one its config carries and begins its own when that one
  // is taken, e.g. by an earlier Machine built from a copy of the same config (its thread
  // would have finished with the earlier vCPUs, and Finish would report their status).
  bool Claim() { return !claimed_.exchange(true, std::memory_order_relaxed); }

  // The vCPUs to give the supported CPUID, `system` their device (for Finish's own
  // query). REQUIRES: once, before Finish; the vCPUs and `system` outlive Finish (or this
  // object); none of the vCPUs has run (KVM refuses a new CPUID after KVM_RUN).
  void SetOn(std::vector<KvmVcpu*> vcpus, const KvmSystem* system) ABSL_LOCKS_EXCLUDED(mu_);
  // Waits until every vCPU handed over has its CPUID (or the thread has stopped) and
  // returns the first error, asking KVM itself where the thread could not. OK without
  // SetOn. REQUIRES: once.
  absl::Status Finish() ABSL_LOCKS_EXCLUDED(mu_);
  // Ends the thread: after it returns the thread touches no vCPU (it may still finish the
  // query first). Idempotent; the destructor calls it. From the owner's thread.
  void Stop() ABSL_LOCKS_EXCLUDED(mu_);

 private:
  explicit SupportedCpuidPrefetch(std::string path) : path_(std::move(path)) {}
  static void* ThreadMain(void* self);
  // The thread's work once the answer is cached: waits for SetOn (or the destructor),
  // then sets the CPUID on every vCPU handed over.
  void SetHandedOver(const std::vector<kvm_cpuid_entry2>& cpuid) ABSL_LOCKS_EXCLUDED(mu_);

  const std::string path_;
  pthread_t thread_{};
  bool started_ = false;
  bool joined_ = false;                // Stop() joined the thread
  std::atomic<bool> claimed_{false};   // relaxed: only the exchange itself matters
  const KvmSystem* system_ = nullptr;  // SetOn's; used by Finish on this thread only
  Mutex mu_;
  std::condition_variable cv_;  // handed_, abandoned_ and done_ changed
  std::vector<KvmVcpu*> vcpus_ ABSL_GUARDED_BY(mu_);
  bool handed_ ABSL_GUARDED_BY(mu_) = false;     // SetOn was called
  bool abandoned_ ABSL_GUARDED_BY(mu_) = false;  // the destructor: set nothing more
  bool done_ ABSL_GUARDED_BY(mu_) = false;       // the thread set them all (or gave up)
  bool set_ ABSL_GUARDED_BY(mu_) = false;        // ... and had the answer to set
  absl::Status status_ ABSL_GUARDED_BY(mu_);     // the first KVM_SET_CPUID2 error
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_
