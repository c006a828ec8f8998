// Machine: creation (host address space, boot plan, KVM, devices) and destruction.
// Running, the reclaim driver and the vCPU callbacks are in machine_run.cc, guest faults in
// machine_faults.cc (verdicts: guest_fault_verdict.h).
#include "vmm/machine/machine.h"

#include <cassert>
#include <vector>

#include "absl/strings/cord.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "spdlog/spdlog.h"
#include "vmm/kvm/flavour.h"
#include "vmm/machine/exception_stubs.h"
#include "vmm/machine/real_mode_helpers.h"
#include "notifier/base/status_macros.h"

namespace mmuvisor::vmm {
namespace {

constexpr absl::string_view kErrorClassUrl = "mmuvisor/error-class";

absl::Status InputError(absl::Status status) {
  status.SetPayload(kErrorClassUrl, absl::Cord("input"));
  return status;
}

// MachineConfig::ram_slots and ram_aliases: `n` slots over `pages` pages of RAM, contiguous
// and identity mapped (slot i at gpa = its first page; the remainder spread one page each
// over the first slots), then `aliases` slots over all of RAM at k * AliasStride.
absl::StatusOr<std::vector<RamSlot>> RamSlots(uint64_t pages, uint32_t n, uint32_t aliases) {
  if (n == 0 || n > pages) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "guest RAM in %u memslots: want 1 to one slot per page (%u pages)", n, pages)));
  }
  std::vector<RamSlot> slots;
  uint64_t first = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const uint64_t count = pages / n + (i < pages % n ? 1 : 0);
    slots.push_back(RamSlot{i, Gpa{first * kPageSize}, first, count, 0});
    first += count;
  }
  const uint64_t stride = AliasStride(ByteSize{pages * kPageSize});
  for (uint32_t k = 1; k <= aliases; ++k) {
    slots.push_back(RamSlot{n + k - 1, Gpa{k * stride}, 0, pages, 0});
  }
  return slots;
}

// The page tables' windows beyond RAM: the aliases, then the owner's slot windows.
std::vector<IdentityWindow> IdentityWindows(const MachineConfig& config) {
  constexpr uint64_t k2MiB = 2ull << 20;
  std::vector<IdentityWindow> windows;
  const uint64_t stride = AliasStride(config.ram_size);
  const uint64_t span = (config.ram_size.value + k2MiB - 1) / k2MiB * k2MiB;
  for (uint32_t k = 1; k <= config.ram_aliases; ++k) windows.push_back({k * stride, span});
  windows.insert(windows.end(), config.slot_windows.begin(), config.slot_windows.end());
  return windows;
}

}  // namespace

uint64_t AliasStride(ByteSize ram_size) {
  constexpr uint64_t kGiB = 1ull << 30;
  return (ram_size.value + kGiB - 1) / kGiB * kGiB;
}

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
  if (config.ram_size.value == 0 || !IsPageAligned(config.ram_size.value)) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "guest RAM size %#x is not a positive multiple of the %u-byte page",
        config.ram_size.value, kPageSize)));
  }
  if (!config.page_server && config.reclaim.has_value()) {
    return InputError(absl::InvalidArgumentError(
        "a reclaim driver needs the page server (MachineConfig::page_server is off)"));
  }
  std::unique_ptr<Machine> machine(new Machine(config, created));
  MMUVISOR_RETURN_IF_ERROR(machine->Init(elf));
  return machine;
}

Machine::Machine(const MachineConfig& config, absl::Time created)
    : config_(config), created_(created), console_(config.console_echo) {}

absl::Status Machine::Init(absl::Span<const uint8_t> elf) {
  // 0. KVM first: the supported CPUID on a thread of its own, overlapping with the VM's
  // creation here and with steps 1 and 2 (on kvm_pvm ~0.4 ms; vmm/README.md, "Process
  // start"). The VM's errors wait until steps 1 and 2 have checked the user's input, so
  // that a bad image is reported as such on a host without /dev/kvm too.
  cpuid_prefetch_ = config_.cpuid_prefetch != nullptr &&
                            config_.cpuid_prefetch->path() == config_.kvm_path &&
                            config_.cpuid_prefetch->Claim()
                        ? config_.cpuid_prefetch
                        : SupportedCpuidPrefetch::Begin(config_.kvm_path);
  const absl::Status kvm_created = CreateVm();

  // 1. The host address space. Its callbacks reach this object, which outlives it.
  HostAddressSpaceOptions options = config_.host;
  options.ram_bytes = config_.ram_size.value;
  options.backing = config_.backing;
  MMUVISOR_ASSIGN_OR_RETURN(options.slots, RamSlots(config_.ram_size.value / kPageSize,
                                                     config_.ram_slots, config_.ram_aliases));
  options.memslot_control = nullptr;  // attached in SetUpKvm, once the VM exists
  options.dirty_log = nullptr;
  options.dirty_probe = nullptr;
  options.attach_hypervisor_later = true;
  options.start_page_server_later = true;  // the boot pages are written first (step 2)
  PageServerFailureCallback user_failure = std::move(options.on_page_server_failure);
  options.on_page_server_failure = [this, user_failure](const absl::Status& status) {
    OnPageServerFailure(status);
    if (user_failure) user_failure(status);
  };
  options.stop_guests = [this] {
    StopReclaimDriver();  // before the space's Teardown goes on (reclaim_driver.h)
    KickAll();
    JoinAll();
  };
  absl::StatusOr<std::unique_ptr<HostAddressSpace>> space =
      HostAddressSpace::Create(std::move(options));
  if (!space.ok()) {
    // A bad size is the user's; failing to map a valid one is the host's.
    return absl::IsInvalidArgument(space.status()) ? InputError(space.status())
                                                   : space.status();
  }
  space_ = *std::move(space);

  // 2. The boot plan, written through the space's mapping before the page server registers
  // it with userfaultfd: nothing runs yet, no window is open, and the store holds nothing,
  // so no write can be lost, and each boot page (page tables, GDT, image, stacks, stubs) is
  // a plain page-cache fill instead of one page-server round trip.
  const GuestRamView ram{space_->PagePointer(0), space_->num_pages() * kPageSize};
  BootOptions boot;
  boot.nr_vcpus = config_.vcpus;
  boot.privilege = config_.privilege;
  boot.seed = config_.seed;
  boot.flags = config_.boot_flags;
  boot.args = config_.boot_args;
  boot.nr_args = config_.nr_boot_args;
  boot.identity_windows = IdentityWindows(config_);
  boot.ram_is_zero = true;  // the space's RAM was just created
  // TR's cached type: busy everywhere (VMX requires it) except on SVM, where QEMU's TCG
  // checks the I/O bitmap only for an available TSS (x86_state.h, TrType).
  boot.tr_type = DetectKvmHost().flavour == KvmFlavour::kSvm ? TrType::kAvailable
                                                              : TrType::kBusy;
  absl::StatusOr<BootPlan> plan = PrepareGuest(ram, elf, boot);
  if (!plan.ok()) return InputError(plan.status());
  plan_ = *std::move(plan);
  if (plan_.image.mode == BootMode::kLong64) {
    // Exceptions exit to us with their frame instead of triple-faulting (exception_stubs.h).
    if (absl::Status st = InstallExceptionStubs(*space_); !st.ok()) return InputError(st);
  }
  ucall_.emplace(space_.get(), static_cast<UcallHandler*>(this));
  // Each vCPU's first stack page and ucall block are touched at once by every guest: make
  // them resident now too (a read and a write of the same byte: contents unchanged).
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    for (uint64_t gpa : {plan_.layout.StackTop(i) - kPageSize, plan_.layout.UcallGpa(i)}) {
      if (gpa >= space_->num_pages() * kPageSize) continue;
      volatile uint8_t* byte = space_->PagePointer(gpa / kPageSize);
      *byte = *byte;
    }
  }
  if (config_.page_server) MMUVISOR_RETURN_IF_ERROR(space_->StartPageServer());

  // 3 and 4. The vCPUs come after the boot plan: whether KVM emulates their LAPIC depends
  // on the image's boot mode.
  MMUVISOR_RETURN_IF_ERROR(kvm_created);
  MMUVISOR_RETURN_IF_ERROR(CreateVcpus());
  MMUVISOR_RETURN_IF_ERROR(SetUpKvm());
  MMUVISOR_RETURN_IF_ERROR(bus_.Register(MMV_PORT_SERIAL, SerialConsole::kPortCount, &serial_, "serial"));
  MMUVISOR_RETURN_IF_ERROR(bus_.Register(MMV_PORT_UCALL, 4, &*ucall_, "ucall"));
  for (auto& vcpu : vcpus_) {
    runners_.push_back(std::make_unique<VcpuRunner>(
        vcpu.get(), static_cast<size_t>(limits_.vcpu_mmap_size), &exit_handler_,
        [this](uint32_t index, const VcpuStop& stop) { OnVcpuStop(index, stop); },
        static_cast<GuestFaultHandler*>(this)));
    runners_.back()->SetDirtyRingFullHandler(kvm_dirty_ring_.get());
  }
  return absl::OkStatus();
}

Machine::~Machine() {
  // Runners stopped -> vCPUs -> VM, while RAM is still mapped and served (KVM frees the
  // memslots with the VM: the space deletes none, DetachHypervisor) -> space torn down
  // (Release to every subscription, page server shut down, RAM unmapped) -> the space.
  // Its thread may still be setting a vCPU's CPUID (Init failed); the config may hold it.
  if (cpuid_prefetch_ != nullptr) cpuid_prefetch_->Stop();
  if (space_ != nullptr) StopReclaimDriver();
  KickAll();
  JoinAll();
  if (space_ != nullptr) space_->DetachHypervisor();
  {
    MutexLock lock(&kicks_mu_);  // a KickAll running now finishes first; later ones return
    runners_gone_ = true;
  }
  runners_.clear();
  vcpus_.clear();
  kvm_dirty_log_.reset();
  kvm_dirty_ring_.reset();
  kvm_slots_.reset();
  vm_.reset();
  if (space_ != nullptr) space_->Teardown();
  {
    MutexLock lock(&mu_);
    reclaimd_.reset();  // stopped above; it references the space
  }
  space_.reset();
}

absl::Status Machine::CreateVm() {
  MMUVISOR_ASSIGN_OR_RETURN(KvmSystem system, KvmSystem::Open(config_.kvm_path));
  system_.emplace(std::move(system));
  MMUVISOR_ASSIGN_OR_RETURN(limits_, system_->ProbeLimits());
  if (config_.vcpus > static_cast<uint32_t>(limits_.max_vcpus)) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "%u vCPUs requested: KVM on this host allows at most %d (KVM_CAP_MAX_VCPUS)",
        config_.vcpus, limits_.max_vcpus)));
  }
  // RamSlots' count, and the spare slot the slot windows are for; an invalid ram_slots is
  // reported by step 1 first.
  const uint64_t spare = config_.slot_windows.empty() ? 0 : 1;
  const uint64_t slots = uint64_t{config_.ram_slots} + config_.ram_aliases + spare;
  if (static_cast<uint64_t>(limits_.nr_memslots) < slots) {
    return InputError(absl::InvalidArgumentError(absl::StrFormat(
        "guest memory in %u memslots%s: KVM on this host allows %d (KVM_CAP_NR_MEMSLOTS)",
        slots, spare != 0 ? " (one for the slot windows)" : "", limits_.nr_memslots)));
  }
  MMUVISOR_ASSIGN_OR_RETURN(KvmVm vm, system_->CreateVm());
  vm_.emplace(std::move(vm));
  // Best effort: SVM and VMX with unrestricted guest never use them, and some KVM
  // implementations (e.g. kvm-pvm) may not implement them; real-mode guests on hosts that
  // need them then fail at KVM_RUN with a reported error rather than here.
  if (const std::optional<uint64_t> helpers =
          RealModeHelperGpa(config_.ram_size.value, IdentityWindows(config_))) {
    if (*helpers != kDefaultIdentityMapGpa) (void)vm_->SetIdentityMapAddr(*helpers);
    (void)vm_->SetTssAddr(*helpers + 4096);
  } else {
    spdlog::debug("no free 16 KiB below 4 GiB for KVM's real-mode TSS and identity map");
  }
  // The ring must be enabled before the first vCPU is created (KVM: EINVAL after).
  return ChooseDirtyLogSource();
}

absl::Status Machine::CreateVcpus() {
  // The LAPIC in KVM where the guest cannot tell (local_apic.h); KVM takes it only before
  // the first vCPU. A KVM without the split irqchip leaves it where it was: nowhere.
  lapic_in_kernel_ =
      WantInKernelLapic(config_.local_apic, plan_.image.mode, config_.privilege,
                        config_.ram_size.value, IdentityWindows(config_));
  if (lapic_in_kernel_) {
    if (absl::Status st = vm_->EnableCap(KVM_CAP_SPLIT_IRQCHIP, 0); !st.ok()) {
      spdlog::debug("local APIC: not in KVM ({})", std::string(st.message()));
      lapic_in_kernel_ = false;
    }
  }
  std::vector<KvmVcpu*> created;
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    MMUVISOR_ASSIGN_OR_RETURN(KvmVcpu vcpu, vm_->CreateVcpu(static_cast<int>(i),
                                                   limits_.vcpu_mmap_size));
    // With the LAPIC in KVM, every vCPU but 0 waits for a SIPI that nobody sends.
    if (lapic_in_kernel_ && i > 0) {
      MMUVISOR_RETURN_IF_ERROR(vcpu.SetMpState(KVM_MP_STATE_RUNNABLE));
    }
    vcpus_.push_back(std::make_unique<KvmVcpu>(std::move(vcpu)));
    created.push_back(vcpus_.back().get());
  }
  // Their CPUID is set on the prefetch thread once KVM has answered (SetUpKvm waits).
  cpuid_prefetch_->SetOn(std::move(created), &*system_);
  return absl::OkStatus();
}

absl::Status Machine::SetUpKvm() {
  // Every vCPU's CPUID (set on cpuid_prefetch_'s thread, or by Finish), then the register
  // state KVM gave it, read before the dirty-log probe changes vCPU 0's.
  std::vector<kvm_sregs> base;
  auto cpuid_then_sregs = [this, &base]() -> absl::Status {
    MMUVISOR_RETURN_IF_ERROR(cpuid_prefetch_->Finish());
    cpuid_prefetch_->Stop();
    cpuid_prefetch_.reset();
    for (const auto& vcpu : vcpus_) {
      MMUVISOR_ASSIGN_OR_RETURN(kvm_sregs sregs, vcpu->GetSregs());
      base.push_back(sregs);
    }
    return absl::OkStatus();
  };
  // With a dirty log, AttachHypervisor's probe runs vCPU 0, after which KVM refuses a new
  // CPUID: wait first. Without one, the memslots are registered while the prefetch thread
  // sets the CPUIDs (~0.1 ms each on kvm_pvm).
  if (dirty_log_ != DirtyLogSource::kNone) MMUVISOR_RETURN_IF_ERROR(cpuid_then_sregs());
  kvm_slots_.emplace(*vm_);
  DirtyLog* log = nullptr;
  if (dirty_log_ == DirtyLogSource::kNone) {
    // No log, no slot flag, no self-check probe: reclaim (if any) writes everything back.
  } else if (kvm_dirty_ring_ != nullptr) {
    for (const auto& vcpu : vcpus_) MMUVISOR_RETURN_IF_ERROR(kvm_dirty_ring_->AddVcpu(*vcpu));
    log = kvm_dirty_ring_.get();
  } else {
    kvm_dirty_log_.emplace(*vm_);
    log = &*kvm_dirty_log_;
  }
  KvmVcpu* probe_vcpu = vcpus_[0].get();
  GuestWriteProbe probe;
  if (log != nullptr) {
    probe = [probe_vcpu](const GuestMemorySlot& slot) {
      return RunRealModeWriteProbe(*probe_vcpu, slot);
    };
  }
  MMUVISOR_RETURN_IF_ERROR(space_->AttachHypervisor(&*kvm_slots_, log, std::move(probe)));
  if (dirty_log_ == DirtyLogSource::kNone) MMUVISOR_RETURN_IF_ERROR(cpuid_then_sregs());
  for (uint32_t i = 0; i < config_.vcpus; ++i) {
    // CPUID was set before SREGS: KVM refuses EFER.LME unless the guest CPUID has it.
    MMUVISOR_RETURN_IF_ERROR(vcpus_[i]->SetSregs(InitialSregs(plan_, i, base[i])));
    // RSI = the number of run arguments (guest_abi.h), as in mmv_boot_info.nr_args.
    MMUVISOR_RETURN_IF_ERROR(vcpus_[i]->SetRegs(InitialRegs(plan_, i, config_.nr_boot_args)));
  }
  MutexLock lock(&mu_);
  reports_.resize(config_.vcpus);
  for (uint32_t i = 0; i < config_.vcpus; ++i) reports_[i].index = i;
  return absl::OkStatus();
}

absl::Status Machine::ChooseDirtyLogSource() {
  const uint32_t entries = config_.dirty_ring_entries;
  dirty_log_ = config_.dirty_log;
  switch (config_.dirty_log) {
    case DirtyLogSource::kBitmap:
    case DirtyLogSource::kNone:
      return absl::OkStatus();
    case DirtyLogSource::kRing: {
      absl::StatusOr<std::unique_ptr<KvmDirtyRingLog>> ring = KvmDirtyRingLog::Enable(*vm_, entries);
      if (!ring.ok()) {
        return absl::Status(ring.status().code(),
                            absl::StrCat("dirty tracking 'ring' requested but unavailable: ",
                                         ring.status().message()));
      }
      kvm_dirty_ring_ = *std::move(ring);
      return absl::OkStatus();
    }
    case DirtyLogSource::kAuto:
      break;
  }
  // auto, first: no log where KVM maps neighbouring pages on a fault. It never maps a
  // writable one into a dirty-logged slot, so there every page a vCPU writes or the page
  // server brings in costs the guest a fault of its own (vmm/paging/README.md: 3.3-3.8x
  // fewer demand-paged pages per second with the log on kvm_pvm), against a store write
  // per clean resident page at reclaim (vmm/host/README.md).
  if (const KvmHostInfo host = DetectKvmHost(); KvmPrefetchesNeighbours(host)) {
    dirty_log_ = DirtyLogSource::kNone;
    spdlog::info(
        "dirty tracking auto: no dirty log ({}: KVM maps neighbouring pages on a fault, "
        "never writable ones into a dirty-logged slot); reclaim writes back every resident "
        "page",
        KvmFlavourName(host.flavour));
    return absl::OkStatus();
  }
  // Then the ring only if KVM offers it and it logs a guest write on a scratch VM (the
  // real VM cannot fall back to the bitmap once its ring is enabled).
  MMUVISOR_ASSIGN_OR_RETURN(DirtyRingSupport support, ProbeDirtyRing(*vm_));
  std::string why_not;
  if (!support.offered()) {
    why_not = support.Describe();
  } else if (absl::StatusOr<DirtyTrackingChoice> check = SelfCheckDirtyRing(*system_, entries);
             !check.ok()) {
    why_not = absl::StrCat("its self-check failed to run: ", check.status().ToString());
  } else if (check->mode != DirtyTrackingMode::kDirtyLog) {
    why_not = absl::StrCat("its self-check failed: ", check->reason);
  } else {
    MMUVISOR_ASSIGN_OR_RETURN(kvm_dirty_ring_, KvmDirtyRingLog::Enable(*vm_, entries));
    dirty_log_ = DirtyLogSource::kRing;
    return absl::OkStatus();
  }
  spdlog::info("dirty tracking auto: not the dirty ring ({}); using the bitmap", why_not);
  dirty_log_ = DirtyLogSource::kBitmap;
  return absl::OkStatus();
}

absl::Status Machine::AttachPortDevice(uint16_t base, uint32_t count, PortIoDevice* device) {
  {
    MutexLock lock(&mu_);
    if (ran_) {
      return absl::FailedPreconditionError(absl::StrFormat(
          "AttachPortDevice(%#x, %u): the machine is already running", base, count));
    }
  }
  return bus_.Register(base, count, device, absl::StrFormat("device@%#x", base));
}

void Machine::KickAll() {
  MutexLock lock(&kicks_mu_);
  if (runners_gone_) return;  // the destructor is past its own kick and join
  for (auto& r : runners_) r->Kick();
}

void Machine::JoinAll() {
  MutexLock lock(&join_mu_);
  for (auto& r : runners_) r->Join();
}

}  // namespace mmuvisor::vmm
