// DecideVerdict: how per-vCPU facts become the run's verdict and its one-line summary.
#include "vmm/machine/run_result.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace mmuvisor::vmm {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

VcpuReport Done(uint32_t i, uint64_t code) {
  VcpuReport r;
  r.index = i;
  r.stop.kind = StopKind::kGuestStop;
  r.done_code = code;
  return r;
}

VcpuReport Kicked(uint32_t i) {
  VcpuReport r;
  r.index = i;
  r.stop.kind = StopKind::kKicked;
  return r;
}

TEST(DecideVerdictTest, AllDoneWithZeroIsClean) {
  RunResult r;
  r.vcpus = {Done(0, 0), Done(1, 0)};
  DecideVerdict(r, /*timed_out=*/false);
  EXPECT_EQ(r.verdict, Verdict::kClean);
  EXPECT_EQ(r.summary, "guest finished: exit code 0");
}

TEST(DecideVerdictTest, NonZeroDoneIsAGuestFailureWithItsCode) {
  RunResult r;
  r.vcpus = {Done(0, 0), Done(1, 7)};
  DecideVerdict(r, false);
  EXPECT_EQ(r.verdict, Verdict::kGuestFailed);
  EXPECT_EQ(r.guest_exit_code, 7u);
  EXPECT_EQ(r.summary, "guest reported failure on vcpu 1: exit code 7");
}

TEST(DecideVerdictTest, CrashWinsAndShowsRegisters) {
  RunResult r;
  VcpuReport crash;
  crash.index = 1;
  crash.stop.kind = StopKind::kCrashed;
  crash.stop.detail = "triple fault (KVM_EXIT_SHUTDOWN)";
  crash.stop.registers = RegisterDump{};
  crash.stop.registers->rip = 0x100040;
  crash.stop.registers->cr2 = 0;
  r.vcpus = {Kicked(0), crash};
  DecideVerdict(r, /*timed_out=*/true);
  EXPECT_EQ(r.verdict, Verdict::kCrashed);
  EXPECT_THAT(r.summary, HasSubstr("guest crashed on vcpu 1: triple fault (KVM_EXIT_SHUTDOWN): "
                                   "rip=0x100040 rsp=0 "));
  EXPECT_THAT(r.summary, HasSubstr("cr2=0 "));
  EXPECT_THAT(r.summary, Not(HasSubstr("kvm_pvm"))) << "no flavour note off PVM";
}

TEST(DecideVerdictTest, ACrashOnKvmPvmSaysHowThatPlatformDiffers) {
  RunResult r;
  VcpuReport crash;
  crash.stop.kind = StopKind::kCrashed;
  crash.stop.detail = "guest exception: general protection (#GP), vector 13";
  r.vcpus = {crash};
  r.kvm_flavour = KvmFlavour::kPvm;
  DecideVerdict(r, /*timed_out=*/false);
  EXPECT_EQ(r.verdict, Verdict::kCrashed);
  EXPECT_THAT(r.summary, HasSubstr("vector 13 (host KVM is kvm_pvm: "));
  EXPECT_THAT(r.summary, HasSubstr("RFLAGS.IOPL is ignored"));
  for (KvmFlavour f : {KvmFlavour::kVmx, KvmFlavour::kSvm, KvmFlavour::kUnknown}) {
    r.kvm_flavour = f;
    DecideVerdict(r, false);
    EXPECT_THAT(r.summary, Not(HasSubstr("host KVM"))) << KvmFlavourName(f);
  }
}

TEST(DecideVerdictTest, HostErrorWinsOverEverything) {
  RunResult r;
  VcpuReport err;
  err.stop.kind = StopKind::kHostError;
  err.stop.detail = "KVM_RUN vcpu=0: Bad address";
  VcpuReport crash;
  crash.index = 1;
  crash.stop.kind = StopKind::kCrashed;
  r.vcpus = {err, crash};
  DecideVerdict(r, false);
  EXPECT_EQ(r.verdict, Verdict::kHostError);
  EXPECT_EQ(r.summary, "vcpu 0 failed: KVM_RUN vcpu=0: Bad address");
}

TEST(DecideVerdictTest, TimeoutNeedsAKickedVcpu) {
  RunResult r;
  r.timeout = absl::Milliseconds(250);
  r.vcpus = {Done(0, 0), Kicked(1)};
  DecideVerdict(r, /*timed_out=*/true);
  EXPECT_EQ(r.verdict, Verdict::kTimedOut);
  EXPECT_EQ(r.summary, "guest timed out after 250ms");
  // The timeout passed after everyone had stopped on their own: not a timeout.
  r.vcpus = {Done(0, 0), Done(1, 0)};
  DecideVerdict(r, /*timed_out=*/true);
  EXPECT_EQ(r.verdict, Verdict::kClean);
}

TEST(DecideVerdictTest, AssertionAndProtocolErrorsAreGuestFailures) {
  RunResult r;
  VcpuReport a = Kicked(0);
  a.assertion = GuestAssertion{"guests/smp/smp.c", 31, "sum == n", {1, 2}};
  r.vcpus = {a};
  DecideVerdict(r, false);
  EXPECT_EQ(r.verdict, Verdict::kGuestFailed);
  EXPECT_EQ(r.summary,
            "guest assertion failed on vcpu 0 at guests/smp/smp.c:31: sum == n (values 0x1, 0x2)");
  VcpuReport p = Kicked(0);
  p.protocol_error = "ucall at gpa 0x4000: bad magic 0x0 (expected 0x55434c4c)";
  r.vcpus = {p};
  DecideVerdict(r, false);
  EXPECT_EQ(r.verdict, Verdict::kGuestFailed);
  EXPECT_THAT(r.summary, HasSubstr("bad magic"));
}

TEST(DecideVerdictTest, HaltWithoutDoneIsAGuestFailure) {
  RunResult r;
  VcpuReport h;
  h.stop.kind = StopKind::kHalted;
  h.stop.detail = "halted (KVM_EXIT_HLT)";
  r.vcpus = {h};
  DecideVerdict(r, false);
  EXPECT_EQ(r.verdict, Verdict::kGuestFailed);
  EXPECT_EQ(r.summary, "vcpu 0 stopped without reporting DONE (halted: halted (KVM_EXIT_HLT))");
}

}  // namespace
}  // namespace mmuvisor::vmm
