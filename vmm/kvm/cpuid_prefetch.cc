#include "vmm/kvm/cpuid_prefetch.h"

#include <sched.h>

#include "notifier/base/status_macros.h"

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
  auto* prefetch = static_cast<SupportedCpuidPrefetch*>(self);
  absl::StatusOr<std::vector<kvm_cpuid_entry2>> cpuid =
      absl::FailedPreconditionError("not asked");
  if (absl::StatusOr<KvmSystem> kvm = KvmSystem::Open(prefetch->path_); kvm.ok()) {
    cpuid = kvm->SupportedCpuid();  // fills the cache
  }
  if (cpuid.ok()) {
    prefetch->SetHandedOver(*cpuid);
  } else {
    // Finish() asks again and reports the error where the caller expects it.
    MutexLock lock(&prefetch->mu_);
    prefetch->done_ = true;
    prefetch->cv_.notify_all();
  }
  return nullptr;
}

void SupportedCpuidPrefetch::SetHandedOver(const std::vector<kvm_cpuid_entry2>& cpuid) {
  std::vector<KvmVcpu*> vcpus;
  {
    MutexLock lock(&mu_);
    mu_.Await(cv_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return handed_ || abandoned_; });
    if (abandoned_) {
      done_ = true;
      return;
    }
    vcpus = vcpus_;
  }
  absl::Status status;
  for (KvmVcpu* vcpu : vcpus) {
    status = vcpu->SetCpuid(cpuid);
    if (!status.ok()) break;
  }
  MutexLock lock(&mu_);
  status_ = status;
  set_ = true;
  done_ = true;
  cv_.notify_all();
}

void SupportedCpuidPrefetch::SetOn(std::vector<KvmVcpu*> vcpus, const KvmSystem* system) {
  system_ = system;
  MutexLock lock(&mu_);
  vcpus_ = std::move(vcpus);
  handed_ = true;
  cv_.notify_all();
}

absl::Status SupportedCpuidPrefetch::Finish() {
  std::vector<KvmVcpu*> vcpus;
  if (started_) {
    MutexLock lock(&mu_);
    if (!handed_) return absl::OkStatus();  // the destructor lets the thread go
    mu_.Await(cv_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return done_; });
    if (set_) return status_;
    vcpus = vcpus_;  // the thread had no answer: ask here, for the error
    if (vcpus.empty()) return absl::OkStatus();
  } else {
    MutexLock lock(&mu_);
    if (!handed_) return absl::OkStatus();
    vcpus = vcpus_;
    if (vcpus.empty()) return absl::OkStatus();
  }
  MMUVISOR_ASSIGN_OR_RETURN(std::vector<kvm_cpuid_entry2> cpuid, system_->SupportedCpuid());
  for (KvmVcpu* vcpu : vcpus) MMUVISOR_RETURN_IF_ERROR(vcpu->SetCpuid(cpuid));
  return absl::OkStatus();
}

void SupportedCpuidPrefetch::Stop() {
  if (!started_ || joined_) return;
  {
    MutexLock lock(&mu_);
    abandoned_ = true;
    cv_.notify_all();
  }
  pthread_join(thread_, nullptr);
  joined_ = true;
}

SupportedCpuidPrefetch::~SupportedCpuidPrefetch() { Stop(); }

}  // namespace mmuvisor::vmm
