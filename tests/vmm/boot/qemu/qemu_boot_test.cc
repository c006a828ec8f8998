// Boots every built-in guest under QEMU/TCG with the state vmm/boot computes: where
// /dev/kvm is absent this is the only execution of the guests, the page tables, the GDT
// and the register values. qemu_tramp.S (the -bios) applies InitialRegs/InitialSregs from a
// handoff block; the guest's serial output goes to a file, and its ucall block is read
// through the QEMU monitor. Skips (visibly) when qemu-system-x86_64 is not installed.
#include <signal.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "mmuvisor/guest_abi.h"
#include "support/status_matchers.h"
#include "vmm/boot/boot.h"
#include "vmm/boot/guest_images.h"

namespace mmuvisor::vmm {
namespace {

namespace fs = std::filesystem;
constexpr uint64_t kRamSize = 8ull << 20;
constexpr uint64_t kHandoff = 0x7e00;  // last ucall block: mapped, unused with one vCPU

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

template <typename T>
void Put(std::vector<uint8_t>& ram, uint64_t off, T v) {
  std::memcpy(ram.data() + kHandoff + off, &v, sizeof(v));
}

// Layout read by qemu_tramp.S; keep the two in step.
void WriteHandoff(std::vector<uint8_t>& ram, const BootPlan& plan, const kvm_regs& r,
                  const kvm_sregs& s) {
  Put<uint32_t>(ram, 0x00, plan.image.mode == BootMode::kReal16 ? 1 : 0);
  Put<uint64_t>(ram, 0x08, r.rip);
  Put<uint64_t>(ram, 0x10, r.rsp);
  Put<uint64_t>(ram, 0x18, r.rdi);
  Put<uint64_t>(ram, 0x20, r.rsi);
  Put<uint64_t>(ram, 0x28, r.rflags);
  Put<uint64_t>(ram, 0x30, s.cr0);
  Put<uint64_t>(ram, 0x38, s.cr3);
  Put<uint64_t>(ram, 0x40, s.cr4);
  Put<uint64_t>(ram, 0x48, s.efer);
  Put<uint16_t>(ram, 0x50, s.cs.selector);
  Put<uint16_t>(ram, 0x52, s.ss.selector);
  Put<uint16_t>(ram, 0x54, s.ds.selector);
  Put<uint16_t>(ram, 0x56, s.tr.selector);
  Put<uint16_t>(ram, 0x58, s.gdt.limit);
  Put<uint32_t>(ram, 0x5a, static_cast<uint32_t>(s.gdt.base));
  Put<uint16_t>(ram, 0x60, s.idt.limit);
  Put<uint32_t>(ram, 0x62, static_cast<uint32_t>(s.idt.base));
}

struct QemuRun {
  bool exited = false;        // QEMU stopped by itself (triple fault with -no-reboot)
  mmv_ucall last_ucall{};     // vCPU 0's block when the guest was seen DONE
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

  // Prepares `guest`, boots it, and waits for DONE or for QEMU to exit.
  QemuRun Boot(const char* guest, GuestPrivilege privilege, BootPlan* plan_out) {
    QemuRun run;
    auto image = BuiltinGuestImage(guest);
    EXPECT_TRUE(image.ok()) << image.status();
    std::vector<uint8_t> ram(kRamSize, 0);
    BootOptions options;
    options.privilege = privilege;
    auto plan = PrepareGuest(GuestRamView{ram.data(), kRamSize}, *image, options);
    EXPECT_TRUE(plan.ok()) << plan.status();
    if (!plan.ok()) return run;
    *plan_out = *plan;
    WriteHandoff(ram, *plan, InitialRegs(*plan, 0, 0), InitialSregs(*plan, 0, kvm_sregs{}));
    WriteFile(dir_ / "low.bin", ram.data(), 0xa0000);  // QEMU's PC has ROM at 640K..1M
    WriteFile(dir_ / "high.bin", ram.data() + 0x100000, kRamSize - 0x100000);

    const fs::path sock = dir_ / "mon.sock";
    const std::vector<std::string> args = {
        qemu_, "-M", "pc", "-nodefaults", "-nographic", "-m", "8M",
        "-bios", MMUVISOR_QEMU_TRAMP,
        "-device", "loader,file=" + (dir_ / "low.bin").string() + ",addr=0,force-raw=on",
        "-device", "loader,file=" + (dir_ / "high.bin").string() + ",addr=0x100000,force-raw=on",
        "-serial", "file:" + (dir_ / "serial.log").string(),
        "-monitor", "unix:" + sock.string() + ",server,nowait",
        "-no-reboot", "-d", "int", "-D", (dir_ / "qemu.log").string()};
    const pid_t pid = fork();
    if (pid == 0) {
      std::vector<char*> argv;
      for (const std::string& a : args) argv.push_back(const_cast<char*>(a.c_str()));
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    int status = 0;
    while (std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (waitpid(pid, &status, WNOHANG) == pid) {
        run.exited = true;
        break;
      }
      const fs::path dump = dir_ / "ucall.bin";
      if (!fs::exists(sock) ||
          !Monitor(sock, "pmemsave " + std::to_string(MMV_UCALL_GPA) + " " +
                             std::to_string(sizeof(mmv_ucall)) + " \"" + dump.string() + "\"")) {
        continue;
      }
      const std::string bytes = ReadFile(dump);
      if (bytes.size() != sizeof(mmv_ucall)) continue;
      std::memcpy(&run.last_ucall, bytes.data(), sizeof(mmv_ucall));
      if (run.last_ucall.magic == MMV_UCALL_MAGIC && run.last_ucall.cmd == MMV_UCALL_DONE) {
        break;
      }
    }
    if (!run.exited) {
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

TEST_F(QemuBootTest, Hello64AtCpl3) {
  BootPlan plan;
  const QemuRun run = Boot("hello64", GuestPrivilege::kUser, &plan);
  EXPECT_EQ(run.serial, "hello64: serial says hi\n");
  EXPECT_EQ(run.last_ucall.cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.last_ucall.args[0], 0u);
  // DONE's empty text overwrote only byte 0 of the PRINT before it.
  EXPECT_STREQ(run.last_ucall.text + 1, "ello64: Hello from vCPU 0 at CPL3!");
  EXPECT_EQ(run.log.find("v="), std::string::npos) << run.log;  // no exception at all
}

TEST_F(QemuBootTest, Hello64AtCpl0) {
  BootPlan plan;
  const QemuRun run = Boot("hello64", GuestPrivilege::kKernel, &plan);
  EXPECT_EQ(run.serial, "hello64: serial says hi\n");
  EXPECT_EQ(run.last_ucall.cmd, MMV_UCALL_DONE);
  EXPECT_STREQ(run.last_ucall.text + 1, "ello64: Hello from vCPU 0 at CPL0!");
}

TEST_F(QemuBootTest, Hello16InRealMode) {
  BootPlan plan;
  const QemuRun run = Boot("hello16", GuestPrivilege::kUser, &plan);
  EXPECT_EQ(run.serial, "hello16: Hello from real mode!\n");
  EXPECT_EQ(run.last_ucall.cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.last_ucall.args[0], 0u);
}

TEST_F(QemuBootTest, SmpOnOneVcpu) {
  BootPlan plan;
  const QemuRun run = Boot("smp", GuestPrivilege::kUser, &plan);
  EXPECT_EQ(run.last_ucall.cmd, MMV_UCALL_DONE);
  EXPECT_EQ(run.last_ucall.args[0], 0u);
  EXPECT_STREQ(run.last_ucall.text + 1, "mp: vCPU 0 of 1: sum(1..1000) = 500500");
}

TEST_F(QemuBootTest, CrashFaultsInsideTheImage) {
  BootPlan plan;
  const QemuRun run = Boot("crash", GuestPrivilege::kUser, &plan);
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
