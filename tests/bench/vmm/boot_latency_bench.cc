// Boot latency of hello64, process-internal: from the start of Machine::Create (open
// /dev/kvm, create the VM, memory, boot plan, vCPU state) to the guest's first ucall, and
// to the end of the run; next to a bare baseline measured in the same iterations: raw
// ioctls only (open /dev/kvm, one VM, one memslot, one vCPU in real mode, KVM_RUN to the
// first port-I/O exit).
//   x_baseline      = mean(create -> first ucall) / mean(bare baseline)   target <= 2
//   exit_us         = mean(create -> every vCPU stopped)
//   rss_excl_guest_MiB = this process's RSS minus the guest RAM mapping's, after a boot
//                        (target <= 8 MiB)
// BM_ProcessBoot: the whole process, fork+exec to exit, of `mmuvisor run hello64` (no
// flags: what a user gets) against bare_kvm_boot (tests/bench/peers: create VM, slot,
// vCPU, long mode, run to HLT, exit), spawned alternately in each iteration:
//   x_baseline      = mean(mmuvisor process) / mean(bare process)        target <= 2
//   x_same_exits    = mean(mmuvisor process) / mean(`bare_kvm_boot 3`): the bare guest
//                     first makes hello64's 3 port exits (its PRINT line, its serial line
//                     in one SERIAL ucall, DONE), so both guests do the same work;
//                     bare_same_exits_ms its time
// The binaries are the ones built with this bench; MMUVISOR_BIN / BARE_KVM_BOOT_BIN in the
// environment override them (the peers script passes its own).
// Without /dev/kvm the binary prints why and exits 0 (nothing to measure).
#include <fcntl.h>
#include <linux/kvm.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/time/clock.h"
#include "benchmark/benchmark.h"
#include "vmm/boot/guest_images.h"
#include "vmm/kvm/system.h"
#include "vmm/machine/machine.h"

namespace mmuvisor::vmm {
namespace {

// The bare baseline. Returns the time from open("/dev/kvm") to the first KVM_EXIT_IO, or
// a negative duration on any failure (reported by the caller).
absl::Duration BareBaseline(std::string* error) {
  const absl::Time start = absl::Now();
  const size_t ram = 64ull << 20;
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  int vm = kvm >= 0 ? ioctl(kvm, KVM_CREATE_VM, 0) : -1;
  void* mem = mmap(nullptr, ram, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  absl::Duration result = absl::Seconds(-1);
  int vcpu = -1;
  void* run_map = MAP_FAILED;
  int run_size = 0;
  do {
    if (vm < 0 || mem == MAP_FAILED) {
      *error = "baseline: open/KVM_CREATE_VM/mmap failed";
      break;
    }
    // Real-mode code at 0x1000: mov $0x3f8, %dx; mov $'x', %al; out %al, (%dx); hlt.
    const uint8_t code[] = {0xba, 0xf8, 0x03, 0xb0, 'x', 0xee, 0xf4};
    std::memcpy(static_cast<uint8_t*>(mem) + 0x1000, code, sizeof(code));
    kvm_userspace_memory_region region{0, 0, 0, ram, reinterpret_cast<uint64_t>(mem)};
    if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
      *error = "baseline: KVM_SET_USER_MEMORY_REGION failed";
      break;
    }
    vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
    run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
    if (vcpu < 0 || run_size <= 0) {
      *error = "baseline: KVM_CREATE_VCPU failed";
      break;
    }
    run_map = mmap(nullptr, run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
    kvm_sregs sregs;
    if (run_map == MAP_FAILED || ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) {
      *error = "baseline: kvm_run mmap/KVM_GET_SREGS failed";
      break;
    }
    sregs.cs.base = 0;
    sregs.cs.selector = 0;
    kvm_regs regs{};
    regs.rip = 0x1000;
    regs.rflags = 2;
    if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0 || ioctl(vcpu, KVM_SET_REGS, &regs) < 0) {
      *error = "baseline: KVM_SET_SREGS/KVM_SET_REGS failed";
      break;
    }
    auto* run = static_cast<kvm_run*>(run_map);
    int r;
    do {
      r = ioctl(vcpu, KVM_RUN, 0);
    } while (r < 0 && errno == EINTR);
    if (r < 0 || run->exit_reason != KVM_EXIT_IO) {
      *error = "baseline: KVM_RUN did not exit on port I/O";
      break;
    }
    result = absl::Now() - start;
  } while (false);
  if (run_map != MAP_FAILED) munmap(run_map, run_size);
  if (vcpu >= 0) close(vcpu);
  if (mem != MAP_FAILED) munmap(mem, ram);
  if (vm >= 0) close(vm);
  if (kvm >= 0) close(kvm);
  return result;
}

// RSS of this process minus the RSS of the mapping that starts at `guest_base`.
double RssExcludingGuestMiB(const void* guest_base) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  uint64_t total_kb = 0, guest_kb = 0;
  bool in_guest = false;
  const uint64_t base = reinterpret_cast<uint64_t>(guest_base);
  while (std::getline(smaps, line)) {
    uint64_t lo = 0, hi = 0;
    // Mapping headers read "lo-hi perms offset dev inode [path]"; field lines "Name: ...".
    if (std::sscanf(line.c_str(), "%" SCNx64 "-%" SCNx64 " ", &lo, &hi) == 2) {
      in_guest = lo == base;
      continue;
    }
    uint64_t kb = 0;
    if (std::sscanf(line.c_str(), "Rss: %" SCNu64 " kB", &kb) == 1) {
      total_kb += kb;
      if (in_guest) guest_kb += kb;
    }
  }
  return static_cast<double>(total_kb - guest_kb) / 1024.0;
}

void BM_BootHello64(benchmark::State& state) {
  absl::StatusOr<absl::Span<const uint8_t>> elf = BuiltinGuestImage("hello64");
  if (!elf.ok()) {
    state.SkipWithError(std::string(elf.status().message()).c_str());
    return;
  }
  MachineConfig config;  // defaults: 64 MiB memfd, 1 vCPU, CPL3, no console echo
  // What `mmuvisor run hello64` runs with: no --resident, so no dirty log and no page
  // server (run_command.cc).
  config.dirty_log = DirtyLogSource::kNone;
  config.page_server = false;
  double first_ucall_us = 0, exit_us = 0, teardown_us = 0, baseline_us = 0, rss_mib = 0;
  int64_t n = 0;
  for (auto _ : state) {
    std::string error;
    const absl::Duration baseline = BareBaseline(&error);
    if (baseline < absl::ZeroDuration()) {
      state.SkipWithError(error.c_str());
      return;
    }
    const absl::Time start = absl::Now();
    absl::StatusOr<std::unique_ptr<Machine>> machine = Machine::Create(config, *elf);
    if (!machine.ok()) {
      state.SkipWithError(std::string(machine.status().message()).c_str());
      return;
    }
    RunResult result = (*machine)->Run();
    state.SetIterationTime(absl::ToDoubleSeconds(absl::Now() - start));
    if (result.verdict != Verdict::kClean || !result.first_ucall) {
      state.SkipWithError(result.summary.c_str());
      return;
    }
    first_ucall_us += absl::ToDoubleMicroseconds(*result.first_ucall);
    exit_us += absl::ToDoubleMicroseconds(result.exit);
    baseline_us += absl::ToDoubleMicroseconds(baseline);
    rss_mib = std::max(rss_mib, RssExcludingGuestMiB((*machine)->host().PagePointer(0)));
    const absl::Time destroy = absl::Now();
    machine->reset();  // the Machine's teardown: threads joined, memslots deleted, RAM unmapped
    teardown_us += absl::ToDoubleMicroseconds(absl::Now() - destroy);
    ++n;
  }
  if (n == 0) return;
  state.counters["first_ucall_us"] = first_ucall_us / n;
  state.counters["exit_us"] = exit_us / n;
  state.counters["teardown_us"] = teardown_us / n;
  state.counters["baseline_us"] = baseline_us / n;
  state.counters["x_baseline"] = first_ucall_us / baseline_us;
  state.counters["rss_excl_guest_MiB"] = rss_mib;
}
BENCHMARK(BM_BootHello64)->UseManualTime()->Unit(benchmark::kMicrosecond)->MinTime(2.0);

// Spawns `argv` with stdout/stderr to /dev/null and waits. Returns the wall time from
// spawn to reaped exit, or a negative duration (with *error) unless it exited 0.
absl::Duration SpawnAndWait(const std::vector<std::string>& argv, std::string* error) {
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  const absl::Time start = absl::Now();
  pid_t pid = -1;
  const int e = posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (e != 0) {
    *error = argv[0] + ": posix_spawn: " + std::strerror(e);
    return absl::Seconds(-1);
  }
  int status = 0;
  while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  const absl::Duration elapsed = absl::Now() - start;
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    *error = argv[0] + " did not exit 0 (status " + std::to_string(status) + ")";
    return absl::Seconds(-1);
  }
  return elapsed;
}

std::string BinaryPath(const char* env, const char* built) {
  const char* v = std::getenv(env);
  return v != nullptr && *v != '\0' ? v : built;
}

void BM_ProcessBoot(benchmark::State& state) {
  const std::vector<std::string> ours = {BinaryPath("MMUVISOR_BIN", MMUVISOR_BIN), "run",
                                         "hello64"};
  const std::vector<std::string> bare = {BinaryPath("BARE_KVM_BOOT_BIN", BARE_KVM_BOOT_BIN)};
  // hello64's port exits: its PRINT ucall, "hello64: serial says hi\n" (one SERIAL ucall
  // for its 24 bytes; one OUT per byte until 2026-12-05, 26 exits in all) and DONE.
  constexpr int kHello64PortExits = 3;
  std::vector<std::string> bare_same = bare;
  bare_same.push_back(std::to_string(kHello64PortExits));
  double ours_ms = 0, bare_ms = 0, bare_same_ms = 0;
  int64_t n = 0;
  for (auto _ : state) {
    std::string error;
    const absl::Duration b = SpawnAndWait(bare, &error);
    const absl::Duration o = b < absl::ZeroDuration() ? b : SpawnAndWait(ours, &error);
    const absl::Duration s = o < absl::ZeroDuration() ? o : SpawnAndWait(bare_same, &error);
    if (s < absl::ZeroDuration()) {
      state.SkipWithError(error.c_str());
      return;
    }
    state.SetIterationTime(absl::ToDoubleSeconds(o));
    ours_ms += absl::ToDoubleMilliseconds(o);
    bare_ms += absl::ToDoubleMilliseconds(b);
    bare_same_ms += absl::ToDoubleMilliseconds(s);
    ++n;
  }
  if (n == 0) return;
  state.counters["process_ms"] = ours_ms / n;
  state.counters["bare_ms"] = bare_ms / n;
  state.counters["bare_same_exits_ms"] = bare_same_ms / n;
  state.counters["x_baseline"] = ours_ms / bare_ms;
  state.counters["x_same_exits"] = ours_ms / bare_same_ms;
}
BENCHMARK(BM_ProcessBoot)->UseManualTime()->Unit(benchmark::kMillisecond)->MinTime(2.0);

}  // namespace
}  // namespace mmuvisor::vmm

int main(int argc, char** argv) {
  absl::StatusOr<mmuvisor::vmm::KvmSystem> kvm = mmuvisor::vmm::KvmSystem::Open();
  if (!kvm.ok()) {
    std::printf("%s: skipped, needs /dev/kvm: %s\n", argv[0],
                std::string(kvm.status().message()).c_str());
    return 0;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
