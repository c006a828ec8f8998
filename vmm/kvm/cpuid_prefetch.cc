#include "vmm/kvm/cpuid_prefetch.h"

#include <sched.h>

#include "vmm/kvm/system.h"

namespace mmuvisor::vmm {

std::unique_ptr<SupportedCpuidPrefetch> SupportedCpuidPrefetch::Begin(
    absl::string_view kvm_path) {
  std::unique_ptr<SupportedCpuidPrefetch> prefetch(
      new SupportedCpuidPrefetch(std::string(kvm_path)));
  // Asked before in this process (a second Machine): nothing to prefetch.
  if (KvmSystem::SupportedCpuidCached(kvm_path)) return prefetch;
  cpu_set_t others;
  CPU_ZERO(&others);
  if (sched_getaffinity(0, sizeof(others), &others) != 0) return prefetch;
  const int here = sched_getcpu();
  if (here >= 0 && here < CPU_SETSIZE) CPU_CLR(here, &others);
  if (CPU_COUNT(&others) == 0) return prefetch;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr) != 0) return prefetch;
  // glibc applies the affinity before the thread runs.
  if (pthread_attr_setaffinity_np(&attr, sizeof(others), &others) == 0) {
    prefetch->started_ = pthread_create(&prefetch->thread_, &attr,
                                        &SupportedCpuidPrefetch::ThreadMain,
                                        prefetch.get()) == 0;
  }
  pthread_attr_destroy(&attr);
  return prefetch;
}

void* SupportedCpuidPrefetch::ThreadMain(void* self) {
  const auto* prefetch = static_cast<const SupportedCpuidPrefetch*>(self);
  if (absl::StatusOr<KvmSystem> kvm = KvmSystem::Open(prefetch->path_); kvm.ok()) {
    (void)kvm->SupportedCpuid();  // fills the cache; an error is the caller's to meet
  }
  return nullptr;
}

SupportedCpuidPrefetch::~SupportedCpuidPrefetch() {
  if (started_) pthread_join(thread_, nullptr);
}

}  // namespace mmuvisor::vmm
