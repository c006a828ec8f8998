// MemslotChurn without KVM: the spare slot goes round add -> move -> delete on the churn's
// thread while a device reads through both windows and reclaims run over the spare's
// pages. What every schedule guarantees: every change succeeds, and a device read at a
// window gives the page's bytes (the slot is there) or NotFound (it is not), never stale
// or other data. Runs under TSan (label `concurrency`).
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "support/dma_port.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/reclaim.h"
#include "vmm/stress/memslot_churn.h"

namespace mmuvisor::vmm::stress {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::DmaPort;

constexpr uint64_t kPages = 64;
constexpr uint64_t kSparePages = 8;
constexpr uint64_t kGiB = 1ull << 30;

TEST(MemslotChurnTest, ChangesSucceedAndReadsSeeTheSlotOrNothing) {
  HostAddressSpaceOptions o;
  o.ram_bytes = kPages * kPageSize;
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<HostAddressSpace> space, HostAddressSpace::Create(o));
  for (uint64_t p = 0; p < kSparePages; ++p) {
    std::vector<uint8_t> page(kPageSize, static_cast<uint8_t>(0x40 + p));
    ASSERT_THAT(space->WriteGuest(Gpa{p * kPageSize}, absl::MakeSpan(page)), IsOk());
  }
  ASSERT_OK_AND_ASSIGN(std::unique_ptr<DmaPort> dma, DmaPort::Create(*space));
  const SpareSlot spare{9, 0, kSparePages, Gpa{4 * kGiB}, Gpa{5 * kGiB}};
  MemslotChurn churn(*space, spare, /*rate=*/2000, /*trace=*/nullptr);

  std::atomic<bool> done{false};
  std::atomic<uint64_t> present{0}, absent{0}, wrong{0};
  std::thread reader([&] {
    std::vector<uint8_t> out(kPageSize);
    for (uint64_t n = 0; !done.load(); ++n) {
      const uint64_t p = n % kSparePages;
      const Gpa window = (n / kSparePages) % 2 == 0 ? spare.a : spare.b;
      absl::Status s = dma->Read(window + ByteSize{p * kPageSize}, absl::MakeSpan(out));
      if (s.ok() && out == std::vector<uint8_t>(kPageSize, static_cast<uint8_t>(0x40 + p))) {
        present.fetch_add(1);
      } else if (absl::IsNotFound(s)) {
        absent.fetch_add(1);
      } else {
        wrong.fetch_add(1);
        ADD_FAILURE() << "window " << window.value << " page " << p << ": " << s;
      }
    }
  });
  std::thread reclaimer([&] {
    while (!done.load()) {
      EXPECT_THAT(Reclaim(*space, PageRange{0, kSparePages}).status(), IsOk());
    }
  });
  churn.Start();
  const bool cycled = WaitUntil([&] {
    const MemslotChurnStats s = churn.stats();
    return s.failures != 0 || (s.deletes >= 10 && present.load() > 0 && absent.load() > 0);
  });
  churn.Stop();
  done.store(true);
  reader.join();
  reclaimer.join();

  const MemslotChurnStats s = churn.stats();
  EXPECT_TRUE(cycled) << "adds " << s.adds << " moves " << s.moves << " deletes " << s.deletes
                      << " present " << present.load() << " absent " << absent.load();
  EXPECT_EQ(s.failures, 0u) << s.first_failure;
  EXPECT_GE(s.adds, s.deletes);
  EXPECT_GE(s.moves, s.deletes);
  EXPECT_EQ(wrong.load(), 0u);
  // Where the slot is now is the only window that reads.
  std::vector<uint8_t> out(kPageSize);
  const GuestMemorySlot* now = space->memslots()->FindId(spare.slot);
  for (const Gpa window : {spare.a, spare.b}) {
    const bool there = now != nullptr && now->gpa == window;
    EXPECT_EQ(dma->Read(window, absl::MakeSpan(out)).ok(), there) << window.value;
  }
}

}  // namespace
}  // namespace mmuvisor::vmm::stress
