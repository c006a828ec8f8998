// HostAddressSpace: creation, teardown, the Primary side (Resolve), memslot views and
// dirty tracking. The operations that change mappings are one file each (reclaim.cc,
// migrate.cc, discard.cc, protect.cc, unmap.cc, oom_reap.cc), through host_window.h.
#include "vmm/host/host_address_space.h"

#include <linux/kvm.h>
#include <sys/mman.h>

#include <cerrno>
#include <utility>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"
#include "spdlog/spdlog.h"
#include "vmm/host/host_address_space_internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23  // Linux 5.14
#endif

namespace mmuvisor::vmm {

const char* PageProtectionName(PageProtection prot) {
  switch (prot) {
    case PageProtection::kReadWrite:
      return "read-write";
    case PageProtection::kReadOnly:
      return "read-only";
    case PageProtection::kNone:
      return "none";
  }
  return "?";
}

HostAddressSpace::HostAddressSpace(HostAddressSpaceOptions options)
    : options_(std::move(options)), counters_(std::make_unique<HostCounters>()) {}

absl::StatusOr<std::unique_ptr<HostAddressSpace>> HostAddressSpace::Create(
    HostAddressSpaceOptions options) {
  if (options.ram_bytes == 0 || !IsPageAligned(options.ram_bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "HostAddressSpace: RAM size %d is not a positive multiple of %d", options.ram_bytes,
        kPageSize));
  }
  std::unique_ptr<HostAddressSpace> space(new HostAddressSpace(std::move(options)));
  if (absl::Status s = space->Init(); !s.ok()) {
    space->Teardown();
    return s;
  }
  return space;
}

absl::Status HostAddressSpace::Init() {
  absl::StatusOr<std::unique_ptr<GuestRam>> ram =
      GuestRam::Create(options_.ram_bytes, options_.backing);
  if (!ram.ok()) return ram.status();
  ram_ = *std::move(ram);
  if (ram_->page_size() != kPageSize) {
    return absl::FailedPreconditionError(
        absl::StrFormat("HostAddressSpace: host page size %d, expected %d", ram_->page_size(),
                        kPageSize));
  }
  base_ = reinterpret_cast<uint64_t>(ram_->base());
  num_pages_ = ram_->num_pages();
  static_assert(static_cast<uint8_t>(PageProtection::kReadWrite) == 0,
                "a page's state starts zero: read-write, no write logged");
  absl::StatusOr<HostMapping> state = HostMapping::AnonymousZeroed(
      2 * num_pages_, absl::StrFormat("HostAddressSpace: page state of %d pages", num_pages_));
  if (!state.ok()) return state.status();
  page_state_ = *std::move(state);

  std::vector<RamSlot> ram_slots = options_.slots;
  if (ram_slots.empty()) ram_slots.push_back(RamSlot{0, Gpa{0}, 0, num_pages_, 0});
  std::vector<GuestMemorySlot> slots;
  for (const RamSlot& rs : ram_slots) {
    if (rs.num_pages == 0 || rs.first_page > num_pages_ ||
        rs.num_pages > num_pages_ - rs.first_page) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "HostAddressSpace: slot %d pages [%d, %d) outside guest RAM [0, %d)", rs.slot,
          rs.first_page, rs.first_page + rs.num_pages, num_pages_));
    }
    slots.push_back(GuestMemorySlot{rs.slot, rs.gpa, ByteSize{rs.num_pages * kPageSize},
                                    Hva{AddressOf(rs.first_page)}, rs.flags});
  }
  absl::StatusOr<MemslotTable> table = MemslotTable::Create(std::move(slots));
  if (!table.ok()) return table.status();
  {
    MutexLock lock(&mu_);
    memslots_ = std::make_shared<const MemslotTable>(*std::move(table));
  }

  absl::StatusOr<std::unique_ptr<SwapStore>> store =
      SwapStore::Create(num_pages_, kPageSize, options_.swap);
  if (!store.ok()) return store.status();
  store_ = *std::move(store);

  if (!options_.start_page_server_later) {
    MMUVISOR_RETURN_IF_ERROR(StartPageServer());
  }

  hub_ = std::make_unique<notifier::NotifierSubscriptions>(options_.hub);
  host_copies_ = std::make_unique<HostCopies>();
  MMUVISOR_RETURN_IF_ERROR(hub_->Register(*host_copies_));

  MemslotControl* control = options_.memslot_control;
  DirtyLog* log = options_.dirty_log;
  attach_later_ = options_.attach_hypervisor_later;
  options_.memslot_control = nullptr;
  options_.dirty_log = nullptr;
  return AttachHypervisor(control, log, options_.dirty_probe);
}

absl::Status HostAddressSpace::AttachHypervisor(MemslotControl* control, DirtyLog* log,
                                                GuestWriteProbe probe) {
  if (torn_down()) return absl::FailedPreconditionError("AttachHypervisor: torn down");
  if (options_.memslot_control != nullptr || options_.dirty_log != nullptr) {
    return absl::FailedPreconditionError("AttachHypervisor: a hypervisor is already attached");
  }
  if (log != nullptr) {
    // The dirty log needs KVM_MEM_LOG_DIRTY_PAGES on every slot before registration.
    MutexLock lock(&mu_);
    std::vector<GuestMemorySlot> slots = memslots_->slots();
    for (GuestMemorySlot& slot : slots) slot.flags |= KVM_MEM_LOG_DIRTY_PAGES;
    absl::StatusOr<MemslotTable> table = MemslotTable::Create(std::move(slots));
    if (!table.ok()) return table.status();
    memslots_ = std::make_shared<const MemslotTable>(*std::move(table));
  }
  if (control != nullptr) {
    for (const GuestMemorySlot& slot : memslots()->slots()) {
      MMUVISOR_RETURN_IF_ERROR(control->SetSlot(slot));
    }
  }
  options_.memslot_control = control;
  options_.dirty_log = log;
  options_.dirty_probe = std::move(probe);
  dirty_choice_ = ChooseDirtyTracking(log, *memslots(), options_.dirty_probe);
  // Logging at the edge (creation), never in the reclaim path. A space created without a
  // hypervisor that gets one attached later (Machine) logs once, at the attachment.
  if (control == nullptr && log == nullptr && attach_later_) return absl::OkStatus();
  spdlog::info("host address space: {} KiB {} RAM, {} memslot(s), dirty tracking: {} ({})",
               options_.ram_bytes >> 10, MemoryBackingName(options_.backing),
               memslots()->slots().size(), DirtyTrackingModeName(dirty_choice_.mode),
               dirty_choice_.reason);
  return absl::OkStatus();
}

void HostAddressSpace::DetachHypervisor() {
  MutexLock harvest(&harvest_mu_);  // as ChangeMemslots, which reads the control under it
  options_.memslot_control = nullptr;
  options_.dirty_log = nullptr;
  options_.dirty_probe = nullptr;
}

absl::Status HostAddressSpace::StartPageServer() {
  if (page_server_ != nullptr || torn_down() || ram_ == nullptr) {
    return absl::FailedPreconditionError(
        "HostAddressSpace::StartPageServer: already started or torn down");
  }
  PageServerOptions pso;
  pso.handler_threads = options_.page_server_threads;
  pso.fault_around_pages = options_.fault_around_pages;
  pso.fault_around_max_pages = options_.fault_around_max_pages;
  pso.spin_before_block_ns = options_.page_server_spin_ns;
  pso.handler_cpus = options_.page_server_cpus;
  // Fault-around never installs a page an open window covers: the window may be between
  // its save and its discard, or migrating the page. (A fault of the page itself is still
  // served, with the store's copy, as every recipe expects.) windows_ outlives the server.
  pso.fault_around_filter = [this](uint64_t first, uint64_t count) {
    return !windows_.Overlaps(PageRange{first, count});
  };
  pso.on_failure = options_.on_page_server_failure;
  pso.thread_name_prefix = "hostpg";
  absl::StatusOr<std::unique_ptr<PageServer>> server =
      PageServer::Start(PagedRange{ram_->base(), num_pages_, kPageSize}, store_.get(), pso);
  if (!server.ok()) return server.status();
  page_server_ = *std::move(server);
  return absl::OkStatus();
}

HostAddressSpace::~HostAddressSpace() { Teardown(); }

void HostAddressSpace::Teardown() {
  if (teardown_started_.exchange(true, std::memory_order_relaxed)) return;
  if (options_.stop_guests) options_.stop_guests();
  windows_.LockAll();  // every window closed; no new one opens
  {
    MutexLock lock(&teardown_mu_);  // waits for Resolves touching RAM
    // Pairs with the acquire loads in torn_down() and Resolve/operations.
    torn_down_.store(true, std::memory_order_release);
  }
  if (hub_ != nullptr) hub_->Release();  // Release once per subscription; none runs after
  if (page_server_ != nullptr) page_server_->Shutdown();
  if (options_.memslot_control != nullptr && ram_ != nullptr) {
    for (const GuestMemorySlot& slot : memslots()->slots()) {
      if (absl::Status s = options_.memslot_control->DeleteSlot(slot); !s.ok()) {
        spdlog::warn("host address space teardown: {}", s.ToString());
      }
    }
  }
  if (page_server_ != nullptr) {
    counters_->swapped_in_at_teardown.store(PagesFromStore(page_server_->Stats()),
                                            std::memory_order_relaxed);
  }
  page_server_.reset();
  store_.reset();
  ram_.reset();
  windows_.UnlockAll();
}

absl::StatusOr<mmu::PrimaryPage> HostAddressSpace::Resolve(uint64_t address,
                                                           mmu::Access access) {
  if (address < base_ || address >= base_ + num_pages_ * kPageSize ||
      (address & (kPageSize - 1)) != 0) {
    return absl::NotFoundError(
        absl::StrFormat("HostAddressSpace::Resolve: 0x%x is not a page of guest RAM", address));
  }
  const uint64_t page = (address - base_) / kPageSize;
  // Outside the teardown lock: Teardown holds every page while it waits for that lock.
  windows_.WaitUntilUnlocked(page);
  ReaderMutexLock lock(&teardown_mu_);
  if (torn_down_.load(std::memory_order_acquire)) {
    return absl::FailedPreconditionError("HostAddressSpace::Resolve: torn down");
  }
  if (!memslots()->Reverse(Hva{address}).has_value()) {
    return absl::NotFoundError(
        absl::StrFormat("HostAddressSpace::Resolve: 0x%x is in no memslot", address));
  }
  const PageProtection prot = protection(page);
  const bool write = access == mmu::Access::kWrite;
  if (prot == PageProtection::kNone || (write && prot != PageProtection::kReadWrite)) {
    return absl::PermissionDeniedError(absl::StrFormat(
        "HostAddressSpace::Resolve: %s of page %d (0x%x), protection %s",
        mmu::AccessName(access), page, address, PageProtectionName(prot)));
  }
  // Fault the page in from this thread, as get_user_pages would: a swapped-out page goes
  // through the page server. madvise reports a failed fault as an error instead of a
  // signal (the page server poisons pages it cannot serve).
  if (madvise(reinterpret_cast<void*>(address), kPageSize,
              write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) != 0) {
    const int err = errno;
    MMUVISOR_RETURN_IF_ERROR(PageServerFailure());
    // A window made the page read-only after our check (the kernel reports a write
    // populate of a read-only VMA as EFAULT or, since 6.x, EINVAL "incompatible
    // permissions"): the caller retries the whole fault. The user protection was checked
    // above, so a persistent refusal ends in the SecondaryMmu's retry timeout.
    if (err == EFAULT || err == EINVAL || err == EAGAIN || err == EINTR) {
      return absl::UnavailableError(absl::StrFormat(
          "HostAddressSpace::Resolve: %s of page %d raced with a window",
          mmu::AccessName(access), page));
    }
    return ErrnoToStatus(
        err, absl::StrFormat("HostAddressSpace::Resolve: madvise(MADV_POPULATE_%s) page %d",
                             write ? "WRITE" : "READ", page));
  }
  return mmu::PrimaryPage{address, prot == PageProtection::kReadWrite};
}

std::optional<uint64_t> HostAddressSpace::PageOf(Gpa gpa) const {
  std::optional<Hva> hva = memslots()->Translate(gpa, ByteSize{1});
  if (!hva.has_value()) return std::nullopt;
  return (hva->value - base_) / kPageSize;
}

void HostAddressSpace::NoteHostWrite(PageRange range) {
  if (store_ == nullptr || range.count == 0 || range.end() > num_pages_) return;
  store_->MarkDirty(range.first, range.count);
  for (uint64_t p = range.first; p < range.end(); ++p) {
    logged_write(p).store(1, std::memory_order_relaxed);
  }
  HostCounters::Add(counters_->host_writes_noted, range.count);
}

absl::Status HostAddressSpace::HarvestDirtyLog() {
  if (dirty_choice_.mode != DirtyTrackingMode::kDirtyLog || options_.dirty_log == nullptr) {
    return absl::OkStatus();
  }
  MutexLock harvest(&harvest_mu_);
  HostCounters::Add(counters_->dirty_harvests, 1);
  for (const GuestMemorySlot& slot : memslots()->slots()) {
    MMUVISOR_RETURN_IF_ERROR(HarvestSlot(slot));
  }
  return absl::OkStatus();
}

absl::Status HostAddressSpace::HarvestSlot(const GuestMemorySlot& slot) {
  if (dirty_choice_.mode != DirtyTrackingMode::kDirtyLog || options_.dirty_log == nullptr ||
      (slot.flags & KVM_MEM_LOG_DIRTY_PAGES) == 0) {
    return absl::OkStatus();
  }
  absl::StatusOr<std::vector<uint64_t>> bits = options_.dirty_log->Fetch(slot);
  if (!bits.ok()) return bits.status();
  const uint64_t first = (slot.hva.value - base_) / kPageSize;
  const uint64_t count = slot.size.value / kPageSize;
  for (uint64_t w = 0; w < bits->size(); ++w) {
    uint64_t word = (*bits)[w];
    while (word != 0) {
      const uint64_t i = w * 64 + static_cast<uint64_t>(__builtin_ctzll(word));
      word &= word - 1;
      if (i >= count) break;
      store_->MarkDirty(first + i, 1);
      logged_write(first + i).store(1, std::memory_order_relaxed);
      HostCounters::Add(counters_->dirty_pages_logged, 1);
    }
  }
  return absl::OkStatus();
}

bool HostAddressSpace::TestAndClearLoggedWrite(uint64_t page) {
  if (page >= num_pages_) return false;
  return logged_write(page).exchange(0, std::memory_order_relaxed) != 0;
}

absl::StatusOr<PageRange> HostAddressSpace::PagesOf(Gpa gpa, ByteSize len) const {
  if (!IsPageAligned(gpa.value) || !IsPageAligned(len.value) || len.value == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PagesOf: [0x%x, +0x%x) is not a non-empty page-aligned range", gpa.value, len.value));
  }
  std::optional<Hva> hva = memslots()->Translate(gpa, len);
  if (!hva.has_value()) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PagesOf: [0x%x, +0x%x) is not guest RAM contiguous on the host", gpa.value, len.value));
  }
  return PageRange{(hva->value - base_) / kPageSize, len.value / kPageSize};
}

std::shared_ptr<const MemslotTable> HostAddressSpace::memslots() const {
  MutexLock lock(&mu_);
  return memslots_;
}

std::vector<mmu::MemorySlot> HostAddressSpace::SecondaryLayout() const {
  return SecondaryLayoutOf(*memslots());
}

std::vector<mmu::MemorySlot> HostAddressSpace::SecondaryLayoutOf(const MemslotTable& table) {
  std::vector<mmu::MemorySlot> layout;
  for (const GuestMemorySlot& slot : table.slots()) {
    layout.push_back(mmu::MemorySlot{slot.gpa.value >> kPageShift,
                                     slot.size.value / kPageSize, slot.hva.value});
  }
  return layout;
}

int HostAddressSpace::AddMemslotObserver(MemslotObserver observer) {
  MutexLock lock(&mu_);
  const int id = next_observer_++;
  observers_.emplace_back(id, std::move(observer));
  return id;
}

void HostAddressSpace::RemoveMemslotObserver(int id) {
  MutexLock lock(&mu_);
  std::erase_if(observers_, [id](const auto& o) { return o.first == id; });
}

HostStats HostAddressSpace::stats() const {
  const HostCounters& c = *counters_;
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  HostStats s;
  s.reclaims = get(c.reclaims);
  s.reclaimed_pages = get(c.reclaimed_pages);
  s.written_back = get(c.written_back);
  s.skipped_clean = get(c.skipped_clean);
  s.skipped_not_resident = get(c.skipped_not_resident);
  s.save_failures = get(c.save_failures);
  s.discards = get(c.discards);
  s.discarded_pages = get(c.discarded_pages);
  s.migrates = get(c.migrates);
  s.migrated_pages = get(c.migrated_pages);
  s.migrate_failures = get(c.migrate_failures);
  s.protects = get(c.protects);
  s.unmaps = get(c.unmaps);
  s.memslot_adds = get(c.memslot_adds);
  s.memslot_moves = get(c.memslot_moves);
  s.oom_reaps = get(c.oom_reaps);
  s.oom_eagain_retries = get(c.oom_eagain_retries);
  s.oom_skipped = get(c.oom_skipped);
  s.dirty_harvests = get(c.dirty_harvests);
  s.dirty_pages_logged = get(c.dirty_pages_logged);
  s.host_writes_noted = get(c.host_writes_noted);
  s.host_copy_refusals = host_copies_ != nullptr ? host_copies_->drain().refusals() : 0;
  s.swapped_in = page_server_ != nullptr ? PagesFromStore(page_server_->Stats())
                                         : get(c.swapped_in_at_teardown);
  return s;
}

}  // namespace mmuvisor::vmm
