#include "vmm/dma/dma_memory.h"

#include <atomic>
#include <chrono>

#include "absl/strings/str_cat.h"
#include "mmu/types.h"

namespace mmuvisor::vmm::dma {
namespace {

// An access that keeps racing invalidations for this many attempts gives up (the MMU's
// own Fault() has a time limit; this bounds the Translate hit path too).
constexpr int kMaxAttempts = 1 << 20;

uint64_t NowNs() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace

void LoadWords(const uint64_t* page_words, uint64_t* out, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    // relaxed: no ordering with other words is needed; the retry protocol validates them.
    out[i] = std::atomic_ref<const uint64_t>(page_words[i]).load(std::memory_order_relaxed);
  }
}

void StoreWords(uint64_t* page_words, const uint64_t* in, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    std::atomic_ref<uint64_t>(page_words[i]).store(in[i], std::memory_order_relaxed);
  }
}

void StoreValue(uint64_t* page_words, uint64_t value, uint64_t count) {
  for (uint64_t i = 0; i < count; ++i) {
    std::atomic_ref<uint64_t>(page_words[i]).store(value, std::memory_order_relaxed);
  }
}

SecondaryMmuMemory::SecondaryMmuMemory(DeviceMmu& mmu, LatencyHistogram* latency,
                                       bool skip_retry_check_for_testing)
    : mmu_(mmu), latency_(latency), skip_retry_(skip_retry_check_for_testing) {}

absl::Status SecondaryMmuMemory::FaultIn(uint64_t gpa, mmu::Access access) {
  faults_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
  const uint64_t start = NowNs();
  absl::StatusOr<mmu::ShadowEntry> entry = mmu_.Fault(gpa >> kPageShift, access);
  const uint64_t took = NowNs() - start;
  if (latency_ != nullptr) latency_->Record(took);
  if (trace_ != nullptr) trace_->OnDmaFault(gpa, took, entry.ok());
  if (!entry.ok()) {
    fault_errors_.fetch_add(1, std::memory_order_relaxed);
    return absl::Status(entry.status().code(),
                        absl::StrCat("DMA ", mmu::AccessName(access), " gpa=0x",
                                     absl::Hex(gpa), ": ", entry.status().message()));
  }
  return absl::OkStatus();
}

absl::Status SecondaryMmuMemory::Access(uint64_t gpa, Kind kind, uint64_t* words,
                                        uint64_t count, uint64_t value) {
  const mmu::Gfn gfn = gpa >> kPageShift;
  const uint64_t offset = gpa & (kPageSize - 1);
  const mmu::Access access = kind == Kind::kRead ? mmu::Access::kRead : mmu::Access::kWrite;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    bool done = false, stale = false;
    auto attempt_access = [&] {
      mmu::ReaderSections::Section section = mmu_.ReadSection();
      DeviceMmu::AccessSection access_section(mmu_);
      // The snapshot before the lookup: its acquire fence pairs with the release in the
      // invalidation's End(), and AccessRetry below pairs with Begin()'s release fence.
      const uint64_t seq = mmu_.SnapshotSeq();
      const uint64_t hva = mmu_.Translate(gfn, access);
      if (hva == 0) return;
      if (after_translate_) after_translate_(gpa);
      if (hooks_ != nullptr && kind != Kind::kRead) hooks_->BeforeWrite(hva);
      const uint64_t target = hooks_ != nullptr ? hooks_->DeviceAddress(hva) : hva;
      auto* page_words = reinterpret_cast<uint64_t*>(target + offset);
      switch (kind) {
        case Kind::kRead: LoadWords(page_words, words, count); break;
        case Kind::kWrite: StoreWords(page_words, words, count); break;
        case Kind::kFill: StoreValue(page_words, value, count); break;
      }
      // REQUIRES of AccessRetry: the data accesses above come first.
      const bool raced = !skip_retry_ && mmu_.AccessRetry(seq, gfn);
      if (raced && kind != Kind::kRead && mmu_.access_wait_enabled()) {
        // A write that raced an invalidation has landed all the same, in the page the
        // primary had when the invalidation started: DeviceMmu's start waits for this
        // section before the primary changes anything, and what it then does keeps these
        // bytes (a save or migrate copies them). Redoing it after the fault would replay
        // it over whatever the guest wrote there since it saw it: a chain's status word,
        // seen OK, reused for the next chain and set PENDING, came back OK before that
        // chain ran (nested SVM: the guest then read a FILL's page before the FILL).
        raced_writes_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
        done = true;
        return;
      }
      done = !raced;
      stale = raced;
    };
    attempt_access();
    if (done) return absl::OkStatus();
    if (stale) {
      retries_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistic
      if (trace_ != nullptr) trace_->OnDmaRetry(gpa);
      // Fall through to Fault(): it waits out the window (with backoff) instead of
      // spinning here against the invalidation.
    }
    // A miss (or a stale access): fault the page in outside the sections (Fault may
    // sleep), then access again.
    if (absl::Status s = FaultIn(gpa, access); !s.ok()) return s;
  }
  return absl::DeadlineExceededError(absl::StrCat(
      "DMA gpa=0x", absl::Hex(gpa), ": still racing invalidations after ", kMaxAttempts,
      " attempts"));
}

absl::Status SecondaryMmuMemory::ReadWords(uint64_t gpa, absl::Span<uint64_t> out) {
  return Access(gpa, Kind::kRead, out.data(), out.size(), 0);
}

absl::Status SecondaryMmuMemory::WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) {
  // Access() only reads through `words` for kWrite.
  return Access(gpa, Kind::kWrite, const_cast<uint64_t*>(in.data()), in.size(), 0);
}

absl::Status SecondaryMmuMemory::FillWords(uint64_t gpa, uint64_t value, uint64_t words) {
  return Access(gpa, Kind::kFill, nullptr, words, value);
}

DmaMemoryStats SecondaryMmuMemory::stats() const {
  // relaxed: statistics.
  return DmaMemoryStats{faults_.load(std::memory_order_relaxed),
                        fault_errors_.load(std::memory_order_relaxed),
                        retries_.load(std::memory_order_relaxed),
                        raced_writes_.load(std::memory_order_relaxed)};
}

absl::Status MirrorMemory::ReadWords(uint64_t gpa, absl::Span<uint64_t> out) {
  const uint64_t address = base_ + gpa;
  return mirror_.AccessPage(address & ~(kPageSize - 1), mmu::Access::kRead,
                            [&](uint64_t host) {
                              LoadWords(reinterpret_cast<const uint64_t*>(
                                            Device(host) + (address & (kPageSize - 1))),
                                        out.data(), out.size());
                            });
}

absl::Status MirrorMemory::WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) {
  const uint64_t address = base_ + gpa;
  return mirror_.AccessPage(address & ~(kPageSize - 1), mmu::Access::kWrite,
                            [&](uint64_t host) {
                              if (hooks_ != nullptr) hooks_->BeforeWrite(host);
                              StoreWords(reinterpret_cast<uint64_t*>(
                                             Device(host) + (address & (kPageSize - 1))),
                                         in.data(), in.size());
                            });
}

absl::Status MirrorMemory::FillWords(uint64_t gpa, uint64_t value, uint64_t words) {
  const uint64_t address = base_ + gpa;
  return mirror_.AccessPage(address & ~(kPageSize - 1), mmu::Access::kWrite,
                            [&](uint64_t host) {
                              if (hooks_ != nullptr) hooks_->BeforeWrite(host);
                              StoreValue(reinterpret_cast<uint64_t*>(
                                             Device(host) + (address & (kPageSize - 1))),
                                         value, words);
                            });
}

DmaMemoryStats MirrorMemory::stats() const {
  const mmu::MirrorStats s = mirror_.stats();
  return DmaMemoryStats{s.faults, s.timeouts, s.retries, 0};  // no raced writes: the lock
}

}  // namespace mmuvisor::vmm::dma
