// SupportedCpuidPrefetch: KVM_GET_SUPPORTED_CPUID asked early, on a thread of its own, so
// that KvmSystem::SupportedCpuid() later finds the answer in its process-wide cache (or
// waits for the query in flight, whose lock it needs) instead of asking on the caller's
// critical path.
//
// The query depends on nothing but the device, and it is the slowest ioctl of a VM's setup
// on a host that is itself a VM: KVM executes ~60 CPUID instructions, each a VM exit
// (~0.4 ms of a ~4.7 ms `mmuvisor run` on kvm_pvm). Machine begins one before it sets up
// the host address space; the query then overlaps that setup and the VM's creation.
//
// The thread runs on the CPUs the process may use other than the one Begin() runs on, set
// before it starts: left to the scheduler, a new thread may start on its creator's CPU and
// preempt it until it blocks, which serialises the two (seen on kvm_pvm: the creator waited
// 0.68 ms in pthread_create with the other CPU idle). With one usable CPU there is nothing
// to overlap and Begin() starts no thread; nor when the process has the answer already
// (KvmSystem::SupportedCpuidCached: a Machine created after another).
//
// Errors are not reported here: a failed open or query leaves the cache empty, and
// SupportedCpuid() then makes the call and reports its error where it always did.
// Thread-safety: Begin from any thread; the destructor waits for the thread.
#ifndef MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_
#define MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_

#include <pthread.h>

#include <memory>
#include <string>

#include "absl/strings/string_view.h"

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

 private:
  explicit SupportedCpuidPrefetch(std::string path) : path_(std::move(path)) {}
  static void* ThreadMain(void* self);

  const std::string path_;
  pthread_t thread_{};
  bool started_ = false;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_KVM_CPUID_PREFETCH_H_
