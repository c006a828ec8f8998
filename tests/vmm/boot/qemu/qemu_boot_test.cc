// Boots every built-in guest under QEMU/TCG with the state vmm/boot computes: where
// /dev/kvm is absent this is the only execution of the guests, the page tables, the GDT
// and the register values. qemu_tramp.S (the -bios) applies InitialRegs/InitialSregs from a
// handoff block; the guest's serial output goes to a file, and its ucall block is read
// through the QEMU monitor. Skips (visibly) when qemu-system-x86_64 is not installed.
#include <signal.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/guest_images.h"

namespace mmuvisor::vmm {
namespace {

namespace fs = std::filesystem;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;

constexpr uint64_t kRamSize = 8ull << 20;
// Handoff blocks (qemu_tramp.S): 0x80 bytes per vCPU in the last two ucall blocks, which
// are mapped and unused with up to 30 vCPUs.
constexpr uint64_t kHandoff = 0x7c00;
// Written to each vCPU's ucall args[0] before the guest runs: RAM starts zeroed, so an exit
// code of 0 is only seen if the guest's DONE stored it.
constexpr uint64_t kArgSentinel = 0xdeadbeefdeadbeefull;

std::string FindQemu() {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path ? path : "");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    const std::string candidate = dir + "/qemu-system-x86_64";
    if (access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return "";
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const fs::path& path, const uint8_t* data, size_t len) {
  std::ofstream(path, std::ios::binary).write(reinterpret_cast<const char*>(data), len);
}

// Layout read by qemu_tramp.S; keep the two in step.
void WriteHandoff(std::vector<uint8_t>& ram, const BootPlan& plan, uint32_t vcpu,
                  const kvm_regs& r, const kvm_sregs& s) {
  auto Put = [&ram, vcpu]<typename T>(uint64_t off, T v) {
    std::memcpy(ram.data() + kHandoff + vcpu * 0x80 + off, &v, sizeof(v));
  };
  Put(0x00, uint32_t{plan.image.mode == BootMode::kReal16 ? 1u : 0u});
  Put(0x04, uint32_t{plan.layout.nr_vcpus});
  Put(0x08, uint64_t{r.rip});
  Put(0x10, uint64_t{r.rsp});
  Put(0x18, uint64_t{r.rdi});
  Put(0x20, uint64_t{r.rsi});
  Put(0x28, uint64_t{r.rflags});
  Put(0x30, uint64_t{s.cr0});
  Put(0x38, uint64_t{s.cr3});
  Put(0x40, uint64_t{s.cr4});
  Put(0x48, uint64_t{s.efer});
  Put(0x50, uint16_t{s.cs.selector});
  Put(0x52, uint16_t{s.ss.selector});
  Put(0x54, uint16_t{s.ds.selector});
  Put(0x56, uint16_t{s.tr.selector});
  Put(0x58, uint16_t{s.gdt.limit});
  Put(0x5a, uint32_t{static_cast<uint32_t>(s.gdt.base)});
  Put(0x60, uint16_t{s.idt.limit});
  Put(0x62, uint32_t{static_cast<uint32_t>(s.idt.base)});
}

struct QemuRun {
  bool timed_out = false;     // neither DONE on every vCPU nor an exit within kTestWaitLimit
  bool exited = false;        // QEMU stopped by itself (triple fault with -no-reboot)
  std::vector<mmv_ucall> ucalls;  // each vCPU's block when all were seen DONE (or last read)
  std::string serial;
  std::string log;            // -d int output
};

// One monitor command over the HMP unix socket; returns once the reply prompt arrives.
bool Monitor(const fs::path& sock, const std::string& command) {
  const int fd = socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::snprintf(addr.sun_path, sizeof(addr.sun_path), "%s", sock.c_str());
  bool ok = connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
  std::string seen;
  auto read_prompt = [&] {
    char buf[512];
    while (ok && seen.find("(qemu)") == std::string::npos) {
      // A wedged QEMU must fail the call, not block it: each reply gets 10 s.
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, 10000) != 1) {
        ok = false;
        break;
      }
      const ssize_t n = read(fd, buf, sizeof(buf));
      if (n <= 0) ok = false;
      else seen.append(buf, n);
    }
    seen.clear();
  };
  read_prompt();  // banner
  const std::string line = command + "\n";
  // MSG_NOSIGNAL: QEMU may have exited (crash guest); that must not SIGPIPE the test.
  ok = ok && send(fd, line.data(), line.size(), MSG_NOSIGNAL) ==
                 static_cast<ssize_t>(line.size());
  read_prompt();  // echo + reply + next prompt
  close(fd);
  return ok;
}

class QemuBootTest : public ::testing::Test {
 protected:
  void SetUp() override {
    qemu_ = FindQemu();
    if (qemu_.empty()) GTEST_SKIP() << "qemu-system-x86_64 not installed: guests not executed";
    const char* test = ::testing::UnitTest::GetInstance()->current_test_info()->name();
    dir_ = fs::temp_directory_path() /
           ("mmuvisor-qemu-" + std::to_string(getpid()) + "-" + test);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Prepares `guest`, boots it, and waits for DONE on every vCPU or for QEMU to exit, at
  // most kTestWaitLimit (then run.timed_out). A failure to set up is a test failure, with
  // run.ucalls zeroed (so the caller's checks of them fail rather than index nothing).
  QemuRun Boot(const char* guest, GuestPrivilege privilege, BootPlan* plan_out,
               uint32_t nr_vcpus = 1) {
    QemuRun run;
    run.ucalls.resize(nr_vcpus);
    auto image = BuiltinGuestImage(guest);
    if (!image.ok()) {
      ADD_FAILURE() << image.status();
      return run;
    }
    std::vector<uint8_t> ram(kRamSize, 0);
    BootOptions options;
    options.privilege = privilege;
    options.nr_vcpus = nr_vcpus;
    auto plan = PrepareGuest(GuestRamView{ram.data(), kRamSize}, *image, options);
    if (!plan.ok()) {
      ADD_FAILURE() << plan.status();
      return run;
    }
    *plan_out = *plan;
    for (uint32_t i = 0; i < nr_vcpus; ++i) {
      WriteHandoff(ram, *plan, i, InitialRegs(*plan, i, i), InitialSregs(*plan, i, kvm_sregs{}));
      std::memcpy(ram.data() + plan->layout.UcallGpa(i) + offsetof(mmv_ucall, args),
                  &kArgSentinel, sizeof(kArgSentinel));
    }
    WriteFile(dir_ / "low.bin", ram.data(), 0xa0000);  // QEMU's PC has ROM at 640K..1M
    WriteFile(dir_ / "high.bin", ram.data() + 0x100000, kRamSize - 0x100000);

    const fs::path sock = dir_ / "mon.sock";
    const std::vector<std::string> args = {
        qemu_, "-M", "pc", "-nodefaults", "-nographic", "-m", "8M",
        "-smp", std::to_string(nr_vcpus),
        "-bios", MMUVISOR_QEMU_TRAMP,
        "-device", "loader,file=" + (dir_ / "low.bin").string() + ",addr=0,force-raw=on",
        "-device", "loader,file=" + (dir_ / "high.bin").string() + ",addr=0x100000,force-raw=on",
        "-serial", "file:" + (dir_ / "serial.log").string(),
        "-monitor", "unix:" + sock.string() + ",server,nowait",
        "-no-reboot", "-d", "int", "-D", (dir_ / "qemu.log").string()};
    const pid_t pid = fork();
    if (pid < 0) {
      // Not to be waited for or killed: -1 means every child, or every process we may signal.
      const int err = errno;
      ADD_FAILURE() << "fork for " << qemu_ << ": " << std::strerror(err);
      return run;
    }
    if (pid == 0) {
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    int status = 0;
    const fs::path dump = dir_ / "ucall.bin";
    run.timed_out = !WaitUntil(
        [&] {
          if (waitpid(pid, &status, WNOHANG) == pid) {
            run.exited = true;
            return true;
          }
          if (!fs::exists(sock) ||
              !Monitor(sock, "pmemsave " + std::to_string(MMV_UCALL_GPA) + " " +
                                 std::to_string(MMV_UCALL_STRIDE * nr_vcpus) + " \"" +
                                 dump.string() + "\"")) {
            return false;
          }
          const std::string bytes = ReadFile(dump);
          if (bytes.size() != MMV_UCALL_STRIDE * nr_vcpus) return false;
          uint32_t done = 0;
          for (uint32_t i = 0; i < nr_vcpus; ++i) {
            std::memcpy(&run.ucalls[i], bytes.data() + i * MMV_UCALL_STRIDE, sizeof(mmv_ucall));
            done += run.ucalls[i].magic == MMV_UCALL_MAGIC && run.ucalls[i].cmd == MMV_UCALL_DONE;
          }
          return done == nr_vcpus;
        },
        kTestWaitLimit, absl::Milliseconds(50));
    if (!run.exited && pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, &status, 0);
    }
    run.serial = ReadFile(dir_ / "serial.log");
    run.log = ReadFile(dir_ / "qemu.log");
    return run;
  }

  std::string qemu_;
  fs::path dir_;
};

// hello64's ucall block after its three calls, which no VMM answered here: PRINT wrote
// "hello64: Hello from vCPU 0 at CPLc!", SERIAL its 24 bytes "hello64: serial says hi\n"
// over the start of that text (counted, no NUL), DONE a NUL at byte 0. Nothing reached
// QEMU's UART: the runtime's serial writes go through the SERIAL ucall.
void ExpectHello64Block(const QemuRun& run, const std::string& cpl) {
  const char* text = run.ucalls[0].text;
  EXPECT_EQ(text[0], '\0');
  EXPECT_EQ(std::string(text + 1, 23), "ello64: serial says hi\n");
  EXPECT_STREQ(text + 24, (" 0 at " + cpl + "!").c_str());
  EXPECT_EQ(run.serial, "");
}

TEST_F(QemuBootTest, Hello64AtCpl3) {
  BootPlan plan;
  const QemuRun run = Boot("hello64", GuestPrivilege::kUser, &plan);
  ASSERT_FALSE(run.timed_out) << run.log;
  EXPECT_EQ(run.ucalls[0].cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.ucalls[0].args[0], 0u);
  ExpectHello64Block(run, "CPL3");
  EXPECT_EQ(run.log.find("v="), std::string::npos) << run.log;  // no exception at all
}

TEST_F(QemuBootTest, Hello64AtCpl0) {
  BootPlan plan;
  const QemuRun run = Boot("hello64", GuestPrivilege::kKernel, &plan);
  ASSERT_FALSE(run.timed_out) << run.log;
  EXPECT_EQ(run.ucalls[0].cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.ucalls[0].args[0], 0u);
  ExpectHello64Block(run, "CPL0");
}

TEST_F(QemuBootTest, Hello16InRealMode) {
  BootPlan plan;
  const QemuRun run = Boot("hello16", GuestPrivilege::kUser, &plan);
  ASSERT_FALSE(run.timed_out) << run.log;
  EXPECT_EQ(run.serial, "hello16: Hello from real mode!\n");
  EXPECT_EQ(run.ucalls[0].cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.ucalls[0].args[0], 0u);
}

TEST_F(QemuBootTest, SmpOnOneVcpu) {
  BootPlan plan;
  const QemuRun run = Boot("smp", GuestPrivilege::kUser, &plan);
  ASSERT_FALSE(run.timed_out) << run.log;
  EXPECT_EQ(run.ucalls[0].cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.ucalls[0].args[0], 0u);
  EXPECT_STREQ(run.ucalls[0].text + 1, "mp: vCPU 0 of 1: sum(1..1000) = 500500");
}

TEST_F(QemuBootTest, SmpOnTwoVcpus) {
  BootPlan plan;
  const QemuRun run = Boot("smp", GuestPrivilege::kUser, &plan, 2);
  ASSERT_FALSE(run.timed_out) << run.log;
  for (uint32_t i = 0; i < 2; ++i) {
    EXPECT_EQ(run.ucalls[i].cmd, MMV_UCALL_DONE) << "vCPU " << i;
    EXPECT_EQ(run.ucalls[i].args[0], 0u) << "vCPU " << i;
  }
  EXPECT_STREQ(run.ucalls[0].text + 1, "mp: vCPU 0 of 2: sum(1..1000) = 500500");
  EXPECT_STREQ(run.ucalls[1].text + 1, "mp: vCPU 1 of 2: sum(1..2000) = 2001000");
}

TEST_F(QemuBootTest, CrashFaultsInsideTheImage) {
  BootPlan plan;
  const QemuRun run = Boot("crash", GuestPrivilege::kUser, &plan);
  ASSERT_FALSE(run.timed_out) << run.log;
  EXPECT_TRUE(run.exited) << "a triple fault ends QEMU with -no-reboot";
  // -d int: " 0: v=0e e=0006 i=0 cpl=3 IP=002b:0000000000100ba0 ... CR2=0000000000000000"
  const size_t at = run.log.find("v=0e e=0006 i=0 cpl=3 IP=002b:");
  ASSERT_NE(at, std::string::npos) << run.log;
  const uint64_t rip = std::strtoull(run.log.c_str() + at + 30, nullptr, 16);
  EXPECT_GE(rip, plan.image.lowest_gpa);
  EXPECT_LT(rip, plan.image.highest_gpa);
  const size_t eol = run.log.find('\n', at);
  EXPECT_NE(run.log.substr(at, eol - at).find("CR2=0000000000000000"), std::string::npos);
}

}  // namespace
}  // namespace mmuvisor::vmm
