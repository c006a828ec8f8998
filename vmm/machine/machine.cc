#include "vmm/machine/machine.h"

#include <cassert>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "vmm/machine/exception_stubs.h"
#include "vmm/status_macros.h"
#include "vmm/vcpu/watchdog.h"

namespace mmuvisor::vmm {
namespace {

// KVM_SET_TSS_ADDR: three pages KVM may use for the real-mode TSS on Intel hosts without
// unrestricted guest; the address Firecracker and QEMU use, just below the 4 GiB BIOS
// area. It must not overlap a memslot, so it is only set when RAM ends below it.
constexpr uint64_t kTssAddr = 0xfffbd000;

constexpr absl::string_view kErrorClassUrl = "mmuvisor/error-class";

absl::Status InputError(absl::Status status) {
  status.SetPayload(kErrorClassUrl, absl::Cord("input"));
  return status;
}

}  // namespace

bool IsInputError(const absl::Status& status) {
  absl::optional<absl::Cord> payload = status.GetPayload(kErrorClassUrl);
  return payload.has_value() && *payload == "input";
}

absl::StatusOr<std::unique_ptr<Machine>> Machine::Create(const MachineConfig& config,
                                                         absl::Span<const uint8_t> elf) {
  const absl::Time created = absl::Now();
  if (config.vcpus == 0 || config.vcpus > MMV_UCALL_MAX_VCPUS) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "%u vCPUs requested: mmuvisor guests support 1 to %u", config.vcpus,
        MMV_UCALL_MAX_VCPUS)));
  }
  // 1 and 2: memory and boot plan, before /dev/kvm is opened.
  absl::StatusOr<GuestMemory> memory = GuestMemory::Create(config.ram_size, config.backing);
  if (!memory.ok()) {
    // A bad size is the user's; failing to map a valid one is the host's.
    return absl::IsInvalidArgument(memory.status()) ? InputError(memory.status())
                                                    : memory.status();
  }
  const GuestRamView ram{memory->host_base(), memory->ram_size().value};
  BootOptions options;
  options.nr_vcpus = config.vcpus;
  options.privilege = config.privilege;
  options.seed = config.seed;
  absl::StatusOr<BootPlan> plan = PrepareGuest(ram, elf, options);
  if (!plan.ok()) return InputError(plan.status());

  if (plan->image.mode == BootMode::kLong64) {
    // Exceptions exit to us with their frame instead of triple-faulting (exception_stubs.h).
    if (absl::Status st = InstallExceptionStubs(*memory); !st.ok()) return InputError(st);
  }
  std::unique_ptr<Machine> machine(
      new Machine(config, created, std::move(*memory), std::move(*plan)));
  // 3 and 4.
  RETURN_IF_ERROR(machine->SetUpKvm());
  RETURN_IF_ERROR(
      machine->bus_.Register(MMV_PORT_SERIAL, SerialConsole::kPortCount, &machine->serial_,
                             "serial"));
  RETURN_IF_ERROR(machine->bus_.Register(MMV_PORT_UCALL, 4, &machine->ucall_, "ucall"));
  return machine;
}

Machine::Machine(const MachineConfig& config, absl::Time created, GuestMemory memory,
                 BootPlan plan)
    : config_(config),
      created_(created),
      memory_(std::move(memory)),
      plan_(std::move(plan)),
      console_(config.console_echo) {}

Machine::~Machine() {
  // Runners first (they reference the vCPUs); Run() has joined them already if it ran.
  for (auto& r : runners_) {
    r->Kick();
    r->Join();
  }
  runners_.clear();
}

absl::Status Machine::SetUpKvm() {
  ASSIGN_OR_RETURN(KvmSystem system, KvmSystem::Open(config_.kvm_path));
  system_.emplace(std::move(system));
  ASSIGN_OR_RETURN(limits_, system_->ProbeLimits());
  if (config_.vcpus > static_cast<uint32_t>(limits_.max_vcpus)) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "%u vCPUs requested: KVM on this host allows at most %d (KVM_CAP_MAX_VCPUS)",
        config_.vcpus, limits_.max_vcpus)));
  }
  if (limits_.nr_memslots < static_cast<int>(memory_.slots().slots().size())) {
    return absl::ResourceExhaustedError(absl::StrFormat(
        "guest memory needs %u memslots, KVM allows %d (KVM_CAP_NR_MEMSLOTS)",
        memory_.slots().slots().size(), limits_.nr_memslots));
  }
  ASSIGN_OR_RETURN(KvmVm vm, system_->CreateVm());
  vm_.emplace(std::move(vm));
  if (memory_.ram_size().value <= kTssAddr) {
    // Best effort: SVM and VMX with unrestricted guest never use it, and some KVM
    // implementations (e.g. kvm-pvm) may not implement it; real-mode guests on hosts that
    // need it then fail at KVM_RUN with a reported error rather than here.
    (void)vm_->SetTssAddr(kTssAddr);
  }
  RETURN_IF_ERROR(memory_.RegisterWith(*vm_));
  ASSIGN_OR_RETURN(std::vector<kvm_cpuid_entry2> cpuid, system_->SupportedCpuid());
  for (uint32_t i = 0; i < config_.vcpus; ++i) RETURN_IF_ERROR(SetUpVcpu(i, cpuid));
  MutexLock lock(&mu_);
  reports_.resize(config_.vcpus);
  for (uint32_t i = 0; i < config_.vcpus; ++i) reports_[i].index = i;
  return absl::OkStatus();
}

absl::Status Machine::SetUpVcpu(uint32_t index, const std::vector<kvm_cpuid_entry2>& cpuid) {
  ASSIGN_OR_RETURN(KvmVcpu vcpu, vm_->CreateVcpu(static_cast<int>(index),
                                                 limits_.vcpu_mmap_size));
  // CPUID before SREGS: KVM refuses EFER.LME unless the guest CPUID has long mode.
  RETURN_IF_ERROR(vcpu.SetCpuid(cpuid));
  ASSIGN_OR_RETURN(kvm_sregs base, vcpu.GetSregs());
  RETURN_IF_ERROR(vcpu.SetSregs(InitialSregs(plan_, index, base)));
  // The start argument is the vCPU index until a scenario needs something else.
  RETURN_IF_ERROR(vcpu.SetRegs(InitialRegs(plan_, index, index)));
  vcpus_.push_back(std::make_unique<KvmVcpu>(std::move(vcpu)));
  return absl::OkStatus();
}

RunResult Machine::Run() {
  {
    MutexLock lock(&mu_);
    assert(!ran_ && "Machine::Run called twice");
    ran_ = true;
  }
  for (auto& vcpu : vcpus_) {
    runners_.push_back(std::make_unique<VcpuRunner>(
        vcpu.get(), static_cast<size_t>(limits_.vcpu_mmap_size), &exit_handler_,
        [this](uint32_t index, const VcpuStop& stop) { OnVcpuStop(index, stop); }));
  }
  std::optional<Watchdog> watchdog;
  if (config_.timeout != absl::InfiniteDuration()) {
    watchdog.emplace(config_.timeout, [this] { KickAll(); });
  }
  for (auto& r : runners_) r->Start();
  for (auto& r : runners_) r->Join();
  bool timed_out = false;
  if (watchdog) {
    watchdog->Cancel();
    timed_out = watchdog->expired();
  }
  console_.Flush();

  RunResult result;
  result.timeout = config_.timeout;
  result.exit = absl::Now() - created_;
  {
    MutexLock lock(&mu_);
    result.vcpus = reports_;
    result.first_ucall = first_ucall_;
  }
  DecideVerdict(result, timed_out);
  return result;
}

void Machine::KickAll() {
  for (auto& r : runners_) r->Kick();
}

void Machine::OnVcpuStop(uint32_t vcpu, const VcpuStop& stop_in) {
  VcpuStop stop = stop_in;
  if (stop.guest_exception && stop.registers) {
    // The faulting state is the frame the stub left on the ring-0 stack.
    absl::StatusOr<ExceptionFrame> frame = ReadExceptionFrame(memory_, stop.registers->rsp);
    if (frame.ok()) {
      stop.detail = frame->Describe();
      stop.registers->rip = frame->rip;
      stop.registers->rsp = frame->rsp;
      stop.registers->rflags = frame->rflags;
      stop.registers->cs_selector = static_cast<uint16_t>(frame->cs);
      stop.registers->cs_dpl = static_cast<uint8_t>(frame->cs & 3);
    } else {
      absl::StrAppend(&stop.detail, " (frame unreadable: ", frame.status().message(), ")");
    }
  }
  bool broken = stop.kind == StopKind::kCrashed || stop.kind == StopKind::kHostError;
  {
    MutexLock lock(&mu_);
    VcpuReport& report = reports_[vcpu];
    report.stop = stop;
    broken = broken || report.assertion.has_value() || !report.protocol_error.empty();
  }
  if (broken) KickAll();
}

void Machine::MarkUcall() {
  MutexLock lock(&mu_);
  if (!first_ucall_) first_ucall_ = absl::Now() - created_;
}

void Machine::OnPrint(uint32_t vcpu, absl::string_view text) {
  MarkUcall();
  console_.PrintLine(vcpu, text);
}

void Machine::OnSync(uint32_t vcpu, uint64_t stage, absl::Span<const uint64_t> values) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnSync(vcpu, stage, values);
}

void Machine::OnAssert(uint32_t vcpu, const GuestAssertion& assertion) {
  MarkUcall();
  MutexLock lock(&mu_);
  reports_[vcpu].assertion = assertion;
}

void Machine::OnDone(uint32_t vcpu, uint64_t exit_code) {
  MarkUcall();
  MutexLock lock(&mu_);
  reports_[vcpu].done_code = exit_code;
}

void Machine::OnBalloon(uint32_t vcpu, Gpa gpa, ByteSize len) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnBalloon(vcpu, gpa, len);
}

void Machine::OnReport(uint32_t vcpu, uint64_t kind, absl::Span<const uint64_t> values) {
  MarkUcall();
  if (config_.observer != nullptr) config_.observer->OnReport(vcpu, kind, values);
}

void Machine::OnProtocolError(uint32_t vcpu, absl::string_view what) {
  MutexLock lock(&mu_);
  reports_[vcpu].protocol_error = std::string(what);
}

}  // namespace mmuvisor::vmm
