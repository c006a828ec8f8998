// FakeAddressSpace: the machinery.
#include "fake_address_space.h"

#include <atomic>
#include <cstdlib>

#include "absl/strings/str_cat.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::mmu::testing {

FakeAddressSpace::FakeAddressSpace(notifier::NotifierSubscriptions& hub, uint64_t npages)
    : hub_(hub), pages_(npages) {}

FakeAddressSpace::~FakeAddressSpace() {
  MutexLock lock(&mu_);
  for (void* page : pool_) std::free(page);
}

void FakeAddressSpace::ReadPage(uint64_t host_address, uint64_t* words) {
  auto* base = reinterpret_cast<uint64_t*>(host_address);
  for (size_t i = 0; i < kWords; ++i) {
    // relaxed: validated afterwards by the reader's seq check (AccessRetry).
    words[i] = std::atomic_ref<uint64_t>(base[i]).load(std::memory_order_relaxed);
  }
}

bool FakeAddressSpace::Intact(const uint64_t* words, uint64_t page, uint64_t* version) {
  const uint64_t first = words[0];
  if (first == kPoison || (first >> 32) != page || (first & 0xffffffffu) == 0) return false;
  for (size_t i = 1; i < kWords; ++i) {
    if (words[i] != first) return false;
  }
  *version = first & 0xffffffffu;
  return true;
}

uint64_t FakeAddressSpace::NewBackingLocked(uint64_t page, uint64_t version) {
  void* mem = std::aligned_alloc(kPageSize, kPageSize);
  pool_.push_back(mem);
  auto* words = static_cast<uint64_t*>(mem);
  for (size_t i = 0; i < kWords; ++i) {
    std::atomic_ref<uint64_t>(words[i]).store(Word(page, version), std::memory_order_relaxed);
  }
  return reinterpret_cast<uint64_t>(mem);
}

void FakeAddressSpace::PoisonLocked(uint64_t host) {
  auto* words = reinterpret_cast<uint64_t*>(host);
  for (size_t i = 0; i < kWords; ++i) {
    // relaxed: ordered after the start by the release fence in InvalidateState::Begin.
    std::atomic_ref<uint64_t>(words[i]).store(kPoison, std::memory_order_relaxed);
  }
}

absl::StatusOr<PrimaryPage> FakeAddressSpace::Resolve(uint64_t address, Access access) {
  MutexLock lock(&mu_);
  ++resolves_;
  const uint64_t page = (address - kBase) / kPageSize;
  if (torn_down_ || address < kBase || page >= pages_.size() || !pages_[page].mapped) {
    return absl::NotFoundError(absl::StrCat("FakeAddressSpace::Resolve address=0x",
                                            absl::Hex(address), ": nothing mapped"));
  }
  PageState& state = pages_[page];
  if (access == Access::kWrite && !state.writable) {
    return absl::PermissionDeniedError(absl::StrCat("FakeAddressSpace::Resolve address=0x",
                                                    absl::Hex(address), ": read-only"));
  }
  if (state.host == 0) state.host = NewBackingLocked(page, ++state.version);
  return PrimaryPage{state.host, state.writable};
}

absl::Status FakeAddressSpace::StartChange(uint64_t page, bool blockable) {
  absl::StatusOr<notifier::Range> range =
      notifier::Range::Make(Address(page), Address(page + 1), notifier::Event::kMigrate,
                            blockable);
  if (!range.ok()) return range.status();
  return hub_.InvalidateRangeStart(*range);
}

void FakeAddressSpace::SwapBacking(uint64_t page) {
  MutexLock lock(&mu_);
  PageState& state = pages_[page];
  if (state.host != 0) PoisonLocked(state.host);
  state.host = NewBackingLocked(page, ++state.version);
}

void FakeAddressSpace::EndChange(uint64_t page) {
  hub_.InvalidateRangeEnd(*notifier::Range::Make(Address(page), Address(page + 1),
                                                 notifier::Event::kMigrate));
}

absl::Status FakeAddressSpace::ChangeBacking(uint64_t page, bool blockable) {
  absl::StatusOr<notifier::Range> range =
      notifier::Range::Make(Address(page), Address(page + 1), notifier::Event::kMigrate,
                            blockable);
  if (!range.ok()) return range.status();
  absl::Status started = hub_.InvalidateRangeStart(*range);
  if (!started.ok()) return started;  // EAGAIN: leave the page alone, no end
  SwapBacking(page);
  hub_.InvalidateRangeEnd(*range);
  return absl::OkStatus();
}

absl::Status FakeAddressSpace::Unmap(uint64_t first, uint64_t count) {
  absl::StatusOr<notifier::Range> range = notifier::Range::Make(
      Address(first), Address(first + count), notifier::Event::kUnmap);
  if (!range.ok()) return range.status();
  absl::Status started = hub_.InvalidateRangeStart(*range);
  if (!started.ok()) return started;
  {
    MutexLock lock(&mu_);
    for (uint64_t page = first; page < first + count; ++page) {
      PageState& state = pages_[page];
      if (state.host != 0) PoisonLocked(state.host);
      state.host = 0;
      state.mapped = false;
    }
  }
  hub_.InvalidateRangeEnd(*range);
  return absl::OkStatus();
}

void FakeAddressSpace::Remap(uint64_t first, uint64_t count) {
  // A new mapping where nothing was mapped needs no invalidation (Linux: mmap).
  MutexLock lock(&mu_);
  for (uint64_t page = first; page < first + count; ++page) pages_[page].mapped = true;
}

void FakeAddressSpace::Teardown() {
  // Like exit_mmap: the address space stops resolving (mmget_not_zero fails) before the
  // secondaries are released, then the pages go.
  {
    MutexLock lock(&mu_);
    torn_down_ = true;
  }
  hub_.Release();
  MutexLock lock(&mu_);
  for (PageState& state : pages_) {
    if (state.host != 0) PoisonLocked(state.host);
    state.host = 0;
  }
}

void FakeAddressSpace::SetWritable(uint64_t page, bool writable) {
  MutexLock lock(&mu_);
  pages_[page].writable = writable;
}

uint64_t FakeAddressSpace::CurrentHost(uint64_t page) const {
  MutexLock lock(&mu_);
  return pages_[page].host;
}

uint64_t FakeAddressSpace::resolves() const {
  MutexLock lock(&mu_);
  return resolves_;
}

}  // namespace mmuvisor::mmu::testing
