// Machine: one guest VM, built and run. Create() prepares everything in an order that
// checks the user's input before touching /dev/kvm:
//   1. guest memory (memfd or anonymous, MAP_NORESERVE: nothing is allocated yet);
//   2. the boot plan (vmm/boot: ELF load, layout, page tables, GDT/TSS, boot info), so a
//      bad image or a size that cannot hold it is reported even on hosts without KVM;
//   3. /dev/kvm, its limits (vCPUs, memslots), the VM, the memslot, CPUID and the initial
//      registers of every vCPU;
//   4. the port bus: serial console at MMV_PORT_SERIAL, ucall at MMV_PORT_UCALL.
// Run() starts one VcpuRunner thread per vCPU and a watchdog, and returns when every vCPU
// has stopped. A crash, failed assertion, malformed ucall or host error on one vCPU kicks
// the others (the guest is broken; nothing is gained by waiting). Run() may be called once.
//
// Thread-safety: Create/Run/accessors from the owning thread. UcallHandler callbacks come
// from vCPU threads; mu_ guards the per-vCPU reports and timing marks.
// Destruction order: runners, then vCPUs, then the VM, then guest memory (the memslot's host
// range outlives the VM, as KVM_SET_USER_MEMORY_REGION requires).
#ifndef MMUVISOR_VMM_MACHINE_MACHINE_H_
#define MMUVISOR_VMM_MACHINE_MACHINE_H_

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "absl/types/span.h"
#include "notifier/mutex.h"
#include "vmm/boot/boot.h"
#include "vmm/devices/port_io_bus.h"
#include "vmm/devices/serial_console.h"
#include "vmm/devices/ucall.h"
#include "vmm/kvm/system.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/kvm/vm.h"
#include "vmm/machine/guest_console.h"
#include "vmm/machine/run_result.h"
#include "vmm/memory/guest_memory.h"
#include "vmm/vcpu/exit_handler.h"
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
};

struct MachineConfig {
  std::string kvm_path = std::string(kDefaultKvmPath);
  ByteSize ram_size{64ull << 20};
  uint32_t vcpus = 1;
  MemoryBacking backing = MemoryBacking::kMemfd;
  GuestPrivilege privilege = GuestPrivilege::kUser;
  absl::Duration timeout = absl::Seconds(10);  // InfiniteDuration(): no watchdog
  uint64_t seed = 0;
  std::FILE* console_echo = nullptr;    // where guest lines are echoed (stdout in the CLI)
  MachineObserver* observer = nullptr;  // not owned
};

// Whether a Create() error was caused by the user's input (image, sizes, vCPU count) rather
// than by the host (/dev/kvm, a failed ioctl). The CLI maps them to different exit codes.
bool IsInputError(const absl::Status& status);

class Machine : private UcallHandler {
 public:
  // Errors: whatever the step that failed returns (see the order above); their messages
  // name the ioctl, ELF field or limit. `elf` must stay valid during Create() only.
  static absl::StatusOr<std::unique_ptr<Machine>> Create(const MachineConfig& config,
                                                         absl::Span<const uint8_t> elf);
  ~Machine() override;

  RunResult Run() ABSL_LOCKS_EXCLUDED(mu_);

  const BootPlan& boot_plan() const { return plan_; }
  const GuestMemory& memory() const { return memory_; }
  const KvmLimits& limits() const { return limits_; }
  std::string console_transcript() const { return console_.transcript(); }

 private:
  Machine(const MachineConfig& config, absl::Time created, GuestMemory memory, BootPlan plan);
  absl::Status SetUpKvm();
  absl::Status SetUpVcpu(uint32_t index, const std::vector<kvm_cpuid_entry2>& cpuid);
  void OnVcpuStop(uint32_t vcpu, const VcpuStop& stop) ABSL_LOCKS_EXCLUDED(mu_);
  void KickAll();
  void MarkUcall() ABSL_LOCKS_EXCLUDED(mu_);

  // UcallHandler (vCPU threads).
  void OnPrint(uint32_t vcpu, absl::string_view text) override;
  void OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) override;
  void OnAssert(uint32_t vcpu, const GuestAssertion& assertion) override;
  void OnDone(uint32_t vcpu, uint64_t exit_code) override;
  void OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) override;
  void OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) override;
  void OnProtocolError(uint32_t vcpu, absl::string_view what) override;

  const MachineConfig config_;
  const absl::Time created_;
  GuestMemory memory_;  // declared before the VM: destroyed after it
  BootPlan plan_;
  GuestConsole console_;
  std::optional<KvmSystem> system_;
  KvmLimits limits_;
  std::optional<KvmVm> vm_;
  std::vector<std::unique_ptr<KvmVcpu>> vcpus_;
  PortIoBus bus_;
  SerialConsole serial_{&console_};
  UcallDevice ucall_{&memory_, this};
  ExitHandler exit_handler_{&bus_};
  std::vector<std::unique_ptr<VcpuRunner>> runners_;  // declared last: destroyed first

  Mutex mu_;
  std::vector<VcpuReport> reports_ ABSL_GUARDED_BY(mu_);
  std::optional<absl::Duration> first_ucall_ ABSL_GUARDED_BY(mu_);
  bool ran_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_MACHINE_MACHINE_H_
