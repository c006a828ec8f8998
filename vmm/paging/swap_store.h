// SwapStore: a file-backed store of guest pages, one fixed slot per guest page.
//
// The backing file is sparse (ftruncate to num_pages * page_size) and anonymous: created
// with O_TMPFILE in the chosen directory (or mkstemp + unlink where O_TMPFILE is not
// supported), so nothing is left on disk when the store is destroyed or the process dies.
// Slot p lives at file offset p * page_size. Each saved slot carries a CRC32C of its
// contents, kept in memory and verified on every load: a mismatch is DataLoss naming the page.
//
// Per-page state (atomic flags, written only under the page's stripe lock):
//   saved  the slot holds a complete, checksummed copy of the page;
//   clean  the guest page is known to equal that copy (set by Save, cleared by MarkDirty;
//          swap-in does not clear it: the copy it installs is the saved one).
// Reclaim skips the write for a page that IsSavedClean(); a page that is not saved must be
// kept resident, because the store has nothing to bring back.
//
// Invariants:
//  - Save() first clears `saved`, then writes, then records the checksum and sets
//    saved|clean. A failed or short write (ENOSPC, EIO, injected) therefore leaves the slot
//    not-saved: nothing half-recorded; the caller keeps the page resident.
//  - A slot is never saved, rewritten or dropped while LoadInto() is installing it (its copy,
//    or the zero page of a page that is not saved): Save, Drop and LoadInto serialize on a
//    per-page stripe lock (writer for Save/Drop, reader for loads).
//
// Locks: stripes_[p % kStripes] guards crc_[p] and the writes of flags_[p]; the file itself
// needs no lock (pread/pwrite at fixed offsets). inject_mu_ guards fault-injection state.
// Lock order: stripe -> inject_mu_; LoadRunInto() takes several stripes as reader, in
// ascending stripe index (Save/Drop hold one stripe at a time). LoadInto() calls `install` with the stripe reader lock
// held: install must not call back into Save/Drop for the same page.
//
// Threads: every method may be called from any thread.
#ifndef MMUVISOR_VMM_PAGING_SWAP_STORE_H_
#define MMUVISOR_VMM_PAGING_SWAP_STORE_H_

#include <array>
#include <atomic>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/host_mapping.h"
#include "notifier/base/mutex.h"

namespace mmuvisor::vmm {

struct SwapStoreOptions {
  // Directory for the backing file; empty means $TMPDIR, else /tmp.
  std::string directory;
  // For tests that force a schedule: called by Save(page) when it finds the page's slot
  // held (a load installing the page, LoadInto/LoadRunInto, or another Save/Drop), right
  // before it waits for it, with no lock of the store held. Only called when the slot was
  // found held, so a Save that never waits never reports it. Must only signal (never call
  // into the store). Empty: nothing is called and Save does not probe the slot.
  std::function<void(uint64_t page)> test_save_waits;
};

// Makes store I/O fail on purpose (tests). A write or read fails when it is the Nth of its
// kind since the injection was set (fail_nth, 1-based; 0 = off), or with `probability`.
// `partial` first transfers half a page, then fails: the slot is torn on disk, which must
// not matter (the slot is not-saved) or must be caught by the checksum (reads).
struct IoFaultInjection {
  uint64_t fail_nth = 0;
  double probability = 0.0;
  int error = EIO;
  bool partial = false;
  uint64_t seed = 0x9E3779B97F4A7C15ull;
};

struct SwapStoreStats {
  uint64_t saves = 0;          // successful Save()
  uint64_t save_failures = 0;  // Save() that returned an error
  uint64_t loads = 0;          // successful loads (checksum verified)
  uint64_t load_failures = 0;  // I/O errors on load
  uint64_t checksum_failures = 0;
  uint64_t drops = 0;  // pages dropped while saved
  uint64_t bytes_written = 0;
  uint64_t bytes_read = 0;
};

class SwapStore {
 public:
  // REQUIRES: num_pages > 0, page_size a power of two.
  static absl::StatusOr<std::unique_ptr<SwapStore>> Create(uint64_t num_pages, size_t page_size,
                                                           const SwapStoreOptions& options = {});
  ~SwapStore();
  SwapStore(const SwapStore&) = delete;
  SwapStore& operator=(const SwapStore&) = delete;

  uint64_t num_pages() const { return num_pages_; }
  size_t page_size() const { return page_size_; }
  // The backing file, for diagnostics and for tests that corrupt it on purpose.
  int file_descriptor() const { return fd_; }

  // Saves page_size bytes from `data` as page `page`. On success the page is saved and clean.
  // Errors: OutOfRange (bad page); ENOSPC/EDQUOT -> ResourceExhausted, EIO -> Unavailable,
  // other errnos as ErrnoToStatus (notifier/base/errno_status.h),
  // with the page and offset in the message. On error the page is NOT saved.
  // REQUIRES: the caller holds the guest off the page (hub invalidation window) so `data`
  // is the page's settled contents. `data` is copied once before anything else, so the
  // checksum always matches what is written. Saving a non-resident guest page faults it in
  // first (through the page server): save resident pages only (PageServer::Residency).
  absl::Status Save(uint64_t page, const void* data) ABSL_LOCKS_EXCLUDED(inject_mu_);

  // Reads page `page` into `out` (page_size bytes) and verifies its checksum.
  // Errors: NotFound (page not saved), DataLoss (checksum mismatch: names the page, the
  // stored and the computed checksum), EIO -> DataLoss, other pread errnos, OutOfRange.
  absl::Status Load(uint64_t page, void* out) ABSL_LOCKS_EXCLUDED(inject_mu_);

  // Under the page's stripe (reader), so that the slot cannot be saved, rewritten or dropped
  // meanwhile: when the page is saved, Load() into `scratch` and install(scratch); when it
  // is not, install(nullptr) (the caller installs a zero page). Returns install's status, or
  // the load's error (install not called). This closes the races "fault reads the old copy
  // / Drop + discard / fault installs the old copy over the discarded page" and "fault sees
  // the page unsaved / another fault populates it, the guest writes it, reclaim saves and
  // discards it / fault installs zeros over the saved data": a Save that completed first is
  // seen; one that comes later waits until install has returned, and by then the page is
  // resident or zero, whichever it read as when the guest last had it.
  absl::Status LoadInto(uint64_t page, void* scratch,
                        absl::FunctionRef<absl::Status(const void* data)> install)
      ABSL_LOCKS_EXCLUDED(inject_mu_);

  // The batched LoadInto of a run of pages (fault-around): holds every slot of
  // [first, first + count) against Save/Drop, reads the run with one pread into `scratch`
  // (count * page_size bytes), verifies each page's checksum in order, and calls
  // install(scratch, n) once with the verified prefix of n pages (not at all when n == 0),
  // still holding the slots. *verified = n. Returns install's status when it fails, else
  // the status of page first + n (OK when n == count): NotFound (not saved), DataLoss
  // (checksum, EIO), the pread errno. Read fault injection counts one read per page.
  // REQUIRES: 0 < count <= kMaxRunPages.
  static constexpr uint64_t kMaxRunPages = 256;
  absl::Status LoadRunInto(uint64_t first, uint64_t count, void* scratch,
                           absl::FunctionRef<absl::Status(const void* data, uint64_t pages)>
                               install,
                           uint64_t* verified) ABSL_LOCKS_EXCLUDED(inject_mu_);

  // Forgets [first, first + count) (balloon / discard: next access must read zeros) and
  // punches the file range to return the disk space. Waits for loads in progress.
  absl::Status Drop(uint64_t first, uint64_t count);

  // Clears `clean` for [first, first + count): the guest wrote these pages (dirty log), so
  // the next reclaim must write them back. Lock-free.
  void MarkDirty(uint64_t first, uint64_t count);

  // Lock-free queries; a concurrent Save/Drop of the same page may change the answer.
  bool IsSaved(uint64_t page) const;
  bool IsSavedClean(uint64_t page) const;
  uint64_t SavedPageCount() const;

  void SetWriteFaultInjection(const IoFaultInjection& injection) ABSL_LOCKS_EXCLUDED(inject_mu_);
  void SetReadFaultInjection(const IoFaultInjection& injection) ABSL_LOCKS_EXCLUDED(inject_mu_);
  void ClearFaultInjection() ABSL_LOCKS_EXCLUDED(inject_mu_);

  SwapStoreStats Stats() const;

 private:
  static constexpr size_t kStripes = 256;
  static constexpr uint8_t kSaved = 1;
  static constexpr uint8_t kClean = 2;

  struct Injector {
    IoFaultInjection config;
    uint64_t ops = 0;
    uint64_t rng = 0;
  };

  // `tables`: TablesBytes(num_pages) bytes, crc_ then flags_.
  SwapStore(int fd, uint64_t num_pages, size_t page_size, HostMapping tables,
            std::function<void(uint64_t page)> test_save_waits);
  static constexpr size_t kTableBytesPerPage = sizeof(uint32_t) + sizeof(uint8_t);
  static size_t TablesBytes(uint64_t num_pages);
  std::atomic_ref<uint8_t> flag(uint64_t page) const {
    return std::atomic_ref<uint8_t>(flags_[page]);
  }

  SharedMutex& StripeOf(uint64_t page) const { return stripes_[page % kStripes]; }
  // Returns 0 or the errno to inject for this operation, and whether to go partial.
  int NextInjectedError(Injector& injector, bool* partial)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(inject_mu_);
  int InjectedWriteError(bool* partial) ABSL_LOCKS_EXCLUDED(inject_mu_);
  int InjectedReadError(bool* partial) ABSL_LOCKS_EXCLUDED(inject_mu_);
  // Full-page read into `out` plus checksum check. REQUIRES: stripe of `page` held.
  absl::Status ReadVerifiedLocked(uint64_t page, void* out);
  // LoadRunInto's body. REQUIRES: the stripes of every page of the run held.
  absl::Status ReadRunVerifiedLocked(uint64_t first, uint64_t count, uint8_t* out,
                                     uint64_t* verified);

  const int fd_;
  const uint64_t num_pages_;
  const size_t page_size_;
  mutable std::array<SharedMutex, kStripes> stripes_;
  // crc_[p] is guarded by StripeOf(p); flags_[p] is written under StripeOf(p) (release) and
  // read lock-free (acquire): a reader that sees kSaved also sees crc_[p] and the file data
  // once it takes the stripe (the lock itself orders them; the atomics only serve queries).
  HostMapping tables_;     // one mapping: a page of it is faulted in when first written
  uint32_t* const crc_;    // num_pages_ entries, then
  uint8_t* const flags_;   // num_pages_ entries, accessed through flag()


  const std::function<void(uint64_t page)> test_save_waits_;  // SwapStoreOptions; tests only

  Mutex inject_mu_;
  Injector write_inject_ ABSL_GUARDED_BY(inject_mu_);
  Injector read_inject_ ABSL_GUARDED_BY(inject_mu_);

  // Statistics: relaxed, no ordering partner.
  std::atomic<uint64_t> saves_{0}, save_failures_{0}, loads_{0}, load_failures_{0},
      checksum_failures_{0}, drops_{0}, bytes_written_{0}, bytes_read_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_PAGING_SWAP_STORE_H_
