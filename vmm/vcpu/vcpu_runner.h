// VcpuRunner: the thread that runs one vCPU, as an explicit state machine.
//
//   kCreated --Start()--> kInGuest <--> kHandlingExit --> kStopped
//                            |                              ^
//                            +------------------------------+   (stop request / error)
//
//   kCreated       constructed, thread not started
//   kInGuest       inside (or about to enter) KVM_RUN
//   kHandlingExit  an exit is being handled by ExitHandler
//   kStopped       the thread has recorded its VcpuStop and is exiting
// Every change goes through Transition(), which checks the edge against the table above.
//
// Stopping (Kick, any thread): sets stop_requested_ (release; pairs with the acquire load
// at the top of the run loop), sets kvm_run::immediate_exit, then sends kKickSignal to the
// thread. A guest in KVM_RUN returns with EINTR; a thread about to enter KVM_RUN returns at
// once because of immediate_exit; a thread handling an exit sees the flag before
// re-entering. So a kick always ends the run: no hang, whatever the guest does.
//
// Guest memory faults (KVM_RUN = EFAULT, KVM_EXIT_MEMORY_FAULT, an MMIO exit that may be
// RAM) go to the GuestFaultHandler, if one is given (guest_fault.h): it re-enters (the
// host window closed; the re-entry is the retry) or stops the vCPU with its report.
// Without a handler, or for any other failed KVM_RUN, the vCPU stops: kHostError, or
// kCrashed for KVM_EXIT_MEMORY_FAULT (naming gpa, size and flags).
//
// KVM_EXIT_DIRTY_RING_FULL (dirty-ring mode): the DirtyRingFullHandler, if one is set,
// harvests and resets the rings on this thread and the vCPU re-enters; without one it is
// an unexpected exit (crash).
//
// On a crash the runner takes KVM_GET_REGS / KVM_GET_SREGS itself (vCPU ioctls belong on
// the vCPU thread) and puts a RegisterDump in the VcpuStop.
// The thread is named "vcpu<N>". on_stop is called once, on the vCPU thread, after the
// stop is recorded and before the state becomes kStopped.
#ifndef MMUVISOR_VMM_VCPU_VCPU_RUNNER_H_
#define MMUVISOR_VMM_VCPU_VCPU_RUNNER_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>


#include "absl/base/thread_annotations.h"

#include "absl/status/status.h"
#include "absl/strings/string_view.h"
#include "notifier/base/mutex.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/vcpu/dirty_ring_full.h"
#include "vmm/vcpu/exit_handler.h"
#include "vmm/vcpu/guest_fault.h"
#include "vmm/vcpu/register_dump.h"

namespace mmuvisor::vmm {

// The signal used to interrupt KVM_RUN. Its handler does nothing (installed without
// SA_RESTART so the ioctl returns EINTR).
int KickSignal();

enum class VcpuState : uint8_t { kCreated, kInGuest, kHandlingExit, kStopped };
absl::string_view VcpuStateName(VcpuState state);
// The allowed edges of the state machine above.
bool IsValidTransition(VcpuState from, VcpuState to);

struct VcpuStop {
  StopKind kind = StopKind::kHostError;
  uint32_t exit_reason = 0;  // kvm_run::exit_reason at the stop
  std::string detail;
  std::optional<RegisterDump> registers;  // crashes only
  absl::Status error;                     // kHostError only
  bool guest_exception = false;  // via the exception stubs: the frame is on the guest stack
  bool protected_write = false;  // a guest write to memory the host write-protected
  std::optional<uint64_t> fault_gpa;  // guest memory faults, when the address is known
};

class VcpuRunner {
 public:
  using StopCallback = std::function<void(uint32_t vcpu, const VcpuStop& stop)>;

  // `vcpu`, `handler` are not owned and must outlive the runner. run_size: the kvm_run
  // mapping size.
  // `faults` may be null (every memory fault stops the vCPU).
  VcpuRunner(KvmVcpu* vcpu, size_t run_size, ExitHandler* handler, StopCallback on_stop,
             GuestFaultHandler* faults = nullptr);
  ~VcpuRunner();  // REQUIRES: Join() was called if Start() was.
  VcpuRunner(const VcpuRunner&) = delete;
  VcpuRunner& operator=(const VcpuRunner&) = delete;

  // REQUIRES: before Start(); `handler` outlives the runner. Null: none.
  void SetDirtyRingFullHandler(DirtyRingFullHandler* handler) { ring_full_ = handler; }

  void Start() ABSL_LOCKS_EXCLUDED(kick_mu_);
  // Any thread, any number of times, before or after Start(), before or after Join().
  void Kick() ABSL_LOCKS_EXCLUDED(kick_mu_);
  // Owner thread only.
  void Join() ABSL_LOCKS_EXCLUDED(kick_mu_);

  VcpuState state() const {
    return state_.load(std::memory_order_acquire);  // pairs with the release in Transition
  }
  // REQUIRES: Join() returned.
  const VcpuStop& stop() const { return stop_; }

 private:
  void ThreadMain();
  VcpuStop RunLoop();
  // A failed KVM_RUN (not EINTR): nullopt to re-enter, else the stop.
  std::optional<VcpuStop> OnRunError(const absl::Status& st, WindowToken entry);
  // KVM_EXIT_MMIO with a handler: nullopt to re-enter, a stop, or the ExitHandler's turn.
  enum class MmioOutcome : uint8_t { kReenter, kStop, kExitHandler };
  MmioOutcome OnMmio(WindowToken entry, VcpuStop& stop);
  VcpuStop StopFrom(const GuestFaultAction& action);
  void Transition(VcpuState to);
  void AddRegisters(VcpuStop& stop);

  KvmVcpu* const vcpu_;
  const size_t run_size_;
  ExitHandler* const handler_;
  StopCallback on_stop_;
  GuestFaultHandler* const faults_;
  DirtyRingFullHandler* ring_full_ = nullptr;  // set before Start, read by the vCPU thread
  // EFAULTs in a row with identical registers (vCPU thread only).
  uint32_t identical_efaults_ = 0;
  std::optional<kvm_regs> last_efault_regs_;
  std::atomic<VcpuState> state_{VcpuState::kCreated};
  std::atomic<bool> stop_requested_{false};
  std::thread thread_;  // touched only by the owner (Start, Join, destructor)
  // Whether pthread_kill(handle_) is allowed: from Start() until the thread leaves
  // ThreadMain (it clears the flag itself).
  Mutex kick_mu_;
  bool signalable_ ABSL_GUARDED_BY(kick_mu_) = false;
  pthread_t handle_ ABSL_GUARDED_BY(kick_mu_){};
  VcpuStop stop_;  // written by the vCPU thread, read after Join()
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_VCPU_VCPU_RUNNER_H_
