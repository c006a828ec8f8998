#include "support/page_pool_space.h"

#include <cstdlib>
#include <cstring>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "notifier/base/page.h"
#include "notifier/base/status_macros.h"
#include "vmm/dma/dma_memory.h"

namespace mmuvisor::testing {
namespace {

constexpr uint64_t kWords = kPageSize / 8;
constexpr uint64_t kChunkPages = 64;

void CopyPage(const uint64_t* from, uint64_t* to) {
  uint64_t buf[kWords];
  vmm::dma::LoadWords(from, buf, kWords);
  vmm::dma::StoreWords(to, buf, kWords);
}

}  // namespace

PagePoolSpace::PagePoolSpace(PagePoolSpaceOptions options)
    : options_(options), hub_(options.hub) {
  MutexLock lock(&mu_);
  table_.resize(options_.pages);
}

void PagePoolSpace::FreeDeleter::operator()(uint64_t* p) const { std::free(p); }

PagePoolSpace::~PagePoolSpace() { Teardown(); }

void PagePoolSpace::Teardown() {
  if (torn_down_) return;
  torn_down_ = true;
  hub_.Release();
}

absl::Status PagePoolSpace::CheckRange(uint64_t gpa, uint64_t len) const {
  if (gpa % kPageSize != 0 || len % kPageSize != 0 || len == 0 || gpa > ram_size() ||
      len > ram_size() - gpa) {
    return absl::InvalidArgumentError(absl::StrCat(
        "PagePoolSpace: range gpa=0x", absl::Hex(gpa), " len=0x", absl::Hex(len),
        " is not page aligned inside RAM of 0x", absl::Hex(ram_size()), " bytes"));
  }
  return absl::OkStatus();
}

uint64_t* PagePoolSpace::AllocPage() {
  if (free_.empty()) {
    void* chunk = std::aligned_alloc(kPageSize, kChunkPages * kPageSize);
    if (chunk == nullptr) std::abort();  // out of host memory: nothing sensible to do
    chunks_.emplace_back(static_cast<uint64_t*>(chunk));
    for (uint64_t i = kChunkPages; i-- > 0;) {
      free_.push_back(static_cast<uint64_t*>(chunk) + i * kWords);
    }
  }
  uint64_t* page = free_.back();
  free_.pop_back();
  ++resident_;
  return page;
}

void PagePoolSpace::FreePage(uint64_t* page) {
  vmm::dma::StoreValue(page, options_.poison, kWords);
  free_.push_back(page);
  --resident_;
}

absl::Status PagePoolSpace::Bracketed(uint64_t gpa, uint64_t len, Kind kind, bool blockable) {
  MMUVISOR_RETURN_IF_ERROR(CheckRange(gpa, len));
  notifier::Event event = notifier::Event::kClear;
  if (kind == Kind::kMigrate) event = notifier::Event::kMigrate;
  if (kind == Kind::kProtect) event = notifier::Event::kProtectionPage;
  const notifier::Range range{kBase + gpa, kBase + gpa + len, event, blockable, this};
  invalidations_.fetch_add(1, std::memory_order_relaxed);  // relaxed: statistics
  if (absl::Status s = hub_.InvalidateRangeStart(range); !s.ok()) {
    if (absl::IsUnavailable(s)) eagain_.fetch_add(1, std::memory_order_relaxed);
    return s;  // EAGAIN: the range stays untouched and end must not be called
  }
  Apply(gpa / kPageSize, (gpa + len) / kPageSize, kind);
  hub_.InvalidateRangeEnd(range);
  return absl::OkStatus();
}

void PagePoolSpace::Apply(uint64_t first, uint64_t end, Kind kind) {
  MutexLock lock(&mu_);
  for (uint64_t gfn = first; gfn < end; ++gfn) {
    PageState& state = table_[gfn];
    if (state.page == nullptr) {
      if (kind == Kind::kDiscard) state.saved.reset();
      continue;
    }
    switch (kind) {
      case Kind::kReclaim:
        if (!state.saved) state.saved = std::make_unique<uint64_t[]>(kWords);
        CopyPage(state.page, state.saved.get());
        FreePage(state.page);
        state.page = nullptr;
        swap_outs_.fetch_add(1, std::memory_order_relaxed);
        break;
      case Kind::kDiscard:
        FreePage(state.page);
        state.page = nullptr;
        state.saved.reset();
        discarded_.fetch_add(1, std::memory_order_relaxed);
        break;
      case Kind::kMigrate: {
        uint64_t* fresh = AllocPage();
        CopyPage(state.page, fresh);
        FreePage(state.page);
        state.page = fresh;
        migrated_.fetch_add(1, std::memory_order_relaxed);
        break;
      }
      case Kind::kProtect:
        state.write_protected = true;
        protected_.fetch_add(1, std::memory_order_relaxed);
        break;
    }
  }
}

absl::Status PagePoolSpace::Reclaim(uint64_t gpa, uint64_t len) {
  return Bracketed(gpa, len, Kind::kReclaim, /*blockable=*/true);
}
absl::Status PagePoolSpace::Discard(uint64_t gpa, uint64_t len) {
  return Bracketed(gpa, len, Kind::kDiscard, /*blockable=*/true);
}
absl::Status PagePoolSpace::Migrate(uint64_t gpa, uint64_t len) {
  return Bracketed(gpa, len, Kind::kMigrate, /*blockable=*/true);
}
absl::Status PagePoolSpace::Protect(uint64_t gpa, uint64_t len) {
  return Bracketed(gpa, len, Kind::kProtect, /*blockable=*/true);
}

absl::Status PagePoolSpace::OomReap(uint64_t gpa, uint64_t len) {
  absl::Status last;
  for (int attempt = 0; attempt < options_.reap_attempts; ++attempt) {
    last = Bracketed(gpa, len, Kind::kReclaim, /*blockable=*/false);
    if (!absl::IsUnavailable(last)) return last;
    absl::SleepFor(absl::Microseconds(20 << attempt));  // the OOM reaper's backoff
  }
  reap_skipped_.fetch_add(1, std::memory_order_relaxed);
  return last;
}

uint64_t* PagePoolSpace::ResidentPage(uint64_t gfn) {
  PageState& state = table_[gfn];
  if (state.page != nullptr) return state.page;
  state.page = AllocPage();
  if (state.saved) {
    vmm::dma::StoreWords(state.page, state.saved.get(), kWords);
    state.saved.reset();
    swap_ins_.fetch_add(1, std::memory_order_relaxed);
  } else {
    vmm::dma::StoreValue(state.page, 0, kWords);
    zero_fills_.fetch_add(1, std::memory_order_relaxed);
  }
  return state.page;
}

absl::StatusOr<mmu::PrimaryPage> PagePoolSpace::Resolve(uint64_t address, mmu::Access access) {
  if (address < kBase || address - kBase >= ram_size()) {
    return absl::NotFoundError(
        absl::StrCat("PagePoolSpace: nothing mapped at 0x", absl::Hex(address)));
  }
  const uint64_t gfn = (address - kBase) / kPageSize;
  MutexLock lock(&mu_);
  uint64_t* page = ResidentPage(gfn);
  PageState& state = table_[gfn];
  // A write fault on a write-protected page makes it writable again (dirty tracking):
  // raising permissions needs no invalidation.
  if (access == mmu::Access::kWrite) state.write_protected = false;
  return mmu::PrimaryPage{reinterpret_cast<uint64_t>(page), !state.write_protected};
}

absl::StatusOr<uint64_t> PagePoolSpace::ReadWordForTesting(uint64_t gpa) {
  if (gpa % 8 != 0 || gpa >= ram_size()) {
    return absl::InvalidArgumentError(absl::StrCat("bad gpa 0x", absl::Hex(gpa)));
  }
  MutexLock lock(&mu_);
  uint64_t value = 0;
  vmm::dma::LoadWords(ResidentPage(gpa / kPageSize) + (gpa % kPageSize) / 8, &value, 1);
  return value;
}

absl::Status PagePoolSpace::WriteWordForTesting(uint64_t gpa, uint64_t value) {
  if (gpa % 8 != 0 || gpa >= ram_size()) {
    return absl::InvalidArgumentError(absl::StrCat("bad gpa 0x", absl::Hex(gpa)));
  }
  MutexLock lock(&mu_);
  // A CPU store: it needs a writable page, as a write fault would make it.
  table_[gpa / kPageSize].write_protected = false;
  vmm::dma::StoreWords(ResidentPage(gpa / kPageSize) + (gpa % kPageSize) / 8, &value, 1);
  return absl::OkStatus();
}

PagePoolStats PagePoolSpace::stats() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  PagePoolStats s{get(invalidations_), get(eagain_),     get(reap_skipped_),
                  get(swap_outs_),     get(swap_ins_),   get(zero_fills_),
                  get(migrated_),      get(discarded_),  get(protected_)};
  MutexLock lock(&mu_);
  s.resident = resident_;
  return s;
}

}  // namespace mmuvisor::testing
