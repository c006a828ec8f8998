#include "vmm/stress/host_workload.h"

#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "guests/memstress/memstress_shared.h"
#include "mmuvisor/guest_abi.h"
#include "vmm/dma/descriptor.h"

namespace mmuvisor::vmm::stress {
namespace {

constexpr uint64_t kWords = MEMSTRESS_PAGE / 8;
constexpr size_t kMismatchesKept = 32;
constexpr uint64_t kCopyPages = MEMSTRESS_DMA_PAGES - 1;  // the last slot page is FILLed
constexpr absl::Duration kDmaTimeout = absl::Seconds(20);

}  // namespace

std::vector<uint64_t> MemstressDescriptorFrames(uint64_t free_start, uint64_t free_end,
                                                uint32_t vcpus) {
  std::vector<uint64_t> frames;
  for (uint32_t v = 0; v < vcpus; ++v) {
    memstress_layout l{};
    if (memstress_layout_of(free_start, free_end, vcpus, v, 0, &l) != 0) return {};
    frames.push_back(l.desc_page / MEMSTRESS_PAGE);
  }
  return frames;
}

HostWorkload::HostWorkload(HostWorkloadConfig config, dma::DmaMemory& memory,
                           dma::DmaEngine* engine,
                           std::function<void(uint64_t, uint64_t)> balloon)
    : config_(config), memory_(memory), engine_(engine), balloon_(std::move(balloon)) {}

HostWorkload::~HostWorkload() {
  Stop();
  Join();
}

absl::Status HostWorkload::Start() {
  memstress_layout layout{};
  for (uint32_t v = 0; v < config_.vcpus; ++v) {
    if (memstress_layout_of(config_.free_start, config_.free_end, config_.vcpus, v, 0,
                            &layout) != 0) {
      return absl::InvalidArgumentError(absl::StrCat(
          "memstress layout: [0x", absl::Hex(config_.free_start), ", 0x",
          absl::Hex(config_.free_end), ") is too small for ", config_.vcpus, " vCPUs"));
    }
  }
  {
    MutexLock lock(&mu_);
    digests_.assign(config_.vcpus, {});
  }
  for (uint32_t v = 0; v < config_.vcpus; ++v) {
    threads_.emplace_back([this, v] {
      if (config_.on_thread_start) config_.on_thread_start(v);
      Vcpu(v);
      // Release pairs with the acquire in finished(): the thread's results are visible.
      finished_.fetch_add(1, std::memory_order_release);
    });
  }
  return absl::OkStatus();
}

void HostWorkload::Stop() { stop_.store(true, std::memory_order_relaxed); }

void HostWorkload::Join() {
  for (std::thread& t : threads_) {
    if (t.joinable()) t.join();
  }
}

void HostWorkload::Vcpu(uint32_t index) {
  uint64_t digest = 0;
  uint64_t prev_balloon = ~0ull;
  for (uint64_t round = 1; config_.rounds == 0 || round <= config_.rounds; ++round) {
    // relaxed: a stop request; the round in flight completes.
    if (stop_.load(std::memory_order_relaxed)) return;
    if (!RunRound(index, round, digest, prev_balloon)) return;
    rounds_.fetch_add(1, std::memory_order_relaxed);
    MutexLock lock(&mu_);
    digests_[index].push_back(digest);
  }
}

bool HostWorkload::RunRound(uint32_t vcpu, uint64_t round, uint64_t& digest,
                            uint64_t& prev_balloon) {
  memstress_layout l{};
  memstress_layout_of(config_.free_start, config_.free_end, config_.vcpus, vcpu, 0, &l);
  uint64_t words[kWords];
  for (uint64_t i = 0; i < l.work_pages; ++i) {
    // A stop request ends the round here (the run's deadline: a round of a big guest takes
    // longer than the run's slack). Nothing is lost: no later round verifies this one.
    if (Stopping(vcpu, round)) return false;
    const uint64_t page = memstress_page_at(config_.seed, vcpu, round, i, l.work_pages);
    const uint64_t gpa = l.work_start + page * MEMSTRESS_PAGE;
    const bool ballooned =
        prev_balloon != ~0ull && page >= prev_balloon && page < prev_balloon + MEMSTRESS_BALLOON_PAGES;
    if (round > 1 && !ballooned) {
      if (absl::Status s = memory_.ReadWords(gpa, absl::MakeSpan(words)); !s.ok()) {
        Fail(vcpu, std::string(s.message()));
        return false;
      }
      for (uint64_t w = 0; w < kWords; ++w) {
        const uint64_t want = memstress_word(config_.seed, gpa + w * 8, round - 1);
        if (words[w] != want) Mismatched(vcpu, round, MMV_MISMATCH_CPU, gpa + w * 8, want, words[w]);
      }
      digest = memstress_digest(digest, gpa);
      pages_verified_.fetch_add(1, std::memory_order_relaxed);
    }
    for (uint64_t w = 0; w < kWords; ++w) words[w] = memstress_word(config_.seed, gpa + w * 8, round);
    if (absl::Status s = memory_.WriteWords(gpa, absl::MakeConstSpan(words)); !s.ok()) {
      Fail(vcpu, std::string(s.message()));
      return false;
    }
  }
  if (config_.dma && engine_ != nullptr) {
    for (uint64_t b = 0; b < MEMSTRESS_DMA_BATCHES; ++b) {
      if (!Dma(vcpu, round, b)) return false;
    }
  }
  prev_balloon = ~0ull;
  if (config_.balloon && balloon_) {
    const uint64_t first = memstress_balloon_first(config_.seed, vcpu, round, l.work_pages);
    if (first != ~0ull) {
      balloon_(l.work_start + first * MEMSTRESS_PAGE, MEMSTRESS_BALLOON_PAGES * MEMSTRESS_PAGE);
      prev_balloon = first;
    }
  }
  return true;
}

bool HostWorkload::Dma(uint32_t vcpu, uint64_t round, uint64_t batch) {
  memstress_layout l{}, target{};
  memstress_layout_of(config_.free_start, config_.free_end, config_.vcpus, vcpu, 0, &l);
  memstress_layout_of(config_.free_start, config_.free_end, config_.vcpus,
                      (vcpu + 1) % config_.vcpus, 0, &target);
  const uint64_t first = memstress_dma_first(config_.seed, vcpu, round, batch, l.work_pages);
  const uint64_t src = l.work_start + first * MEMSTRESS_PAGE;
  const uint64_t dst = target.scratch_start + vcpu * MEMSTRESS_DMA_PAGES * MEMSTRESS_PAGE;
  const uint64_t fill_gpa = dst + kCopyPages * MEMSTRESS_PAGE;
  const uint64_t fill_value = memstress_word(config_.seed, fill_gpa, round) ^ 0x5a5a5a5a5a5a5a5aull;
  const uint64_t len = kCopyPages * MEMSTRESS_PAGE;
  const uint64_t d0 = l.desc_page, d1 = d0 + 64, d2 = d0 + 128;
  const mmv_dma_desc descs[3] = {
      dma::MakeDescriptor(MMV_DMA_OP_COPY, src, dst, len, 0, d1),
      dma::MakeDescriptor(MMV_DMA_OP_CHECKSUM, src, 0, len, 0, d2),
      dma::MakeDescriptor(MMV_DMA_OP_FILL, 0, fill_gpa, MEMSTRESS_PAGE, fill_value, 0)};
  for (int i = 0; i < 3; ++i) {
    uint64_t w[8];
    std::memcpy(w, &descs[i], sizeof(w));
    if (absl::Status s = memory_.WriteWords(d0 + 64 * i, absl::MakeConstSpan(w)); !s.ok()) {
      Fail(vcpu, std::string(s.message()));
      return false;
    }
  }
  const uint32_t doorbell = static_cast<uint32_t>(d0);
  uint8_t bytes[4];
  std::memcpy(bytes, &doorbell, 4);
  engine_->Write(vcpu, 0, absl::MakeConstSpan(bytes, 4));

  // Poll the three statuses in memory, as the guest does.
  mmv_dma_desc done[3];
  if (!AwaitDescriptors(vcpu, round, d0, done)) return false;
  dma_ops_.fetch_add(3, std::memory_order_relaxed);

  // Verify the copy, the checksum and the fill.
  uint64_t words[kWords];
  uint64_t sum = 0, index = 0;
  for (uint64_t p = 0; p < kCopyPages; ++p) {
    if (absl::Status s = memory_.ReadWords(dst + p * MEMSTRESS_PAGE, absl::MakeSpan(words)); !s.ok()) {
      Fail(vcpu, std::string(s.message()));
      return false;
    }
    for (uint64_t w = 0; w < kWords; ++w) {
      const uint64_t want = memstress_word(config_.seed, src + p * MEMSTRESS_PAGE + w * 8, round);
      sum = dma::DmaChecksumStep(sum, want, index++);
      if (words[w] != want) {
        Mismatched(vcpu, round, MMV_MISMATCH_DMA_COPY, dst + p * MEMSTRESS_PAGE + w * 8, want, words[w]);
      }
    }
    pages_verified_.fetch_add(1, std::memory_order_relaxed);
  }
  if (done[1].result != sum) Mismatched(vcpu, round, MMV_MISMATCH_DMA_CHECKSUM, src, sum, done[1].result);
  if (absl::Status s = memory_.ReadWords(fill_gpa, absl::MakeSpan(words)); !s.ok()) {
    Fail(vcpu, std::string(s.message()));
    return false;
  }
  for (uint64_t w = 0; w < kWords; ++w) {
    if (words[w] != fill_value) Mismatched(vcpu, round, MMV_MISMATCH_DMA_FILL, fill_gpa + w * 8, fill_value, words[w]);
  }
  pages_verified_.fetch_add(1, std::memory_order_relaxed);
  return true;
}

bool HostWorkload::AwaitDescriptors(uint32_t vcpu, uint64_t round, uint64_t d0,
                                    mmv_dma_desc (&done)[3]) {
  const absl::Time deadline = absl::Now() + kDmaTimeout;
  for (int i = 0; i < 3; ++i) {
    for (;;) {
      uint64_t w[8];
      if (absl::Status s = memory_.ReadWords(d0 + 64 * i, absl::MakeSpan(w)); !s.ok()) {
        Fail(vcpu, std::string(s.message()));
        return false;
      }
      std::memcpy(&done[i], w, sizeof(w));
      if (done[i].status != MMV_DMA_STATUS_PENDING) break;
      if (Stopping(vcpu, round)) return false;  // the device is aborted at the deadline
      if (absl::Now() > deadline) {
        Fail(vcpu, absl::StrCat("DMA descriptor gpa=0x", absl::Hex(d0 + 64 * i),
                                " still pending after ", absl::FormatDuration(kDmaTimeout)));
        return false;
      }
      absl::SleepFor(absl::Microseconds(20));
    }
    if (done[i].status != MMV_DMA_STATUS_OK) {
      Fail(vcpu, absl::StrCat("DMA descriptor gpa=0x", absl::Hex(d0 + 64 * i), " ended with ",
                              dma::DmaStatusName(done[i].status)));
      return false;
    }
  }
  return true;
}

bool HostWorkload::Stopping(uint32_t vcpu, uint64_t round) {
  // relaxed: a stop request.
  if (!stop_.load(std::memory_order_relaxed)) return false;
  MutexLock lock(&mu_);
  cut_.push_back(absl::StrCat("vCPU ", vcpu, " stopped mid-round ", round));
  return true;
}

std::vector<std::string> HostWorkload::cut_rounds() const {
  MutexLock lock(&mu_);
  return cut_;
}

void HostWorkload::Mismatched(uint32_t vcpu, uint64_t round, uint32_t source, uint64_t gpa,
                              uint64_t expected, uint64_t found) {
  mismatches_.fetch_add(1, std::memory_order_relaxed);
  MutexLock lock(&mu_);
  if (first_.size() < kMismatchesKept) {
    first_.push_back(Mismatch{gpa, expected, found, round, vcpu, source});
  }
}

void HostWorkload::Fail(uint32_t vcpu, const std::string& what) {
  MutexLock lock(&mu_);
  if (problem_.empty()) problem_ = absl::StrCat("vCPU ", vcpu, ": ", what);
}

std::vector<Mismatch> HostWorkload::first_mismatches() const {
  MutexLock lock(&mu_);
  return first_;
}

std::vector<std::vector<uint64_t>> HostWorkload::digests() const {
  MutexLock lock(&mu_);
  return digests_;
}

std::string HostWorkload::problem() const {
  MutexLock lock(&mu_);
  return problem_;
}

}  // namespace mmuvisor::vmm::stress
