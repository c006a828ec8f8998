#include "vmm/dma/dma_engine.h"

#include <algorithm>
#include <cstring>
#include <utility>

#include "absl/strings/str_cat.h"
#include "notifier/base/page.h"

namespace mmuvisor::vmm::dma {
namespace {

constexpr uint64_t kWordsPerPage = kPageSize / 8;
// Word offsets inside struct mmv_dma_desc (static_asserts in guest_abi.h pin the layout).
constexpr uint64_t kResultWord = offsetof(mmv_dma_desc, result) / 8;
constexpr uint64_t kFlagsStatusWord = offsetof(mmv_dma_desc, flags) / 8;
// Run()'s answer for a descriptor Abort() cut short: not a guest-visible status.
constexpr uint32_t kAborted = ~0u;
static_assert(offsetof(mmv_dma_desc, status) == offsetof(mmv_dma_desc, flags) + 4);

uint64_t PageRemainder(uint64_t gpa) { return kPageSize - (gpa & (kPageSize - 1)); }

std::string Describe(uint64_t gpa, const mmv_dma_desc& d) {
  return absl::StrCat("DMA descriptor gpa=0x", absl::Hex(gpa), " op=", DmaOpName(d.op), "(",
                      d.op, ") src=0x", absl::Hex(d.src), " dst=0x", absl::Hex(d.dst),
                      " len=0x", absl::Hex(d.len), " flags=0x", absl::Hex(d.flags));
}

}  // namespace

DmaEngine::DmaEngine(DmaMemory& memory, DmaEngineOptions options)
    : memory_(memory), options_(options) {}

DmaEngine::~DmaEngine() { Stop(); }

void DmaEngine::Start() {
  MutexLock lock(&mu_);
  if (running_) return;
  running_ = true;
  stopping_ = false;
  // A start after Abort() is a new run: without this its device thread would end every
  // chain at once with no status (and Write() would count no drop as an error). relaxed:
  // the thread created below is ordered after this store by its creation.
  abort_.store(false, std::memory_order_relaxed);
  thread_ = std::thread([this] { Loop(); });
}

void DmaEngine::Stop() {
  {
    MutexLock lock(&mu_);
    if (!running_) return;
    stopping_ = true;
  }
  cv_.notify_all();
  thread_.join();
  MutexLock lock(&mu_);
  Count(dropped_, queue_.size());
  queue_.clear();
  running_ = false;
}

void DmaEngine::Abort() {
  abort_.store(true, std::memory_order_relaxed);
  Stop();
}

bool DmaEngine::WaitIdle(absl::Duration timeout) {
  MutexLock lock(&mu_);
  return mu_.AwaitFor(cv_, timeout, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
    return (queue_.empty() && !busy_) || stopping_ || !running_;
  });
}

void DmaEngine::Loop() {
  if (options_.on_thread_start) options_.on_thread_start();
  for (;;) {
    uint64_t gpa = 0;
    {
      MutexLock lock(&mu_);
      busy_ = false;
      cv_.notify_all();  // WaitIdle
      mu_.Await(cv_, [this]() ABSL_NO_THREAD_SAFETY_ANALYSIS {
        return !queue_.empty() || stopping_;
      });
      if (stopping_) return;
      gpa = queue_.front();
      queue_.pop_front();
      busy_ = true;
    }
    ExecuteChain(gpa);
  }
}

IoAction DmaEngine::Write(uint32_t vcpu, uint16_t offset, absl::Span<const uint8_t> data) {
  Count(doorbells_);
  if (offset != 0 || data.size() != 4) {
    Count(bad_doorbells_);
    Count(errors_unrequested_);
    Warn(absl::StrCat("DMA doorbell from vCPU ", vcpu, ": ", data.size(),
                      "-byte write at offset ", offset, " (want a 4-byte OUT at offset 0)"));
    return IoAction::kContinue;
  }
  uint32_t gpa = 0;
  std::memcpy(&gpa, data.data(), sizeof(gpa));
  bool dropped = false;
  {
    MutexLock lock(&mu_);
    if (!running_ || stopping_ || queue_.size() >= options_.queue_limit) {
      dropped = true;
    } else {
      queue_.push_back(gpa);
    }
  }
  if (!dropped) cv_.notify_all();
  if (dropped && abort_.load(std::memory_order_relaxed)) {
    // Aborted on purpose (the run is stopping its vCPUs): not a device failure.
    Count(dropped_);
    return IoAction::kContinue;
  }
  if (dropped) {
    Count(dropped_);
    Count(errors_unrequested_);
    Warn(absl::StrCat("DMA doorbell gpa=0x", absl::Hex(gpa), " from vCPU ", vcpu,
                      " dropped (device stopped or ", options_.queue_limit, " chains queued)"));
  }
  return IoAction::kContinue;
}

void DmaEngine::Read(uint32_t /*vcpu*/, uint16_t /*offset*/, absl::Span<uint8_t> data) {
  uint32_t pending = 0;
  {
    MutexLock lock(&mu_);
    pending = static_cast<uint32_t>(queue_.size() + (busy_ ? 1 : 0));
  }
  std::memset(data.data(), 0, data.size());
  std::memcpy(data.data(), &pending, std::min(data.size(), sizeof(pending)));
}

void DmaEngine::ExecuteChain(uint64_t gpa) {
  const DmaAddressSpace memory(options_.ram_size, options_.ram_aliases, options_.alias_stride);
  if (!DescriptorAddressValid(gpa, memory)) {
    Count(bad_doorbells_);
    Count(errors_unrequested_);
    Warn(absl::StrCat("DMA doorbell gpa=0x", absl::Hex(gpa),
                      ": not a descriptor address (must be ", MMV_DMA_DESC_ALIGN,
                      "-byte aligned inside guest RAM of 0x", absl::Hex(options_.ram_size),
                      " bytes", options_.ram_aliases > 0 ? " or one of its aliases" : "",
                      ")"));
    return;
  }
  uint64_t cur = gpa;  // 0 is a valid first descriptor; as a `next` link it ends the chain
  for (uint32_t index = 0;; ++index) {
    if (abort_.load(std::memory_order_relaxed)) {
      Count(aborted_);
      return;
    }
    // Copy the descriptor out once; everything below works on the copy.
    mmv_dma_desc desc;
    uint64_t words[sizeof(mmv_dma_desc) / 8];
    if (absl::Status s = memory_.ReadWords(cur, absl::MakeSpan(words)); !s.ok()) {
      Count(errors_unrequested_);
      Warn(absl::StrCat("DMA descriptor gpa=0x", absl::Hex(cur), ": cannot read it: ",
                        s.message()));
      return;
    }
    std::memcpy(&desc, words, sizeof(desc));
    Count(descriptors_);

    uint32_t status = ValidateDescriptor(desc, memory);
    const uint64_t next = desc.next;
    const bool next_ok =
        next == 0 || (index + 1 < MMV_DMA_MAX_CHAIN &&
                      DescriptorAddressValid(next, memory));
    if (status == MMV_DMA_STATUS_OK && !next_ok) status = MMV_DMA_STATUS_BAD_CHAIN;
    uint64_t result = 0;
    if (status == MMV_DMA_STATUS_OK) status = Run(cur, desc, &result);
    if (status == kAborted) {
      Count(aborted_);
      return;
    }
    Finish(cur, desc, status, result);
    if (!next_ok) {
      if (status != MMV_DMA_STATUS_BAD_CHAIN) {
        // The descriptor's own error took precedence; the chain still ends here.
        Warn(absl::StrCat(Describe(cur, desc), ": chain ends, next=0x", absl::Hex(next),
                          " is not a descriptor address or the chain exceeds ",
                          MMV_DMA_MAX_CHAIN));
      }
      return;
    }
    if (next == 0) return;
    cur = next;
  }
}

uint32_t DmaEngine::Run(uint64_t desc_gpa, const mmv_dma_desc& desc, uint64_t* result) {
  uint64_t buf[kWordsPerPage];
  absl::Status status;
  uint64_t sum = 0;
  uint64_t word_index = 0;
  for (uint64_t off = 0; off < desc.len && status.ok();) {
    if (abort_.load(std::memory_order_relaxed)) return kAborted;
    uint64_t n = desc.len - off;
    if (desc.op != MMV_DMA_OP_FILL) n = std::min(n, PageRemainder(desc.src + off));
    if (desc.op != MMV_DMA_OP_CHECKSUM) n = std::min(n, PageRemainder(desc.dst + off));
    const uint64_t words = n / 8;
    switch (desc.op) {
      case MMV_DMA_OP_COPY:
        status = memory_.ReadWords(desc.src + off, absl::MakeSpan(buf, words));
        if (status.ok()) status = memory_.WriteWords(desc.dst + off, absl::MakeSpan(buf, words));
        break;
      case MMV_DMA_OP_FILL:
        status = memory_.FillWords(desc.dst + off, desc.value, words);
        break;
      case MMV_DMA_OP_CHECKSUM:
        status = memory_.ReadWords(desc.src + off, absl::MakeSpan(buf, words));
        for (uint64_t i = 0; status.ok() && i < words; ++i) {
          sum = DmaChecksumStep(sum, buf[i], word_index++);
        }
        break;
      default:
        return MMV_DMA_STATUS_BAD_DESC;  // unreachable: validated
    }
    off += n;
  }
  if (!status.ok()) {
    Warn(absl::StrCat(Describe(desc_gpa, desc), ": ", status.message()));
    return MMV_DMA_STATUS_FAULT;
  }
  *result = sum;
  Count(bytes_, desc.len);
  Count(desc.op == MMV_DMA_OP_COPY ? copies_ : desc.op == MMV_DMA_OP_FILL ? fills_ : checksums_);
  return MMV_DMA_STATUS_OK;
}

void DmaEngine::Finish(uint64_t desc_gpa, const mmv_dma_desc& desc, uint32_t status,
                       uint64_t result) {
  Count(by_status_[std::min<uint32_t>(status, kDmaStatusCount - 1)]);
  if (status == MMV_DMA_STATUS_OK) {
    Count(ops_ok_);
  } else {
    const bool requested = (desc.flags & MMV_DMA_FLAG_EXPECT_ERROR) != 0;
    Count(requested ? errors_requested_ : errors_unrequested_);
    if (status != MMV_DMA_STATUS_FAULT) {  // FAULT warned in Run with its cause
      Warn(absl::StrCat(Describe(desc_gpa, desc), ": ", DmaStatusName(status),
                        requested ? " (requested by the guest)" : ""));
    }
  }
  absl::Status s;
  if (status == MMV_DMA_STATUS_OK && desc.op == MMV_DMA_OP_CHECKSUM) {
    const uint64_t word = result;
    s = memory_.WriteWords(desc_gpa + kResultWord * 8, absl::MakeConstSpan(&word, 1));
  }
  // The status word last: a guest that sees it also sees the result (one device thread,
  // program order of two stores to guest memory; x86 keeps store order for the vCPU).
  const uint64_t flags_status = uint64_t{desc.flags} | (uint64_t{status} << 32);
  if (s.ok()) {
    s = memory_.WriteWords(desc_gpa + kFlagsStatusWord * 8,
                           absl::MakeConstSpan(&flags_status, 1));
  }
  if (!s.ok()) {
    Count(writeback_failures_);
    Count(errors_unrequested_);
    Warn(absl::StrCat(Describe(desc_gpa, desc), ": status write-back failed: ", s.message()));
  }
}

void DmaEngine::Warn(std::string message) {
  Count(warnings_total_);
  MutexLock lock(&mu_);
  if (warnings_.size() < options_.warnings_kept) warnings_.push_back(std::move(message));
}

std::vector<std::string> DmaEngine::warnings() const {
  MutexLock lock(&mu_);
  return warnings_;
}

DmaStats DmaEngine::stats() const {
  // relaxed: statistics, exact once the device is idle.
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  DmaStats s;
  s.doorbells = get(doorbells_);
  s.bad_doorbells = get(bad_doorbells_);
  s.dropped_doorbells = get(dropped_);
  s.descriptors = get(descriptors_);
  s.ops_ok = get(ops_ok_);
  s.copies = get(copies_);
  s.fills = get(fills_);
  s.checksums = get(checksums_);
  s.bytes = get(bytes_);
  s.errors_requested = get(errors_requested_);
  s.errors_unrequested = get(errors_unrequested_);
  s.status_writeback_failures = get(writeback_failures_);
  s.aborted_descriptors = get(aborted_);
  for (size_t i = 0; i < by_status_.size(); ++i) s.by_status[i] = get(by_status_[i]);
  return s;
}

}  // namespace mmuvisor::vmm::dma
