#include "vmm/host/reclaim_driver.h"

#include <pthread.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/oom_reap.h"
#include "vmm/host/reclaim.h"

namespace mmuvisor::vmm {

absl::Status ValidateReclaimDriverOptions(const ReclaimDriverOptions& options) {
  // Written so that NaN fails too.
  if (!(options.target_resident_fraction >= 0.0 && options.target_resident_fraction <= 1.0)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ReclaimDriverOptions: target_resident_fraction %g is not in [0, 1]",
        options.target_resident_fraction));
  }
  if (options.period <= absl::ZeroDuration() || options.period == absl::InfiniteDuration()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "ReclaimDriverOptions: period ", absl::FormatDuration(options.period),
        " is not positive and finite"));
  }
  if (options.max_pages_per_second == 0 || options.max_batch_pages == 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "ReclaimDriverOptions: max_pages_per_second %d and max_batch_pages %d must be "
        "positive",
        options.max_pages_per_second, options.max_batch_pages));
  }
  return absl::OkStatus();
}

ReclaimDriver::ReclaimDriver(HostAddressSpace& space, const ReclaimDriverOptions& options)
    : space_(space), options_(options), clock_(space.num_pages()) {}

ReclaimDriver::~ReclaimDriver() { Stop(); }

absl::Status ReclaimDriver::Start() {
  MMUVISOR_RETURN_IF_ERROR(ValidateReclaimDriverOptions(options_));
  // Assigning to a joinable std::thread would std::terminate the process.
  if (thread_.joinable()) {
    return absl::FailedPreconditionError("ReclaimDriver::Start: already running");
  }
  {
    MutexLock lock(&mu_);
    stop_ = false;
  }
  thread_ = std::thread([this] { Loop(); });
  return absl::OkStatus();
}

void ReclaimDriver::Stop() {
  {
    MutexLock lock(&mu_);
    stop_ = true;
    wake_.notify_all();
  }
  if (thread_.joinable()) thread_.join();
}

void ReclaimDriver::Loop() {
  pthread_setname_np(pthread_self(), "reclaimd");
  for (;;) {
    {
      MutexLock lock(&mu_);
      mu_.AwaitFor(wake_, options_.period, [&]() ABSL_NO_THREAD_SAFETY_ANALYSIS { return stop_; });
      if (stop_) return;
    }
    absl::StatusOr<uint64_t> r = RunOnce();
    if (!r.ok()) {
      MutexLock lock(&mu_);
      last_error_ = r.status();
    }
  }
}

absl::StatusOr<uint64_t> ReclaimDriver::RunOnce() {
  passes_.fetch_add(1, std::memory_order_relaxed);
  auto fail = [&](absl::Status s) -> absl::Status {
    errors_.fetch_add(1, std::memory_order_relaxed);
    return s;
  };
  if (absl::Status valid = ValidateReclaimDriverOptions(options_); !valid.ok()) {
    return fail(valid);
  }
  PageServer* server = space_.page_server();
  if (server == nullptr) return fail(absl::FailedPreconditionError("reclaim driver: torn down"));
  const uint64_t n = space_.num_pages();
  absl::StatusOr<std::vector<uint8_t>> resident = server->Residency(0, n);
  if (!resident.ok()) return fail(resident.status());
  const uint64_t resident_count =
      static_cast<uint64_t>(std::count(resident->begin(), resident->end(), uint8_t{1}));
  const auto target = static_cast<uint64_t>(
      std::floor(options_.target_resident_fraction * static_cast<double>(n)));
  if (resident_count <= target) return 0;
  // Capped in double before the conversion: a rate times a period of 2^64 pages or more
  // (or a max_batch_pages near 2^64, which rounds up to it) would make the cast undefined.
  const double budget = std::min({static_cast<double>(options_.max_pages_per_second) *
                                      absl::ToDoubleSeconds(options_.period),
                                  static_cast<double>(options_.max_batch_pages), 0x1p63});
  const uint64_t want = std::min({resident_count - target, options_.max_batch_pages,
                                  std::max<uint64_t>(static_cast<uint64_t>(budget), 1)});
  if (absl::Status s = space_.HarvestDirtyLog(); !s.ok()) return fail(s);

  const uint64_t chances_before = clock_.second_chances();
  std::vector<uint64_t> victims = clock_.PickVictims(want, *resident, [&](uint64_t page) {
    const uint64_t address = space_.AddressOf(page);
    const bool young = space_.hub().ClearYoung(address, address + kPageSize);
    return space_.TestAndClearLoggedWrite(page) || young;
  });
  second_chances_.fetch_add(clock_.second_chances() - chances_before,
                            std::memory_order_relaxed);
  std::sort(victims.begin(), victims.end());

  // Counted per range, as written_back_ is: a range that fails later in the pass must not
  // take the pages earlier ranges took out off the count (their write-backs stay on it).
  uint64_t reclaimed = 0;
  size_t i = 0;
  while (i < victims.size()) {
    size_t j = i + 1;
    while (j < victims.size() && victims[j] == victims[j - 1] + 1) ++j;
    const PageRange range{victims[i], j - i};
    if (options_.non_blocking) {
      absl::StatusOr<OomReapResult> r = OomReap(space_, range);
      if (!r.ok()) return fail(r.status());
      eagain_retries_.fetch_add(r->eagain_retries, std::memory_order_relaxed);
      if (!r->reaped) skipped_.fetch_add(range.count, std::memory_order_relaxed);
      reclaimed += r->reclaim.reclaimed;
      reclaimed_.fetch_add(r->reclaim.reclaimed, std::memory_order_relaxed);
      written_back_.fetch_add(r->reclaim.written_back, std::memory_order_relaxed);
      skipped_.fetch_add(r->reclaim.save_failures, std::memory_order_relaxed);
    } else {
      absl::StatusOr<ReclaimResult> r = Reclaim(space_, range);
      if (!r.ok()) return fail(r.status());
      reclaimed += r->reclaimed;
      reclaimed_.fetch_add(r->reclaimed, std::memory_order_relaxed);
      written_back_.fetch_add(r->written_back, std::memory_order_relaxed);
      skipped_.fetch_add(r->save_failures, std::memory_order_relaxed);
    }
    i = j;
  }
  return reclaimed;
}

ReclaimDriverStats ReclaimDriver::stats() const {
  auto get = [](const std::atomic<uint64_t>& a) { return a.load(std::memory_order_relaxed); };
  ReclaimDriverStats s;
  s.passes = get(passes_);
  s.reclaimed = get(reclaimed_);
  s.written_back = get(written_back_);
  s.skipped = get(skipped_);
  s.eagain_retries = get(eagain_retries_);
  s.second_chances = get(second_chances_);
  s.errors = get(errors_);
  if (PageServer* server = space_.page_server(); server != nullptr) {
    s.swapped_in = PagesFromStore(server->Stats());
  }
  return s;
}

absl::Status ReclaimDriver::last_error() const {
  MutexLock lock(&mu_);
  return last_error_;
}

}  // namespace mmuvisor::vmm
