#include "vmm/paging/swap_store.h"

#include <fcntl.h>
#include <linux/falloc.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "vmm/paging/crc32c.h"

namespace mmuvisor::vmm {
namespace {

// Opens an anonymous file in `dir`: O_TMPFILE, or mkstemp + unlink where the filesystem
// lacks O_TMPFILE (EOPNOTSUPP/EISDIR).
absl::StatusOr<int> OpenAnonymousFile(const std::string& dir) {
  int fd = open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd >= 0) return fd;
  if (errno != EOPNOTSUPP && errno != EISDIR) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("SwapStore: open(O_TMPFILE) in ", dir));
  }
  std::string path = absl::StrCat(dir, "/mmuvisor-swap-XXXXXX");
  fd = mkostemp(path.data(), O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrCat("SwapStore: mkostemp ", path));
  }
  unlink(path.c_str());
  return fd;
}

const char* ErrnoName(int e) {
  switch (e) {
    case ENOSPC:
      return "ENOSPC";
    case EIO:
      return "EIO";
    case EDQUOT:
      return "EDQUOT";
    case EFBIG:
      return "EFBIG";
    case EINTR:
      return "EINTR";
    default:
      return "errno";
  }
}

enum class IoKind { kWrite, kRead };

// Store I/O errors, coded by what the caller can do: ENOSPC/EDQUOT -> ResourceExhausted
// (free space); EIO on a write -> Unavailable (the page stays resident; a later reclaim may
// retry); EIO on a read -> DataLoss (the only copy of the page cannot be read); anything
// else as ErrnoToStatus (notifier/base/errno_status.h) maps it.
absl::Status StoreIoError(int e, IoKind kind, const std::string& message) {
  const std::string full = absl::StrCat(message, ": ", ErrnoText(e));
  switch (e) {
    case ENOSPC:
    case EDQUOT:
      return absl::ResourceExhaustedError(full);
    case EIO:
      return kind == IoKind::kWrite ? absl::UnavailableError(full) : absl::DataLossError(full);
    default:
      return ErrnoToStatus(e, message);
  }
}

}  // namespace

absl::StatusOr<std::unique_ptr<SwapStore>> SwapStore::Create(uint64_t num_pages, size_t page_size,
                                                             const SwapStoreOptions& options) {
  if (num_pages == 0 || page_size == 0 || (page_size & (page_size - 1)) != 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("SwapStore: num_pages=%d page_size=%d (need > 0 and a power of two)",
                        num_pages, page_size));
  }
  // The file (num_pages * page_size bytes, an off_t) and the tables (TablesBytes) must be
  // sizes this process can express.
  const uint64_t max_pages =
      std::min<uint64_t>(static_cast<uint64_t>(std::numeric_limits<off_t>::max()) / page_size,
                         std::numeric_limits<size_t>::max() / kTableBytesPerPage);
  if (num_pages > max_pages) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "SwapStore: num_pages=%d of %d bytes is more than a file or its tables can hold "
        "(at most %d pages)",
        num_pages, page_size, max_pages));
  }
  std::string dir = options.directory;
  if (dir.empty()) {
    const char* tmp = std::getenv("TMPDIR");
    dir = (tmp != nullptr && *tmp != '\0') ? tmp : "/tmp";
  }
  absl::StatusOr<int> fd = OpenAnonymousFile(dir);
  if (!fd.ok()) return fd.status();
  const uint64_t bytes = num_pages * page_size;
  if (ftruncate(*fd, static_cast<off_t>(bytes)) != 0) {
    const int e = errno;
    close(*fd);
    return ErrnoToStatus(
        e, absl::StrFormat("SwapStore: ftruncate to %d bytes in %s", bytes, dir));
  }
  // The tables in fresh anonymous memory (a value-initialised vector, or calloc from the
  // heap, wrote all 80 KiB of a 64 MiB guest's at every start: 20 page faults before the
  // guest ran).
  absl::StatusOr<HostMapping> tables = HostMapping::AnonymousZeroed(
      TablesBytes(num_pages), absl::StrFormat("SwapStore: the tables of %d pages", num_pages));
  if (!tables.ok()) {
    close(*fd);
    return tables.status();
  }
  return std::unique_ptr<SwapStore>(
      new SwapStore(*fd, num_pages, page_size, *std::move(tables), options.test_save_waits));
}

size_t SwapStore::TablesBytes(uint64_t num_pages) { return num_pages * kTableBytesPerPage; }

SwapStore::SwapStore(int fd, uint64_t num_pages, size_t page_size, HostMapping tables,
                     std::function<void(uint64_t page)> test_save_waits)
    : fd_(fd),
      num_pages_(num_pages),
      page_size_(page_size),
      tables_(std::move(tables)),
      crc_(reinterpret_cast<uint32_t*>(tables_.data())),
      flags_(tables_.data() + num_pages * sizeof(uint32_t)),
      test_save_waits_(std::move(test_save_waits)) {}

SwapStore::~SwapStore() { close(fd_); }

int SwapStore::NextInjectedError(Injector& injector, bool* partial) {
  const IoFaultInjection& c = injector.config;
  if (c.fail_nth == 0 && c.probability <= 0.0) return 0;
  ++injector.ops;
  bool fail = c.fail_nth != 0 && injector.ops == c.fail_nth;
  if (!fail && c.probability > 0.0) {
    // xorshift64*: deterministic for a given seed.
    injector.rng ^= injector.rng >> 12;
    injector.rng ^= injector.rng << 25;
    injector.rng ^= injector.rng >> 27;
    const uint64_t r = injector.rng * 0x2545F4914F6CDD1Dull;
    fail = static_cast<double>(r >> 11) * 0x1.0p-53 < c.probability;
  }
  if (!fail) return 0;
  *partial = c.partial;
  return c.error;
}

int SwapStore::InjectedWriteError(bool* partial) {
  MutexLock lock(&inject_mu_);
  return NextInjectedError(write_inject_, partial);
}

int SwapStore::InjectedReadError(bool* partial) {
  MutexLock lock(&inject_mu_);
  return NextInjectedError(read_inject_, partial);
}

void SwapStore::SetWriteFaultInjection(const IoFaultInjection& injection) {
  MutexLock lock(&inject_mu_);
  write_inject_ = Injector{injection, 0, injection.seed | 1};
}

void SwapStore::SetReadFaultInjection(const IoFaultInjection& injection) {
  MutexLock lock(&inject_mu_);
  read_inject_ = Injector{injection, 0, injection.seed | 1};
}

void SwapStore::ClearFaultInjection() {
  MutexLock lock(&inject_mu_);
  write_inject_ = Injector{};
  read_inject_ = Injector{};
}

absl::Status SwapStore::Save(uint64_t page, const void* data) {
  if (page >= num_pages_) {
    return absl::OutOfRangeError(
        absl::StrFormat("SwapStore::Save page %d >= %d", page, num_pages_));
  }
  // Snapshot first, outside the lock: the checksum and the file then describe the same bytes
  // even if the caller broke the REQUIRES, and if `data` is a non-resident guest page its
  // fault is served before we hold the stripe the page server needs.
  thread_local std::vector<uint8_t> snapshot;
  snapshot.resize(page_size_);
  std::memcpy(snapshot.data(), data, page_size_);
  data = snapshot.data();
  const uint32_t crc = Crc32c(data, page_size_);
  const off_t offset = static_cast<off_t>(page * page_size_);
  if (test_save_waits_) {
    // Tests only: report a Save that will wait below for a load installing the page (or
    // another writer). The probe hold is dropped at once; production never probes.
    if (StripeOf(page).TryLock()) {
      StripeOf(page).Unlock();
    } else {
      test_save_waits_(page);
    }
  }
  MutexLock lock(&StripeOf(page));
  // Not-saved before the first byte hits the file: a failure below leaves no valid-looking
  // slot. Release pairs with the acquire in IsSaved().
  flag(page).store(0, std::memory_order_release);

  bool partial = false;
  const int injected = InjectedWriteError(&partial);
  size_t done = 0;
  const size_t limit = injected != 0 ? (partial ? page_size_ / 2 : 0) : page_size_;
  while (done < limit) {
    const ssize_t n = pwrite(fd_, static_cast<const uint8_t*>(data) + done, limit - done,
                             offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;
      save_failures_.fetch_add(1, std::memory_order_relaxed);
      return StoreIoError(e, IoKind::kWrite,
                          absl::StrFormat("SwapStore::Save page %d: pwrite offset 0x%x (%d of %d "
                                          "bytes written) %s",
                                          page, offset, done, page_size_, ErrnoName(e)));
    }
    done += static_cast<size_t>(n);
  }
  bytes_written_.fetch_add(done, std::memory_order_relaxed);
  if (injected != 0) {
    save_failures_.fetch_add(1, std::memory_order_relaxed);
    return StoreIoError(injected, IoKind::kWrite,
                        absl::StrFormat("SwapStore::Save page %d: pwrite offset 0x%x (%d of %d "
                                        "bytes written) %s [injected]",
                                        page, offset, done, page_size_, ErrnoName(injected)));
  }
  crc_[page] = crc;
  flag(page).store(kSaved | kClean, std::memory_order_release);  // pairs with IsSaved()
  saves_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status SwapStore::ReadVerifiedLocked(uint64_t page, void* out) {
  if ((flag(page).load(std::memory_order_relaxed) & kSaved) == 0) {
    return absl::NotFoundError(absl::StrFormat("SwapStore: page %d is not saved", page));
  }
  const off_t offset = static_cast<off_t>(page * page_size_);
  bool partial = false;
  const int injected = InjectedReadError(&partial);
  const size_t limit = injected != 0 ? (partial ? page_size_ / 2 : 0) : page_size_;
  size_t done = 0;
  while (done < limit) {
    const ssize_t n = pread(fd_, static_cast<uint8_t*>(out) + done, limit - done,
                            offset + static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      const int e = n < 0 ? errno : EIO;  // EOF inside the file's size: treat as I/O error
      load_failures_.fetch_add(1, std::memory_order_relaxed);
      return StoreIoError(e, IoKind::kRead,
                          absl::StrFormat("SwapStore: load page %d: pread offset 0x%x (%d of %d "
                                          "bytes read) %s",
                                          page, offset, done, page_size_, ErrnoName(e)));
    }
    done += static_cast<size_t>(n);
  }
  bytes_read_.fetch_add(done, std::memory_order_relaxed);
  if (injected != 0) {
    load_failures_.fetch_add(1, std::memory_order_relaxed);
    return StoreIoError(injected, IoKind::kRead,
                        absl::StrFormat("SwapStore: load page %d: pread offset 0x%x (%d of %d "
                                        "bytes read) %s [injected]",
                                        page, offset, done, page_size_, ErrnoName(injected)));
  }
  const uint32_t actual = Crc32c(out, page_size_);
  if (actual != crc_[page]) {
    checksum_failures_.fetch_add(1, std::memory_order_relaxed);
    return absl::DataLossError(absl::StrFormat(
        "SwapStore: page %d (file offset 0x%x) checksum mismatch: stored crc32c 0x%08x, read "
        "0x%08x",
        page, offset, crc_[page], actual));
  }
  loads_.fetch_add(1, std::memory_order_relaxed);
  return absl::OkStatus();
}

absl::Status SwapStore::Load(uint64_t page, void* out) {
  if (page >= num_pages_) {
    return absl::OutOfRangeError(
        absl::StrFormat("SwapStore::Load page %d >= %d", page, num_pages_));
  }
  ReaderMutexLock lock(&StripeOf(page));
  return ReadVerifiedLocked(page, out);
}

absl::Status SwapStore::LoadInto(uint64_t page, void* scratch,
                                 absl::FunctionRef<absl::Status(const void* data)> install) {
  if (page >= num_pages_) {
    return absl::OutOfRangeError(
        absl::StrFormat("SwapStore::LoadInto page %d >= %d", page, num_pages_));
  }
  ReaderMutexLock lock(&StripeOf(page));
  if ((flag(page).load(std::memory_order_relaxed) & kSaved) == 0) return install(nullptr);
  absl::Status s = ReadVerifiedLocked(page, scratch);
  if (!s.ok()) return s;
  return install(scratch);
}

absl::Status SwapStore::ReadRunVerifiedLocked(uint64_t first, uint64_t count, uint8_t* out,
                                              uint64_t* verified) {
  *verified = 0;
  // The saved prefix of the run, cut at the first page that is not saved or whose read
  // injection fires: that page's status is what the run returns.
  uint64_t n = 0;
  absl::Status cut;
  for (; n < count; ++n) {
    const uint64_t page = first + n;
    if ((flag(page).load(std::memory_order_relaxed) & kSaved) == 0) {
      cut = absl::NotFoundError(absl::StrFormat("SwapStore: page %d is not saved", page));
      break;
    }
    bool partial = false;
    if (const int injected = InjectedReadError(&partial); injected != 0) {
      load_failures_.fetch_add(1, std::memory_order_relaxed);
      cut = StoreIoError(injected, IoKind::kRead,
                         absl::StrFormat("SwapStore: load page %d: pread offset 0x%x %s [injected]",
                                         page, page * page_size_, ErrnoName(injected)));
      break;
    }
  }
  const off_t offset = static_cast<off_t>(first * page_size_);
  const size_t bytes = n * page_size_;
  size_t done = 0;
  while (done < bytes) {
    const ssize_t r = pread(fd_, out + done, bytes - done, offset + static_cast<off_t>(done));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      const int e = r < 0 ? errno : EIO;
      load_failures_.fetch_add(1, std::memory_order_relaxed);
      const uint64_t bad = first + done / page_size_;
      n = done / page_size_;  // whole pages read before the error are still good
      cut = StoreIoError(
          e, IoKind::kRead,
          absl::StrFormat("SwapStore: load page %d: pread offset 0x%x (run of %d pages from %d) %s",
                          bad, bad * page_size_, count, first, ErrnoName(e)));
      break;
    }
    done += static_cast<size_t>(r);
  }
  bytes_read_.fetch_add(done, std::memory_order_relaxed);
  for (uint64_t i = 0; i < n; ++i) {
    const uint64_t page = first + i;
    const uint32_t actual = Crc32c(out + i * page_size_, page_size_);
    if (actual != crc_[page]) {
      checksum_failures_.fetch_add(1, std::memory_order_relaxed);
      *verified = i;
      loads_.fetch_add(i, std::memory_order_relaxed);
      return absl::DataLossError(
          absl::StrFormat("SwapStore: page %d (file offset 0x%x) checksum mismatch: stored crc32c "
                          "0x%08x, read 0x%08x",
                          page, page * page_size_, crc_[page], actual));
    }
  }
  *verified = n;
  loads_.fetch_add(n, std::memory_order_relaxed);
  return cut;
}

absl::Status SwapStore::LoadRunInto(
    uint64_t first, uint64_t count, void* scratch,
    absl::FunctionRef<absl::Status(const void* data, uint64_t pages)> install,
    uint64_t* verified) ABSL_NO_THREAD_SAFETY_ANALYSIS {
  static_assert(kMaxRunPages <= kStripes, "a run must take distinct stripes");
  *verified = 0;
  if (count == 0 || count > kMaxRunPages || first >= num_pages_ || count > num_pages_ - first) {
    return absl::OutOfRangeError(
        absl::StrFormat("SwapStore::LoadRunInto pages [%d, %d): outside [0, %d) or more than %d",
                        first, first + count, num_pages_, kMaxRunPages));
  }
  // Distinct stripes (count <= kStripes consecutive pages), taken in ascending stripe index:
  // the run wraps at most once, so that is [0, wrap) then [first % kStripes, kStripes).
  const size_t lo = first % kStripes;
  const size_t wrap = lo + count > kStripes ? lo + count - kStripes : 0;
  for (size_t s = 0; s < wrap; ++s) stripes_[s].ReaderLock();
  for (size_t s = lo; s < lo + count - wrap; ++s) stripes_[s].ReaderLock();
  uint64_t n = 0;
  absl::Status status = ReadRunVerifiedLocked(first, count, static_cast<uint8_t*>(scratch), &n);
  *verified = n;
  if (n > 0) {
    if (absl::Status s = install(scratch, n); !s.ok()) status = s;
  }
  for (size_t s = lo; s < lo + count - wrap; ++s) stripes_[s].ReaderUnlock();
  for (size_t s = 0; s < wrap; ++s) stripes_[s].ReaderUnlock();
  return status;
}

absl::Status SwapStore::Drop(uint64_t first, uint64_t count) {
  if (first > num_pages_ || count > num_pages_ - first) {
    return absl::OutOfRangeError(absl::StrFormat("SwapStore::Drop pages [%d, %d) outside [0, %d)",
                                                 first, first + count, num_pages_));
  }
  for (uint64_t p = first; p < first + count; ++p) {
    MutexLock lock(&StripeOf(p));
    if ((flag(p).load(std::memory_order_relaxed) & kSaved) != 0) {
      drops_.fetch_add(1, std::memory_order_relaxed);
    }
    flag(p).store(0, std::memory_order_release);  // pairs with IsSaved()
  }
  if (count == 0) return absl::OkStatus();
  // Space only: the slots are already forgotten, so a failure here loses nothing.
  if (fallocate(fd_, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE,
                static_cast<off_t>(first * page_size_),
                static_cast<off_t>(count * page_size_)) != 0 &&
      errno != EOPNOTSUPP) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(
        err, absl::StrFormat("SwapStore::Drop punch pages [%d, %d)", first, first + count));
  }
  return absl::OkStatus();
}

void SwapStore::MarkDirty(uint64_t first, uint64_t count) {
  const uint64_t end = first + count < num_pages_ ? first + count : num_pages_;
  for (uint64_t p = first; p < end; ++p) {
    flag(p).fetch_and(static_cast<uint8_t>(~kClean), std::memory_order_release);
  }
}

bool SwapStore::IsSaved(uint64_t page) const {
  return page < num_pages_ && (flag(page).load(std::memory_order_acquire) & kSaved) != 0;
}

bool SwapStore::IsSavedClean(uint64_t page) const {
  return page < num_pages_ && flag(page).load(std::memory_order_acquire) == (kSaved | kClean);
}

uint64_t SwapStore::SavedPageCount() const {
  uint64_t n = 0;
  for (uint64_t p = 0; p < num_pages_; ++p) {
    n += (flag(p).load(std::memory_order_relaxed) & kSaved) != 0;
  }
  return n;
}

SwapStoreStats SwapStore::Stats() const {
  SwapStoreStats s;
  s.saves = saves_.load(std::memory_order_relaxed);
  s.save_failures = save_failures_.load(std::memory_order_relaxed);
  s.loads = loads_.load(std::memory_order_relaxed);
  s.load_failures = load_failures_.load(std::memory_order_relaxed);
  s.checksum_failures = checksum_failures_.load(std::memory_order_relaxed);
  s.drops = drops_.load(std::memory_order_relaxed);
  s.bytes_written = bytes_written_.load(std::memory_order_relaxed);
  s.bytes_read = bytes_read_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace mmuvisor::vmm
