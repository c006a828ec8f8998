// Threads of the vCPU layer that run without KVM: the console used by concurrent vCPUs. Label `concurrency` (runs under TSan).
#include <thread>
#include <vector>

#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/machine/guest_console.h"

namespace mmuvisor::vmm {
namespace {

TEST(GuestConsoleTest, SerialLinesFromConcurrentVcpusStayWhole) {
  GuestConsole console(nullptr);
  std::vector<std::thread> threads;
  for (uint32_t v = 0; v < 4; ++v) {
    threads.emplace_back([&console, v] {
      for (int i = 0; i < 50; ++i) {
        for (char c : std::string("vcpu ") + char('0' + v) + " line\r\n") {
          console.SerialByte(v, static_cast<uint8_t>(c));
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  console.PrintLine(0, "done");
  console.SerialByte(1, 'x');  // unterminated: flushed as its own line
  console.Flush();
  std::vector<std::string> lines = absl::StrSplit(console.transcript(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 4u * 50 + 2);
  for (size_t i = 0; i < 200; ++i) {
    EXPECT_THAT(lines[i], ::testing::MatchesRegex("vcpu [0-3] line")) << i;
  }
  EXPECT_EQ(lines[200], "done");
  EXPECT_EQ(lines[201], "x");
}

// Whatever a guest prints, the console's memory stays bounded: the transcript keeps the
// first kTranscriptLimit bytes and counts the rest; a serial line without a newline is cut
// into lines of kMaxLineBytes.
TEST(GuestConsoleTest, ChattyGuestsCannotGrowTheTranscriptWithoutBound) {
  GuestConsole console(nullptr);
  const std::string long_line(1000, 'p');
  const size_t prints = GuestConsole::kTranscriptLimit / 1001 + 100;
  for (size_t i = 0; i < prints; ++i) console.PrintLine(0, long_line);
  EXPECT_EQ(console.transcript().size(), GuestConsole::kTranscriptLimit);
  EXPECT_EQ(console.transcript_dropped(), prints * 1001 - GuestConsole::kTranscriptLimit);

  GuestConsole serial(nullptr);
  for (size_t i = 0; i < 3 * GuestConsole::kMaxLineBytes; ++i) serial.SerialByte(1, 's');
  std::vector<std::string> lines = absl::StrSplit(serial.transcript(), '\n', absl::SkipEmpty());
  ASSERT_EQ(lines.size(), 3u);
  for (const std::string& l : lines) EXPECT_EQ(l.size(), GuestConsole::kMaxLineBytes);
}

// A guest's control bytes never reach the operator's terminal as such: the echo shows
// them as \xNN (newline and tab pass, and so does UTF-8), the transcript keeps them.
TEST(GuestConsoleTest, EchoShowsControlBytesInsteadOfSendingThem) {
  char* buf = nullptr;
  size_t size = 0;
  std::FILE* echo = open_memstream(&buf, &size);
  ASSERT_NE(echo, nullptr);
  {
    GuestConsole console(echo);
    const std::string evil = "\x1b]0;owned\x07\x1b[2J\tok \xc3\xa9\x7f\b";
    for (char c : evil + "\r\n") console.SerialByte(0, static_cast<uint8_t>(c));
    console.PrintLine(1, "cr\rhere");
    console.Flush();
    EXPECT_EQ(console.transcript(), evil + "\n" + "cr\rhere\n");
  }
  std::fclose(echo);
  const std::string shown(buf, size);
  std::free(buf);
  EXPECT_EQ(shown,
            "\\x1b]0;owned\\x07\\x1b[2J\tok \xc3\xa9\\x7f\\x08\n"
            "cr\\x0dhere\n");
}

}  // namespace
}  // namespace mmuvisor::vmm

// VcpuRunner without KVM: a KvmVcpu on /dev/null (KVM_RUN fails with ENOTTY) and an
// anonymous page as its kvm_run. Exercises the thread, the state machine, on_stop and the
// kick path; the KVM-backed tests cover real exits.
#include <fcntl.h>
#include <sys/mman.h>

#include "notifier/base/mutex.h"
#include "notifier/base/host_mapping.h"
#include <linux/kvm.h>

#include <cstring>

#include "vmm/kvm/kvm_constants.h"
#include "vmm/kvm/vcpu.h"
#include "vmm/vcpu/vcpu_runner.h"

namespace mmuvisor::vmm {
namespace {

KvmVcpu FakeVcpu(int id) {
  absl::StatusOr<HostMapping> run =
      HostMapping::Map(4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0, "run");
  EXPECT_TRUE(run.ok());
  return KvmVcpu(id, UniqueFd(::open("/dev/null", O_RDWR | O_CLOEXEC)), std::move(*run));
}

class StopLog {
 public:
  void Record(uint32_t vcpu, const VcpuStop& stop) {
    MutexLock lock(&mu_);
    stops_.emplace_back(vcpu, stop.kind);
  }
  std::vector<std::pair<uint32_t, StopKind>> stops() {
    MutexLock lock(&mu_);
    return stops_;
  }

 private:
  Mutex mu_;
  std::vector<std::pair<uint32_t, StopKind>> stops_ ABSL_GUARDED_BY(mu_);
};

TEST(VcpuRunnerTest, FailingKvmRunStopsWithAHostErrorNamingTheIoctl) {
  KvmVcpu vcpu = FakeVcpu(3);
  PortIoBus bus;
  ExitHandler handler(&bus);
  StopLog log;
  VcpuRunner runner(&vcpu, 4096, &handler,
                    [&log](uint32_t v, const VcpuStop& s) { log.Record(v, s); });
  EXPECT_EQ(runner.state(), VcpuState::kCreated);
  runner.Start();
  runner.Join();
  EXPECT_EQ(runner.state(), VcpuState::kStopped);
  EXPECT_EQ(runner.stop().kind, StopKind::kHostError);
  EXPECT_EQ(runner.stop().detail, "KVM_RUN vcpu=3: Inappropriate ioctl for device");
  EXPECT_THAT(log.stops(), ::testing::ElementsAre(std::pair{3u, StopKind::kHostError}));
  runner.Kick();  // after Join: harmless, no signal to a joined thread
}

// A memory-fault exit reason left in kvm_run by an earlier exit is not taken for the
// reason of a KVM_RUN that failed otherwise (here ENOTTY): the stop is the host error, and
// Run() cleared the reason before the ioctl.
TEST(VcpuRunnerTest, AStaleMemoryFaultReasonIsNotReadIntoAnotherError) {
  KvmVcpu vcpu = FakeVcpu(3);
  vcpu.run()->exit_reason = kvm_abi::kExitMemoryFault;
  const uint64_t stale[3] = {0, 0x200000, 0x1000};  // flags, gpa, size
  std::memcpy(vcpu.run()->padding, stale, sizeof(stale));
  PortIoBus bus;
  ExitHandler handler(&bus);
  VcpuRunner runner(&vcpu, 4096, &handler, [](uint32_t, const VcpuStop&) {});
  runner.Start();
  runner.Join();
  EXPECT_EQ(runner.stop().kind, StopKind::kHostError);
  EXPECT_EQ(runner.stop().detail, "KVM_RUN vcpu=3: Inappropriate ioctl for device");
  EXPECT_EQ(vcpu.run()->exit_reason, static_cast<uint32_t>(KVM_EXIT_UNKNOWN));
}

TEST(VcpuRunnerTest, KickBeforeStartStopsWithoutEnteringTheGuest) {
  KvmVcpu vcpu = FakeVcpu(0);
  PortIoBus bus;
  ExitHandler handler(&bus);
  StopLog log;
  VcpuRunner runner(&vcpu, 4096, &handler,
                    [&log](uint32_t v, const VcpuStop& s) { log.Record(v, s); });
  runner.Kick();
  EXPECT_EQ(vcpu.run()->immediate_exit, 1);
  runner.Start();
  runner.Join();
  EXPECT_EQ(runner.stop().kind, StopKind::kKicked);
  EXPECT_THAT(log.stops(), ::testing::ElementsAre(std::pair{0u, StopKind::kKicked}));
}

TEST(VcpuRunnerTest, ConcurrentKicksWhileRunnersStartAndStop) {
  constexpr int kRunners = 4;
  std::vector<KvmVcpu> vcpus;
  for (int i = 0; i < kRunners; ++i) vcpus.push_back(FakeVcpu(i));
  PortIoBus bus;
  ExitHandler handler(&bus);
  StopLog log;
  std::vector<std::unique_ptr<VcpuRunner>> runners;
  for (auto& v : vcpus) {
    runners.push_back(std::make_unique<VcpuRunner>(
        &v, 4096, &handler, [&log](uint32_t i, const VcpuStop& s) { log.Record(i, s); }));
  }
  std::thread kicker([&runners] {
    for (int round = 0; round < 100; ++round) {
      for (auto& r : runners) r->Kick();
    }
  });
  for (auto& r : runners) r->Start();
  kicker.join();
  for (auto& r : runners) r->Join();
  EXPECT_EQ(log.stops().size(), static_cast<size_t>(kRunners));
  for (auto& r : runners) {
    EXPECT_EQ(r->state(), VcpuState::kStopped);
    // Either the kick came first or KVM_RUN on /dev/null failed first.
    EXPECT_THAT(r->stop().kind, ::testing::AnyOf(StopKind::kKicked, StopKind::kHostError));
  }
}

}  // namespace
}  // namespace mmuvisor::vmm
