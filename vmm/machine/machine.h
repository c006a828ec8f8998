// Machine: one guest VM, built and run, on guest RAM owned by vmm/host's HostAddressSpace
// (so every host operation — reclaim, discard, protect, migrate, unmap — really happens
// under the running guest, bracketed by the notifier hub). Create() prepares everything
// in an order that checks the user's input before touching /dev/kvm:
//   1. the host address space: guest RAM (memfd or anonymous, nothing allocated yet), its
//      hub, swap store and userfaultfd page server;
//   2. the boot plan (vmm/boot: ELF load, layout, page tables, GDT/TSS, boot info), loaded
//      through the space (first touches are zero-fills by the page server), so a bad image
//      or a size that cannot hold it is reported even on hosts without KVM;
//   3. /dev/kvm, its limits and the VM (created first, before step 1), every vCPU with its
//      local APIC in KVM or nowhere (local_apic.h: decided from the boot plan) and its
//      CPUID, then
//      HostAddressSpace::AttachHypervisor (memslots via KVM_SET_USER_MEMORY_REGION with
//      dirty logging, the dirty-log self-check on vCPU 0), then the boot registers; the
//      dirty ring (config.dirty_log) is enabled before the first vCPU and each vCPU's ring
//      mapped before the self-check; its vCPU threads harvest on KVM_EXIT_DIRTY_RING_FULL;
//   4. the port bus: serial console at MMV_PORT_SERIAL, ucall at MMV_PORT_UCALL (ucall reads
//      guest memory through the space). More devices: AttachPortDevice before Run.
// Run() starts the reclaim driver (config.reclaim; the Machine owns it, as the system owns
// kswapd, not the mm), one VcpuRunner thread per vCPU, and returns when
// every vCPU has stopped (kicking them all once config.timeout has passed). A crash, failed assertion, malformed
// ucall, host error or page-server failure on one vCPU kicks the others. Run() may be
// called once.
//
// Guest memory faults (vcpu/guest_fault.h): a store into a range a host window mapped
// read-only fails KVM_RUN with EFAULT. With an address (KVM_EXIT_MEMORY_FAULT, Linux
// >= 6.8; or an emulated access exiting as MMIO inside RAM) ClassifyGuestFault
// (guest_fault_verdict.h) judges it from the space's facts:
// kRetry -> WaitForPage, re-enter (MMIO: the access is completed through WriteGuest /
// ReadGuest first); kProtected -> the observer's OnProtectedWrite decides (default: stop
// the vCPU, kCrashed, "guest write to write-protected memory at gpa ..."); kPoisoned ->
// stop (page server failed). Without an address (plain EFAULT, Linux 6.1): if any window
// was open during the failed entry (window counts before and after), wait until the
// windows open at the fault have closed and re-enter; if none was, the fault is not a
// window's: kProtected when any page is protected (the event names the first protected
// page; the kernel gave no address), else a guest memory fault (kCrashed). A guest that takes
// kMaxIdenticalEfaults EFAULTs in a row with identical registers while pages are
// protected is reported as a protected write even if windows kept opening (a reclaim
// storm must not turn a protected write into an endless retry). Every re-entry is counted
// (RunResult::guest_fault_retries), every protected-write report too.
//
// Thread-safety: Create/Run/AttachPortDevice/accessors from the owning thread;
// RequestStop, ReadGuest, WriteGuest and host() from any thread. UcallHandler and
// GuestFaultHandler callbacks come from vCPU threads; mu_ guards the per-vCPU reports,
// timing marks, stop reasons and the reclaim-driver pointer (the driver is stopped outside
// it). join_mu_ serialises starting and joining the runners (Run and the
// space's Teardown may both join).
// Destruction: CPUID prefetch stopped -> reclaim driver stopped -> runners stopped ->
// DetachHypervisor (no memslot is deleted one by one: KVM frees them with the VM) -> vCPUs
// -> VM -> host().Teardown() (hub Release, page server shut down, RAM unmapped) -> the
// space.
#ifndef MMUVISOR_VMM_MACHINE_MACHINE_H_
#define MMUVISOR_VMM_MACHINE_MACHINE_H_

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "notifier/base/mutex.h"
#include "vmm/boot/boot.h"
#include "vmm/devices/port_io_bus.h"
#include "vmm/devices/serial_console.h"
#include "vmm/devices/ucall.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/kvm_bindings.h"
#include "vmm/host/kvm_dirty_ring.h"
#include "vmm/host/reclaim_driver.h"
#include "vmm/kvm/cpuid_prefetch.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/machine/guest_console.h"
#include "vmm/machine/guest_fault_verdict.h"
#include "vmm/machine/local_apic.h"
#include "vmm/machine/run_result.h"
#include "vmm/memory/memory_backing.h"
#include "vmm/vcpu/exit_handler.h"
#include "vmm/vcpu/guest_fault.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace mmuvisor::vmm {

// Calls later issues act on (balloon, report, sync). Called on vCPU threads; must
// synchronise itself. Default: ignore.
class MachineObserver {
 public:
  virtual ~MachineObserver() = default;
  virtual void OnSync(uint32_t /*vcpu*/, uint64_t /*stage*/,
                      absl::Span<const uint64_t> /*values*/) {}
  virtual void OnBalloon(uint32_t /*vcpu*/, Gpa /*gpa*/, ByteSize /*len*/) {}
  virtual void OnReport(uint32_t /*vcpu*/, uint64_t /*kind*/,
                        absl::Span<const uint64_t> /*values*/) {}
  // The guest wrote memory the host protected (gpa when the kernel reported it). Return
  // true to re-enter the guest (e.g. after Unprotect: the write is retried), false to stop
  // the vCPU with the event. Counted either way.
  virtual bool OnProtectedWrite(uint32_t /*vcpu*/, std::optional<Gpa> /*gpa*/,
                                absl::string_view /*detail*/) {
    return false;
  }
};

// Live guest-fault counters (relaxed reads: exact once the vCPUs have stopped).
struct MachineFaultStats {
  uint64_t faults = 0;            // memory faults the vCPUs reported to the Machine
  uint64_t retries = 0;           // resolved by waiting for a window and re-entering
  uint64_t protected_writes = 0;  // guest writes to host-protected memory
  // Guest accesses to a MachineConfig::slot_windows window while no memslot was there
  // (completed as a bus completes an access to nothing: reads all ones, writes dropped).
  uint64_t absent_accesses = 0;
};

// Where alias k (1..K) of guest RAM starts: k * AliasStride(ram_size), RAM rounded up
// to 1 GiB (MachineConfig::ram_aliases).
uint64_t AliasStride(ByteSize ram_size);

struct MachineConfig {
  std::string kvm_path = std::string(kDefaultKvmPath);
  // The supported-CPUID query already under way for kvm_path (SupportedCpuidPrefetch::Begin,
  // as the CLI does before it resolves the guest); the Machine hands it its vCPUs. Null,
  // for another path, or already claimed by another Machine (a copied config): the
  // Machine begins its own.
  std::shared_ptr<SupportedCpuidPrefetch> cpuid_prefetch;
  ByteSize ram_size{64ull << 20};
  uint32_t vcpus = 1;
  MemoryBacking backing = MemoryBacking::kMemfd;
  GuestPrivilege privilege = GuestPrivilege::kUser;
  absl::Duration timeout = absl::Seconds(10);  // then every vCPU is kicked; Infinite: never
  // mmv_boot_info.seed, .flags, .args and .nr_args (`mmuvisor run --seed --boot-flags --
  // ARG...`); RSI at entry is nr_args.
  uint64_t seed = 0;
  uint32_t boot_flags = 0;
  std::array<uint64_t, MMV_BOOT_INFO_MAX_ARGS> boot_args{};
  uint32_t nr_boot_args = 0;
  std::FILE* console_echo = nullptr;    // where guest lines are echoed (stdout in the CLI)
  MachineObserver* observer = nullptr;  // not owned
  // Guest RAM as this many memslots (`--slots N`): contiguous in guest-physical and in the
  // backing (slot i = n / N pages, one more for i < n % N, in order, at their identity
  // gpa), so the boot layout and the guest see one flat RAM; KVM, the dirty log and every
  // secondary MMU see N slots. 1 to the pages of RAM, and with the aliases and the slot
  // windows' spare slot within KVM_CAP_NR_MEMSLOTS (an input error beyond).
  uint32_t ram_slots = 1;
  // Aliases of guest RAM (`--aliases K`, KVM's mmu_stress_test layout): K more memslots
  // over all of RAM's host pages, alias k at guest-physical k * AliasStride(ram_size), ids
  // ram_slots .. ram_slots + K - 1, mapped one-to-one in the guest's page tables. A host
  // operation on a page reaches every alias (vmm/host/README.md).
  uint32_t ram_aliases = 0;
  // Guest-physical windows (2 MiB aligned, beyond RAM and the aliases) where a memslot may
  // come and go while the guest runs (memslot churn: vmm/host/memslot_change.h). Mapped in
  // the guest's page tables; a guest access while no slot is there is counted
  // (fault_stats().absent_accesses) and completed as a bus completes an access to nothing
  // (reads all ones, writes dropped) instead of stopping the VM. The slot that comes and
  // goes is one more memslot, counted against KVM_CAP_NR_MEMSLOTS.
  std::vector<IdentityWindow> slot_windows;
  // The host address space. Machine sets ram_bytes/backing (from ram_size/backing),
  // slots (from ram_slots), memslot_control, dirty_log, dirty_probe,
  // attach_hypervisor_later and
  // stop_guests itself; on_page_server_failure, if set, is called after the Machine's own
  // (which stops the VM). Everything else (swap dir, page_server_threads,
  // fault_around_pages, hub options incl. dispatch policy, oom, write_protect_windows,
  // window_hook) is used as given.
  HostAddressSpaceOptions host;
  // Dirty tracking for reclaim (`--dirty bitmap|ring|auto|none`, vmm/host/dirty_tracking.h):
  // the bitmap (KVM_GET_DIRTY_LOG), the per-vCPU dirty ring (an error where KVM does not
  // offer it), none (no log at all: no slot flag, no self-check; reclaim writes back every
  // resident page) or auto, the CLI's default: none where KVM prefetches neighbouring
  // pages on a fault (KvmPrefetchesNeighbours: PVM, shadow paging, the legacy MMU), which
  // a dirty log turns off for writable pages; elsewhere the ring if offered and its
  // self-check on a scratch VM passes, else the bitmap. The choice is logged and is
  // dirty_log_source(). The real VM's self-check then decides between a log and
  // always-write-back.
  DirtyLogSource dirty_log = DirtyLogSource::kBitmap;
  uint32_t dirty_ring_entries = kDefaultDirtyRingEntries;  // per vCPU; rounded, clamped
  // Started by Run() when set (the CLI's `--resident`); stopped before the space's
  // Teardown (its stop_guests) and by destruction.
  std::optional<ReclaimDriverOptions> reclaim;
  // Whether guest RAM is served by the userfaultfd page server (HostAddressSpace), which
  // reclaim and migration need: a page they took out comes back from the swap store
  // through it. false: RAM is plain memfd memory, a first touch is the kernel's zero-fill,
  // no handler thread runs, and Reclaim/Migrate on host() fail FailedPrecondition ("the
  // page server is not started"); Discard, Protect and DMA work as ever. The CLI's `run`
  // turns it off unless --resident (nothing reclaims then); false with `reclaim` set is an
  // input error.
  bool page_server = true;
  // The vCPUs' local APICs (local_apic.h): auto puts them in KVM (KVM_CAP_SPLIT_IRQCHIP)
  // for a long-mode guest at CPL3 whose mapped ranges avoid the APIC page, which saves the
  // host two kernel text patches per process; elsewhere, or with kUserspace, there is no
  // irqchip and a CPL0 guest's HLT stops its vCPU (kHalted).
  LocalApicMode local_apic = LocalApicMode::kAuto;
};

// Whether a Create() error was caused by the user's input (image, sizes, vCPU count) rather
// than by the host (/dev/kvm, a failed ioctl). The CLI maps them to different exit codes.
bool IsInputError(const absl::Status& status);

class Machine : private UcallHandler, private GuestFaultHandler {
 public:
  // EFAULTs in a row with identical registers after which a fault is a protected write
  // (while pages are protected) even if windows kept opening. See the header comment.
  static constexpr uint32_t kMaxIdenticalEfaults = 256;

  // Errors: whatever the step that failed returns (see the order above); their messages
  // name the ioctl, ELF field or limit. `elf` must stay valid during Create() only.
  static absl::StatusOr<std::unique_ptr<Machine>> Create(const MachineConfig& config,
                                                         absl::Span<const uint8_t> elf);
  ~Machine() override;
  Machine(const Machine&) = delete;
  Machine& operator=(const Machine&) = delete;

  RunResult Run() ABSL_LOCKS_EXCLUDED(mu_, join_mu_);

  // Any thread, any time (before Run: Run returns at once). Kicks every vCPU; Run()
  // returns with the vCPUs stopped by the host: RunResult::host_stop = reason, and the
  // kicked vCPUs do not count as failures (the verdict is what the guest did until then).
  void RequestStop(absl::string_view reason) ABSL_LOCKS_EXCLUDED(mu_);

  // Adds a device to the port bus. REQUIRES: `device` outlives the Machine.
  // FailedPrecondition once Run() has started; the bus's error on overlap or bad range.
  absl::Status AttachPortDevice(uint16_t base, uint32_t count, PortIoDevice* device)
      ABSL_LOCKS_EXCLUDED(mu_);

  // Bounds-checked copies through the host address space (see
  // HostAddressSpace::ReadGuest/WriteGuest: waits out windows, refuses protected pages,
  // notes host writes for dirty tracking). Any thread.
  absl::Status ReadGuest(Gpa gpa, absl::Span<uint8_t> out) {
    return space_->ReadGuest(gpa, out);
  }
  absl::Status WriteGuest(Gpa gpa, absl::Span<const uint8_t> in) {
    return space_->WriteGuest(gpa, in);
  }

  // Valid from Create until destruction (torn down by the destructor; do not call its
  // Teardown() while Run() is running on another thread unless you mean to stop the VM).
  HostAddressSpace& host() { return *space_; }
  const HostAddressSpace& host() const { return *space_; }

  MachineFaultStats fault_stats() const;

  // The reclaim driver on this machine's space (reclaim_driver.h), owned by the Machine:
  // Run() starts it from config.reclaim, or call StartReclaimDriver (owning thread).
  // Stopped before the space's Teardown and at destruction. FailedPrecondition when one
  // runs already or the space is torn down.
  absl::Status StartReclaimDriver(const ReclaimDriverOptions& options) ABSL_LOCKS_EXCLUDED(mu_);
  ReclaimDriver* reclaim_driver() ABSL_LOCKS_EXCLUDED(mu_);  // null until started

  // The dirty ring when the machine uses one (config.dirty_log ring, or auto that chose
  // it), else null. Valid until destruction.
  const KvmDirtyRingLog* dirty_ring() const { return kvm_dirty_ring_.get(); }
  // What config.dirty_log became: bitmap, ring or none (never auto).
  DirtyLogSource dirty_log_source() const { return dirty_log_; }

  const BootPlan& boot_plan() const { return plan_; }
  // Whether KVM emulates the vCPUs' local APICs (config.local_apic, local_apic.h).
  bool lapic_in_kernel() const { return lapic_in_kernel_; }
  const KvmLimits& limits() const { return limits_; }
  uint32_t vcpu_count() const { return config_.vcpus; }
  std::string console_transcript() const { return console_.transcript(); }

 private:
  Machine(const MachineConfig& config, absl::Time created);
  absl::Status Init(absl::Span<const uint8_t> elf);
  // Step 0 of Init: /dev/kvm, its limits against the config, the VM, the dirty log's
  // source (a ring is enabled here).
  absl::Status CreateVm();
  // Step 3, first: where the LAPIC goes (local_apic.h, from the boot plan), the vCPUs
  // (handed to cpuid_prefetch_ for their CPUID).
  absl::Status CreateVcpus();
  // Step 3: memslots and dirty log attached to the space, every vCPU's CPUID waited for
  // (before the attachment if its probe will run vCPU 0), initial registers.
  absl::Status SetUpKvm();
  // Resolves config_.dirty_log into dirty_log_ and enables the dirty ring on vm_ if that
  // is the choice (before any vCPU exists).
  absl::Status ChooseDirtyLogSource();
  void OnVcpuStop(uint32_t vcpu, const VcpuStop& stop) ABSL_LOCKS_EXCLUDED(mu_);
  void OnPageServerFailure(const absl::Status& status) ABSL_LOCKS_EXCLUDED(mu_);
  void KickAll() ABSL_LOCKS_EXCLUDED(kicks_mu_);
  void StopReclaimDriver() ABSL_LOCKS_EXCLUDED(mu_);  // idempotent; joins its thread
  void JoinAll() ABSL_LOCKS_EXCLUDED(join_mu_);
  void MarkUcall() ABSL_LOCKS_EXCLUDED(mu_);

  // UcallHandler (vCPU threads).
  void OnPrint(uint32_t vcpu, absl::string_view text) override;
  void OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) override;
  void OnAssert(uint32_t vcpu, const GuestAssertion& assertion) override;
  void OnDone(uint32_t vcpu, uint64_t exit_code) override;
  void OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) override;
  void OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) override;
  void OnSerial(uint32_t vcpu, absl::string_view bytes) override;
  void OnProtocolError(uint32_t vcpu, absl::string_view what) override;

  // GuestFaultHandler (vCPU threads; machine_faults.cc).
  WindowToken BeforeEntry() override;
  GuestFaultAction OnGuestFault(uint32_t vcpu, const GuestFault& fault, kvm_run& run,
                                const std::atomic<bool>& stop_requested) override;
  // Whether [gpa, gpa + len) lies in one of config_.slot_windows.
  bool InSlotWindow(Gpa gpa, uint32_t len) const;
  GuestFaultAction OnMmioFault(uint32_t vcpu, const GuestFault& fault, kvm_run& run,
                               const std::atomic<bool>& stop_requested);
  GuestFaultAction ActionFor(uint32_t vcpu, const GuestFaultVerdict& verdict,
                           std::optional<uint64_t> gpa);
  bool WaitForWindows(uint64_t opened, const std::atomic<bool>& stop_requested);

  const MachineConfig config_;
  const absl::Time created_;
  // Declared before the VM: destroyed after it (the memslots' host range outlives it).
  std::unique_ptr<HostAddressSpace> space_;
  BootPlan plan_;
  GuestConsole console_;
  std::shared_ptr<SupportedCpuidPrefetch> cpuid_prefetch_;  // Init only (Stop()ped after)
  std::optional<KvmSystem> system_;
  KvmLimits limits_;
  std::optional<KvmVm> vm_;
  std::optional<KvmMemslotControl> kvm_slots_;  // reference vm_
  std::optional<KvmDirtyLog> kvm_dirty_log_;
  std::unique_ptr<KvmDirtyRingLog> kvm_dirty_ring_;  // references vm_; or kvm_dirty_log_
  // config_.dirty_log with auto resolved (ChooseDirtyLogSource, before the first vCPU).
  DirtyLogSource dirty_log_ = DirtyLogSource::kBitmap;
  bool lapic_in_kernel_ = false;  // CreateVcpus' choice
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  PortIoBus bus_;
  SerialConsole serial_{&console_};
  std::optional<UcallDevice> ucall_;
  ExitHandler exit_handler_{&bus_};
  // Created by Init (immutable afterwards: KickAll may run on any thread); started by Run.
  // The destructor clears it only after setting runners_gone_ under kicks_mu_: a page
  // server thread (alive until the space's Teardown, later) may still call
  // OnPageServerFailure -> KickAll then.
  std::vector<std::unique_ptr<VcpuRunner>> runners_;
  Mutex kicks_mu_;  // before each runner's kick_mu_; never held with mu_ or join_mu_
  bool runners_gone_ ABSL_GUARDED_BY(kicks_mu_) = false;

  std::atomic<uint64_t> faults_{0};             // relaxed: statistic
  std::atomic<uint64_t> fault_retries_{0};      // relaxed: statistic
  std::atomic<uint64_t> protected_writes_{0};   // relaxed: statistic
  std::atomic<uint64_t> absent_accesses_{0};    // relaxed: statistic

  Mutex join_mu_ ABSL_ACQUIRED_BEFORE(mu_);
  mutable Mutex mu_;
  std::vector<VcpuReport> reports_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Duration> first_ucall_ ABSL_GUARDED_BY(mu_);
  bool ran_ ABSL_GUARDED_BY(mu_) = false;
  std::optional<std::string> host_stop_ ABSL_GUARDED_BY(mu_);
  // vCPUs that have stopped (OnVcpuStop); Run waits on stopped_cv_ for all of them.
  size_t stopped_ ABSL_GUARDED_BY(mu_) = 0;
  std::condition_variable stopped_cv_;
  // Set once (StartReclaimDriver); reset at destruction after it was stopped.
  std::unique_ptr<ReclaimDriver> reclaimd_ ABSL_GUARDED_BY(mu_);
  absl::Status page_server_error_ ABSL_GUARDED_BY(mu_);
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_MACHINE_H_
