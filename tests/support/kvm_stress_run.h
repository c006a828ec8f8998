// RUN_KVM_OR_SKIP(outcome, options): runs a KVM stress scenario (vmm/stress RunKvmStress)
// in a test, or skips the test with the reason when /dev/kvm cannot be opened. Only an
// unopenable /dev/kvm skips ("needs /dev/kvm: ..."); any error of the run itself fails the
// test. `outcome` is an absl::StatusOr<HostStressOutcome> that is ok after the macro.
#ifndef MMUVISOR_TESTS_SUPPORT_KVM_STRESS_RUN_H_
#define MMUVISOR_TESTS_SUPPORT_KVM_STRESS_RUN_H_

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/strings/match.h"
#include "gtest/gtest.h"
#include "vmm/stress/stress_kvm.h"

#define RUN_KVM_OR_SKIP(outcome, options) \
  MMUVISOR_RUN_KVM_STRESS_OR_SKIP(outcome, options, /*ring=*/false)

// RUN_KVM_RING_OR_SKIP: the same for a `--dirty ring` run, which also skips where KVM does
// not offer the dirty ring (Machine::Create's error names KVM_CAP_DIRTY_LOG_RING).
#define RUN_KVM_RING_OR_SKIP(outcome, options) \
  MMUVISOR_RUN_KVM_STRESS_OR_SKIP(outcome, options, /*ring=*/true)

#define MMUVISOR_RUN_KVM_STRESS_OR_SKIP(outcome, options, ring)                       \
  if (absl::Status kvm = ::mmuvisor::vmm::stress::ProbeKvm((options).kvm_path);       \
      !kvm.ok()) {                                                                    \
    GTEST_SKIP() << kvm.message();                                                    \
  }                                                                                   \
  absl::StatusOr<::mmuvisor::vmm::stress::HostStressOutcome> outcome =                \
      ::mmuvisor::vmm::stress::RunKvmStress(options, nullptr, false);                 \
  if ((ring) && !outcome.ok() &&                                                      \
      absl::StrContains(outcome.status().message(), "KVM_CAP_DIRTY_LOG_RING")) {      \
    GTEST_SKIP() << "needs the dirty ring: " << outcome.status().message();           \
  }                                                                                   \
  ASSERT_TRUE(outcome.ok()) << outcome.status()

#endif  // MMUVISOR_TESTS_SUPPORT_KVM_STRESS_RUN_H_
