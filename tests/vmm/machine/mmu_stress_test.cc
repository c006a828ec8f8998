// The scenario of Linux's KVM selftest mmu_stress_test (formerly max_guest_memory_test),
// checked by the VMM on a real Machine: two vCPUs store to every page of their half of the
// guest's data (mmu_stress_guest.h), the host protects all of the guest's free memory
// read-only through HostAddressSpace::Protect (the hub's kProtectionVma window, the
// kernel's KVM MMU notifier through mprotect), and every store then comes back as a guest fault the
// Machine classifies as kProtected. On x86 the kernel may give a plain EFAULT without the
// address; the guest announces each page on a port before storing, so the observer
// attributes each fault to that page (and checks the kernel's address when it has one).
// The store must not have reached memory; the observer lifts the protection of that one
// page and the store is retried (no store is lost). Then the host unprotects everything,
// the guest stores once more without a fault, and the Machine ends by destruction alone:
// every subscription gets exactly one Release. Skips visibly without /dev/kvm.
#include <array>
#include <atomic>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "notifier/base/mutex.h"
#include "notifier/subscription.h"
#include "support/kvm_test_support.h"
#include "support/status_matchers.h"
#include "support/wait.h"
#include "vmm/host/fault_injection.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/protect.h"
#include "vmm/machine/machine.h"
#include "vmm/machine/mmu_stress_guest.h"

namespace mmuvisor::vmm {
namespace {

using ::mmuvisor::testing::IsOk;
using ::mmuvisor::testing::kTestWaitLimit;
using ::mmuvisor::testing::WaitUntil;
using ::mmuvisor::vmm::testing::kStressDataGpa;
using ::mmuvisor::vmm::testing::kStressPagesPerVcpu;
using ::mmuvisor::vmm::testing::kStressPhases;
using ::mmuvisor::vmm::testing::kStressPort;
using ::mmuvisor::vmm::testing::kStressVcpus;
using ::mmuvisor::vmm::testing::StressWord;

constexpr uint64_t kRamBytes = 8ull << 20;
constexpr uint64_t kDataPages = kStressPagesPerVcpu * kStressVcpus;

// A KVM-like classic subscription that counts what it is told, and anything after Release.
class CountingSubscription : public notifier::Subscription {
 public:
  CountingSubscription() : Subscription(notifier::OpSet::KvmLike(), "mmu-stress-counter") {}
  void Release(notifier::NotifierSubscriptions& /*hub*/) override {
    releases_.fetch_add(1);
  }
  notifier::StartResult InvalidateRangeStart(const notifier::Range& /*range*/) override {
    if (releases_.load() > 0) after_release_.fetch_add(1);
    starts_.fetch_add(1);
    return notifier::StartResult::kOk;
  }
  void InvalidateRangeEnd(const notifier::Range& /*range*/) override {
    if (releases_.load() > 0) after_release_.fetch_add(1);
    ends_.fetch_add(1);
  }
  uint64_t releases() const { return releases_.load(); }
  uint64_t starts() const { return starts_.load(); }
  uint64_t ends() const { return ends_.load(); }
  uint64_t after_release() const { return after_release_.load(); }

 private:
  std::atomic<uint64_t> releases_{0}, starts_{0}, ends_{0}, after_release_{0};
};

// The host side of the scenario: the guest's port (phase ends, page announcements) and the
// Machine's observer of protected writes. Every callback runs on a vCPU thread.
class StressHost : public PortIoDevice, public MachineObserver {
 public:
  void Bind(Machine* m) {
    m_ = m;
    ASSERT_OK_AND_ASSIGN(PageRange data, m->host().PagesOf(Gpa{kStressDataGpa},
                                                           ByteSize{kDataPages * kPageSize}));
    first_data_page_ = data.first;
  }

  IoAction Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) override {
    uint32_t v = 0;
    std::memcpy(&v, data.data(), std::min<size_t>(data.size(), sizeof(v)));
    if (vcpu >= kStressVcpus) {
      ADD_FAILURE() << "port write from vCPU " << vcpu;
      return IoAction::kStopVcpu;
    }
    if (offset == 4) {
      announced_[vcpu].store(v);
      return IoAction::kContinue;
    }
    if (offset == 0 && v >= 1 && v <= kStressPhases) return PhaseDone(v);
    ADD_FAILURE() << "unexpected port write offset " << offset << " value " << v;
    return IoAction::kStopVcpu;
  }
  void Read(uint32_t /*vcpu*/, uint16_t /*offset*/, absl::Span<uint8_t> data) override {
    std::memset(data.data(), 0, data.size());
  }

  // Attributes the fault to the page this vCPU announced last; the store must not have
  // landed. Lifts that page's protection so the retried store completes.
  bool OnProtectedWrite(uint32_t vcpu, std::optional<Gpa> gpa,
                        absl::string_view detail) override {
    if (vcpu >= kStressVcpus || phase_protected_.load() != 2) {
      ADD_FAILURE() << "protected write outside phase 2 on vCPU " << vcpu << ": " << detail;
      return false;
    }
    const uint64_t at = announced_[vcpu].load();
    const uint64_t index = (at - kStressDataGpa) / kPageSize;
    if (at < kStressDataGpa || index >= kDataPages) {
      ADD_FAILURE() << "vCPU " << vcpu << " faulted with no data page announced: " << detail;
      return false;
    }
    if (gpa.has_value() && gpa->value / kPageSize != at / kPageSize) {
      ADD_FAILURE() << "kernel reported gpa " << gpa->value << ", guest announced " << at;
      return false;
    }
    if (faults_per_page_[index].fetch_add(1) != 0) {
      // The page is no longer protected: this fault is not the protection's.
      ADD_FAILURE() << "second fault on page " << at << " after its unprotect: " << detail;
      return false;
    }
    faults_per_vcpu_[vcpu].fetch_add(1);
    if (gpa.has_value()) with_address_.fetch_add(1);
    if (HostWord(at) != StressWord(at, 1)) {
      ADD_FAILURE() << "a store to protected page " << at << " reached memory";
      slipped_.fetch_add(1);
    }
    return Unprotect(m_->host(), PageRange{first_data_page_ + index, 1}).ok();
  }

  uint64_t first_data_page() const { return first_data_page_; }
  uint64_t free_pages() const { return FreePages().count; }
  uint64_t faults_on_page(uint64_t i) const { return faults_per_page_[i].load(); }
  uint64_t faults_of_vcpu(uint32_t v) const { return faults_per_vcpu_[v].load(); }
  uint64_t with_address() const { return with_address_.load(); }
  uint64_t slipped() const { return slipped_.load(); }
  uint64_t protected_at_phase2_end() const { return protected_at_phase2_end_.load(); }
  uint64_t wrong_words(uint64_t phase) const { return wrong_words_[phase].load(); }

  // Read through the host mapping (readable while protected).
  uint64_t HostWord(uint64_t gpa) const {
    uint64_t word = 0;
    const uint8_t* p = m_->host().PagePointer(first_data_page_ + (gpa - kStressDataGpa) / kPageSize);
    std::memcpy(&word, const_cast<const uint8_t*>(p), sizeof(word));
    return word;
  }
  uint64_t CountWrongWords(uint64_t phase) const {
    uint64_t wrong = 0;
    for (uint64_t i = 0; i < kDataPages; ++i) {
      const uint64_t gpa = kStressDataGpa + i * kPageSize;
      if (HostWord(gpa) != StressWord(gpa, phase)) ++wrong;
    }
    return wrong;
  }

 private:
  // A barrier of both vCPUs; the second to arrive acts for the host, the first waits
  // (bounded) until it has.
  IoAction PhaseDone(uint32_t phase) {
    if (arrived_[phase].fetch_add(1) + 1 < kStressVcpus) {
      if (!WaitUntil([&] { return acted_.load() >= phase; })) {
        ADD_FAILURE() << "the other vCPU did not end phase " << phase << " within "
                      << kTestWaitLimit;
        return IoAction::kStopVcpu;
      }
      return IoAction::kContinue;
    }
    wrong_words_[phase].store(CountWrongWords(phase));
    const PageRange all = FreePages();
    if (phase == 1) {
      phase_protected_.store(2);
      EXPECT_THAT(Protect(m_->host(), all, PageProtection::kReadOnly), IsOk());
    } else if (phase == 2) {
      protected_at_phase2_end_.store(m_->host().ProtectedPages());
      EXPECT_THAT(Unprotect(m_->host(), all), IsOk());
      phase_protected_.store(0);
    }
    acted_.store(phase);
    return IoAction::kContinue;
  }

  // All of the guest's free memory (the data and everything else it may store to). Not
  // the boot structures: on AMD NPT the walk of the guest's page tables is a write in the
  // nested fault, so read-only page-table pages make every TLB miss fail with EFAULT
  // (seen under nested SVM, Linux 6.12); Linux's test protects only its own region too.
  PageRange FreePages() const {
    const BootLayout& l = m_->boot_plan().layout;
    absl::StatusOr<PageRange> r =
        m_->host().PagesOf(Gpa{l.free_start}, ByteSize{l.free_end - l.free_start});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : PageRange{};
  }

  Machine* m_ = nullptr;
  uint64_t first_data_page_ = 0;
  std::atomic<uint64_t> phase_protected_{0};  // 2 while phase 2 runs under protection
  std::array<std::atomic<uint64_t>, kStressVcpus> announced_{};
  std::array<std::atomic<uint64_t>, kStressVcpus> faults_per_vcpu_{};
  std::array<std::atomic<uint64_t>, kDataPages> faults_per_page_{};
  std::array<std::atomic<uint64_t>, kStressPhases + 1> arrived_{};
  std::array<std::atomic<uint64_t>, kStressPhases + 1> wrong_words_{};
  std::atomic<uint64_t> acted_{0};
  std::atomic<uint64_t> with_address_{0};
  std::atomic<uint64_t> slipped_{0};
  std::atomic<uint64_t> protected_at_phase2_end_{0};
};

TEST(MmuStressTest, EveryStoreIntoProtectedRamFaultsAsProtectedAndNoneIsLost) {
  MMUVISOR_SKIP_WITHOUT_KVM();
  // Outlive the Machine: they see its destruction.
  StressHost host;
  CountingSubscription counter;
  StartFaultSubscription injector;  // no faults configured: a plain second subscriber
  notifier::PairingSummary pairing;
  {
    MachineConfig config;
    config.ram_size = ByteSize{kRamBytes};
    config.vcpus = kStressVcpus;
    config.timeout = absl::Seconds(120);  // nested KVM under TCG is slow
    config.host.page_server_threads = 2;
    config.observer = &host;
    const std::vector<uint8_t> elf = testing::MmuStressGuestElf();
    ASSERT_OK_AND_ASSIGN(std::unique_ptr<Machine> m, Machine::Create(config, elf));
    ASSERT_THAT(m->AttachPortDevice(kStressPort, 8, &host), IsOk());
    host.Bind(m.get());
    ASSERT_THAT(m->host().hub().Register(counter), IsOk());
    ASSERT_THAT(m->host().hub().Register(injector), IsOk());

    const RunResult r = m->Run();
    ASSERT_EQ(r.verdict, Verdict::kClean) << r.summary;
    // Phase 1 stored everywhere; nothing landed while protected; phase 2's stores all
    // landed once their fault was handled; phase 3 stored everywhere again.
    EXPECT_EQ(host.wrong_words(1), 0u);
    EXPECT_EQ(host.slipped(), 0u);
    EXPECT_EQ(host.wrong_words(2), 0u);
    EXPECT_EQ(host.wrong_words(3), 0u);
    EXPECT_EQ(host.CountWrongWords(3), 0u);
    // Exactly one protection fault per page stored to while protected, each attributed to
    // its page, and no other protected-write event.
    for (uint64_t i = 0; i < kDataPages; ++i) {
      EXPECT_EQ(host.faults_on_page(i), 1u) << "data page " << i;
    }
    for (uint32_t v = 0; v < kStressVcpus; ++v) {
      EXPECT_EQ(host.faults_of_vcpu(v), kStressPagesPerVcpu) << "vCPU " << v;
    }
    EXPECT_EQ(r.protected_write_events, kDataPages);
    EXPECT_EQ(m->fault_stats().protected_writes, kDataPages);
    // The rest of the free memory stayed protected until the unprotect.
    ASSERT_GT(host.free_pages(), kDataPages);
    EXPECT_EQ(host.protected_at_phase2_end(), host.free_pages() - kDataPages);
    EXPECT_EQ(m->host().ProtectedPages(), 0u);
    RecordProperty("faults_with_address", static_cast<int>(host.with_address()));
    RecordProperty("guest_fault_retries", static_cast<int>(r.guest_fault_retries));

    // "Process exit": leave half the data protected again and end by destruction alone
    // (no RequestStop, no Unprotect, no Teardown call).
    ASSERT_THAT(Protect(m->host(), PageRange{host.first_data_page(), kStressPagesPerVcpu},
                                  PageProtection::kReadOnly),
                IsOk());
    pairing = m->host().hub().pairing_summary();
    EXPECT_EQ(counter.releases(), 0u);
  }
  EXPECT_EQ(pairing.violations, 0u) << pairing.ToString();
  EXPECT_EQ(pairing.open, 0);
  EXPECT_EQ(counter.releases(), 1u);
  EXPECT_EQ(injector.releases(), 1u);
  EXPECT_EQ(counter.after_release(), 0u);
  EXPECT_EQ(counter.starts(), counter.ends());
  // Protect (1), a window per faulted page (kDataPages), Unprotect (1), Protect (1).
  EXPECT_GE(counter.starts(), kDataPages + 3);
  EXPECT_EQ(counter.pairing().open, 0);
  EXPECT_EQ(injector.starts(), counter.starts());
}

}  // namespace
}  // namespace mmuvisor::vmm
