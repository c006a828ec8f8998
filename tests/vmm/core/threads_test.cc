// Threads of the vCPU layer that run without KVM: the watchdog and the console used by
// concurrent vCPUs. Label `concurrency` (runs under TSan).
#include <thread>
#include <vector>

#include "absl/synchronization/notification.h"
#include "absl/strings/str_split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "vmm/machine/guest_console.h"
#include "vmm/vcpu/watchdog.h"

namespace mmuvisor::vmm {
namespace {

TEST(WatchdogTest, FiresOnceAfterTheTimeout) {
  absl::Notification fired;
  int calls = 0;  // written by the watchdog thread; read after Cancel() (which waits for it)
  Watchdog dog(absl::Milliseconds(1), [&] {
    ++calls;
    fired.Notify();
  });
  fired.WaitForNotification();
  dog.Cancel();
  EXPECT_TRUE(dog.expired());
  EXPECT_EQ(calls, 1);
}

TEST(WatchdogTest, CancelBeforeTheTimeoutMeansNeverFires) {
  bool fired = false;
  {
    Watchdog dog(absl::Hours(1), [&] { fired = true; });
    dog.Cancel();
    EXPECT_FALSE(dog.expired());
  }  // destructor joins: no callback can run after this
  EXPECT_FALSE(fired);
}

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

}  // namespace
}  // namespace mmuvisor::vmm
