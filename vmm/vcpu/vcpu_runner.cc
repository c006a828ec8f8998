#include "vmm/vcpu/vcpu_runner.h"

#include <pthread.h>
#include <signal.h>

#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "vmm/kvm/kvm_constants.h"
#include "vmm/vcpu/exit_reason.h"

namespace mmuvisor::vmm {
namespace {

void KickHandler(int /*sig*/) {}  // only there to make KVM_RUN return EINTR

void InstallKickHandlerOnce() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa = {};
    sa.sa_handler = KickHandler;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;  // no SA_RESTART: the interrupted KVM_RUN must return EINTR
    sigaction(KickSignal(), &sa, nullptr);
  });
}

}  // namespace

int KickSignal() { return SIGUSR2; }

absl::string_view VcpuStateName(VcpuState state) {
  switch (state) {
    case VcpuState::kCreated:
      return "created";
    case VcpuState::kInGuest:
      return "in-guest";
    case VcpuState::kHandlingExit:
      return "handling-exit";
    case VcpuState::kStopped:
      return "stopped";
  }
  return "?";
}

bool IsValidTransition(VcpuState from, VcpuState to) {
  switch (from) {
    case VcpuState::kCreated:
      return to == VcpuState::kInGuest || to == VcpuState::kStopped;
    case VcpuState::kInGuest:
      return to == VcpuState::kHandlingExit || to == VcpuState::kStopped;
    case VcpuState::kHandlingExit:
      return to == VcpuState::kInGuest || to == VcpuState::kStopped;
    case VcpuState::kStopped:
      return false;
  }
  return false;
}

VcpuRunner::VcpuRunner(KvmVcpu* vcpu, size_t run_size, ExitHandler* handler,
                       StopCallback on_stop, GuestFaultHandler* faults)
    : vcpu_(vcpu),
      run_size_(run_size),
      handler_(handler),
      on_stop_(std::move(on_stop)),
      faults_(faults) {
  InstallKickHandlerOnce();
}

VcpuRunner::~VcpuRunner() {
  // A joinable std::thread at destruction calls std::terminate; make the bug loud and
  // clean up instead.
  if (thread_.joinable()) {
    assert(false && "VcpuRunner destroyed without Join()");
    Kick();
    Join();
  }
}

void VcpuRunner::Start() {
  // Held across thread creation so a Kick() from another thread (or from the new thread's
  // own on_stop) never sees a half-assigned handle.
  MutexLock lock(&kick_mu_);
  thread_ = std::thread([this] { ThreadMain(); });
  handle_ = thread_.native_handle();
  signalable_ = true;
}

void VcpuRunner::Kick() {
  stop_requested_.store(true, std::memory_order_release);  // pairs with RunLoop's acquire
  vcpu_->RequestImmediateExit(true);
  MutexLock lock(&kick_mu_);
  // A thread that has returned but is not yet joined may still be signalled (its handle
  // stays valid until join); a joined one may not, hence signalable_.
  if (signalable_) pthread_kill(handle_, KickSignal());
}

void VcpuRunner::Join() {
  // signalable_ is cleared by the thread itself as it leaves ThreadMain, not here: the
  // owner calls Join() while the guest still runs, and a kick (the timeout, another vCPU's
  // crash) must still reach it then. (Clearing it here made timeouts hang: found under
  // nested KVM in QEMU.)
  if (thread_.joinable()) thread_.join();
  MutexLock lock(&kick_mu_);
  signalable_ = false;
}

void VcpuRunner::Transition(VcpuState to) {
  const VcpuState from = state_.load(std::memory_order_relaxed);  // only this thread writes
  if (!IsValidTransition(from, to)) {
    // A programmer bug in this file, never a guest's doing.
    assert(false && "invalid vCPU state transition");
    std::abort();
  }
  state_.store(to, std::memory_order_release);  // pairs with the acquire in state()
}

void VcpuRunner::ThreadMain() {
  pthread_setname_np(pthread_self(), absl::StrCat("vcpu", vcpu_->id()).substr(0, 15).c_str());
  // The kick signal must be deliverable to this thread even if the creator blocked it.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, KickSignal());
  pthread_sigmask(SIG_UNBLOCK, &set, nullptr);

  stop_ = RunLoop();
  if (on_stop_) on_stop_(static_cast<uint32_t>(vcpu_->id()), stop_);
  {
    // From here on nobody signals this thread (its handle stays valid until the join).
    MutexLock lock(&kick_mu_);
    signalable_ = false;
  }
  Transition(VcpuState::kStopped);
}

VcpuStop VcpuRunner::RunLoop() {
  kvm_run* run = vcpu_->run();
  const uint32_t id = static_cast<uint32_t>(vcpu_->id());
  for (;;) {
    if (stop_requested_.load(std::memory_order_acquire)) {  // pairs with Kick()'s release
      return VcpuStop{StopKind::kKicked, run->exit_reason, "stopped on request", {}, {}};
    }
    const WindowToken entry = faults_ != nullptr ? faults_->BeforeEntry() : WindowToken{};
    Transition(VcpuState::kInGuest);
    absl::Status st = vcpu_->Run();
    Transition(VcpuState::kHandlingExit);
    if (!st.ok()) {
      // EINTR (a kick or a stray signal) and EAGAIN: loop; the top checks for a stop.
      if (absl::IsUnavailable(st)) continue;
      std::optional<VcpuStop> stop = OnRunError(st, entry);
      if (!stop.has_value()) continue;
      return *std::move(stop);
    }
    identical_efaults_ = 0;
    last_efault_regs_.reset();
    if (ring_full_ != nullptr && run->exit_reason == KVM_EXIT_DIRTY_RING_FULL) {
      // KVM will not enter again until the rings are harvested and reset.
      if (absl::Status s = ring_full_->OnDirtyRingFull(id); !s.ok()) {
        return VcpuStop{StopKind::kHostError, run->exit_reason,
                        absl::StrCat("dirty ring full: ", s.message()), {}, s};
      }
      continue;
    }
    if (faults_ != nullptr && run->exit_reason == KVM_EXIT_MMIO) {
      VcpuStop stop;
      const MmioOutcome outcome = OnMmio(entry, stop);
      if (outcome == MmioOutcome::kReenter) continue;
      if (outcome == MmioOutcome::kStop) return stop;
    }
    ExitDecision decision = handler_->Handle(id, *run, run_size_);
    if (!decision.stop) continue;
    VcpuStop stop{decision.kind, run->exit_reason, std::move(decision.detail), {}, {}};
    stop.guest_exception = decision.guest_exception;
    if (stop.kind == StopKind::kCrashed) AddRegisters(stop);
    if (stop.kind == StopKind::kHostError) stop.error = absl::InternalError(stop.detail);
    return stop;
  }
}

std::optional<VcpuStop> VcpuRunner::OnRunError(const absl::Status& st, WindowToken entry) {
  kvm_run* run = vcpu_->run();
  const uint32_t id = static_cast<uint32_t>(vcpu_->id());
  // KVM_RUN's EFAULT is the only errno ErrnoToStatus maps to OutOfRange.
  const bool efault = absl::IsOutOfRange(st);
  // KVM_EXIT_MEMORY_FAULT is valid only with EFAULT (api.rst; EHWPOISON too, which is left
  // to the host-error path): with any other errno exit_reason means nothing.
  const bool memory_fault_exit = efault && run->exit_reason == kvm_abi::kExitMemoryFault;
  if (faults_ != nullptr && (memory_fault_exit || efault)) {
    GuestFault fault;
    fault.entry = entry;
    if (memory_fault_exit) {
      // Linux >= 6.8 with KVM_CAP_MEMORY_FAULT_INFO: the faulting range is in kvm_run
      // (union member at the same offset as memory_fault {flags, gpa, size}, read as raw
      // words: 6.1 lacks the struct).
      uint64_t words[3];
      static_assert(sizeof(words) <= sizeof(run->padding));
      std::memcpy(words, run->padding, sizeof(words));
      fault.source = GuestFaultSource::kMemoryFault;
      fault.gpa = words[1];
      fault.size = words[2];
    } else {
      // No address on this kernel: count how often the guest fails with exactly the same
      // state (no progress at all), for the handler's bound.
      absl::StatusOr<kvm_regs> regs = vcpu_->GetRegs();
      if (regs.ok() && last_efault_regs_.has_value() &&
          std::memcmp(&*regs, &*last_efault_regs_, sizeof(kvm_regs)) == 0) {
        ++identical_efaults_;
      } else {
        identical_efaults_ = 1;
      }
      if (regs.ok()) last_efault_regs_ = *regs;
      fault.identical_repeats = identical_efaults_;
    }
    GuestFaultAction action = faults_->OnGuestFault(id, fault, *run, stop_requested_);
    if (action.kind == GuestFaultAction::kReenter) return std::nullopt;
    if (!action.gpa.has_value()) action.gpa = fault.gpa;
    return StopFrom(action);
  }
  VcpuStop stop{StopKind::kHostError, run->exit_reason, std::string(st.message()), {}, st};
  if (memory_fault_exit) {
    uint64_t words[3];
    static_assert(sizeof(words) <= sizeof(run->padding));
    std::memcpy(words, run->padding, sizeof(words));
    stop.kind = StopKind::kCrashed;
    stop.detail = absl::StrFormat(
        "memory fault KVM could not resolve (KVM_EXIT_MEMORY_FAULT): gpa=%#x size=%#x "
        "flags=%#x; %s",
        words[1], words[2], words[0], st.message());
    stop.fault_gpa = words[1];
    stop.error = absl::OkStatus();
    AddRegisters(stop);
  }
  return stop;
}

VcpuRunner::MmioOutcome VcpuRunner::OnMmio(WindowToken entry, VcpuStop& stop) {
  kvm_run* run = vcpu_->run();
  GuestFault fault;
  fault.source = GuestFaultSource::kMmio;
  fault.gpa = run->mmio.phys_addr;
  fault.size = run->mmio.len;
  fault.entry = entry;
  GuestFaultAction action =
      faults_->OnGuestFault(static_cast<uint32_t>(vcpu_->id()), fault, *run, stop_requested_);
  switch (action.kind) {
    case GuestFaultAction::kReenter:
      return MmioOutcome::kReenter;
    case GuestFaultAction::kNotMine:
      return MmioOutcome::kExitHandler;
    case GuestFaultAction::kStop:
      if (!action.gpa.has_value()) action.gpa = fault.gpa;
      stop = StopFrom(action);
      return MmioOutcome::kStop;
  }
  return MmioOutcome::kExitHandler;
}

VcpuStop VcpuRunner::StopFrom(const GuestFaultAction& action) {
  VcpuStop stop{action.stop_kind, vcpu_->run()->exit_reason, action.detail, {}, {}};
  stop.protected_write = action.protected_write;
  stop.fault_gpa = action.gpa;
  if (stop.kind == StopKind::kCrashed) AddRegisters(stop);
  if (stop.kind == StopKind::kHostError) stop.error = absl::InternalError(stop.detail);
  return stop;
}

void VcpuRunner::AddRegisters(VcpuStop& stop) {
  absl::StatusOr<kvm_regs> regs = vcpu_->GetRegs();
  absl::StatusOr<kvm_sregs> sregs = vcpu_->GetSregs();
  if (regs.ok() && sregs.ok()) {
    stop.registers = RegisterDump::From(*regs, *sregs);
  } else {
    absl::StrAppend(&stop.detail, " (registers unavailable: ",
                    (regs.ok() ? sregs.status() : regs.status()).message(), ")");
  }
}

}  // namespace mmuvisor::vmm
