// PageServer: demand paging of one host range (guest RAM) through userfaultfd.
//
// The range is registered in MISSING mode. Handler threads poll the userfaultfd and an
// eventfd (shutdown); each fault at page P is answered
//   - with UFFDIO_COPY of the swap store's copy when P is saved (checksum verified first), or
//   - with UFFDIO_ZEROPAGE when it is not (never saved, or dropped by a discard).
// EEXIST (someone populated P first: another handler, fault-around) is success; the waiting
// thread is then woken explicitly (a failed copy does not wake). EAGAIN (the mm is changing:
// a REMOVE event is pending) makes the handler read and handle pending messages, then retry.
// Fault-around (on by default) installs up to N following pages that are saved, not resident
// and not under an owner's window (fault_around_filter) with the faulting one: one store read
// per run, DONTWAKE copies, one UFFDIO_WAKE over the cluster.
//
// Discards (UFFD_EVENT_REMOVE, from MADV_REMOVE / MADV_DONTNEED of the registered range)
// are counted. They change nothing in the store, on purpose: the event cannot tell reclaim
// (the page was saved first and must come back) from a balloon discard (the owner drops the
// store slots first, so the page then reads zeros). Residency is read from the kernel
// (mincore), never from a shadow bitmap that a late event could make stale.
//
// FAILURE (store read error, checksum mismatch, UFFDIO_COPY/ZEROPAGE error other than
// EEXIST/EAGAIN, userfaultfd read/poll error): the page cannot be served with correct data,
// and answering with zeros, or unregistering (the kernel then zero-fills), would silently
// corrupt the guest. So the server (1) records the first error (failure()), (2) calls
// on_failure once so the VM stops its vCPUs, (3) makes the page PROT_NONE and then wakes the
// faulting thread: its retry fails the access (KVM_RUN returns EFAULT on a vCPU, a syscall
// touching the page returns EFAULT, a plain host load/store gets SIGSEGV). Nothing hangs and
// nothing reads wrong data. Other pages keep being served. A userfaultfd-level error poisons
// the whole range the same way; the handler that met it then serves nothing but keeps
// reading the userfaultfd until Shutdown, counting REMOVE events and dropping faults (their
// threads were woken onto PROT_NONE): a discard of the range blocks in the kernel until a
// reader takes its REMOVE event, so a handler that stopped reading would hang it.
//
// SHUTDOWN (Shutdown() or the destructor): signals the eventfd, joins every handler, makes
// the range PROT_NONE, drains the faults still queued, restores the protection of every
// page except those with a blocked fault (and poisoned ones), wakes the blocked threads
// (their access fails as above: never a hang, never zeros), unregisters the range and closes
// both fds. After Shutdown the range is plain memory: a missing page reads zeros, whatever
// the store holds. REQUIRES: guest threads are stopped (a running vCPU may fault in the
// short PROT_NONE window); the store outlives the server.
//
// Threads and locks: handler threads run HandlerLoop(); mu_ guards failure_ and poisoned_
// (never held across a syscall that may block on guest memory). Statistics are relaxed
// atomics. Stats(), FaultLatency(), failure() and Residency() may be called from any thread;
// Shutdown() from any thread except a handler (so not from on_failure).
#ifndef MMUVISOR_VMM_PAGING_PAGE_SERVER_H_
#define MMUVISOR_VMM_PAGING_PAGE_SERVER_H_

#include <algorithm>
#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "notifier/base/mutex.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/paging/swap_store.h"

struct uffd_msg;  // <linux/userfaultfd.h>

namespace mmuvisor::vmm {

// Called once, from a handler thread, with the first failure. Must not call Shutdown() (it
// would join its own thread); it should ask the VM to stop its vCPUs and return.
using PageServerFailureCallback = std::function<void(const absl::Status&)>;

// The host range served: page-aligned, mapped RW, either shmem (memfd MAP_SHARED) or
// private anonymous memory. Page p is base + p * page_size and is slot p of the store.
struct PagedRange {
  uint8_t* base = nullptr;
  uint64_t num_pages = 0;
  size_t page_size = 4096;
};

// What a user gets without setting it: the faulting page and the 15 after it, one cluster
// of 16 pages (64 KiB, Linux's fault_around_bytes) per userfaultfd round trip. README,
// "Cost per page", has the measurements behind it. (It was off for a few hours: with it
// the nested-SVM stress lost a DMA FILL; the cause was the DMA path replaying a raced
// status write, vmm/dma/README.md, not the page server: fault-around changed the timing.)
inline constexpr uint32_t kDefaultFaultAroundPages = 15;
// How far a sequential stream's cluster grows by default: 256 pages (1 MiB, one store run).
inline constexpr uint32_t kDefaultFaultAroundMaxPages = 255;

struct PageServerOptions {
  // Handler threads; one per vCPU is the usual choice. 0 is allowed for tests: faults then
  // stay pending until Shutdown() (and REMOVE events block the discarding thread).
  int handler_threads = 1;
  // Fault-around: with each fault, also install up to this many following pages that are
  // saved in the store, not resident and allowed by fault_around_filter. The cluster (the
  // faulting page and those) is read from the store in one pread per run of consecutive
  // pages, copied with UFFDIO_COPY_MODE_DONTWAKE, then woken with one UFFDIO_WAKE.
  // 0: the faulting page only (one UFFDIO_COPY/ZEROPAGE that wakes). Capped at 255.
  uint32_t fault_around_pages = kDefaultFaultAroundPages;
  // Sequential streams (Linux's readahead ramp, for userfaultfd): when a fault lands on the
  // page right after the last follower of a cluster this server installed (the cluster's
  // end: followers it found resident or unsaved do not count), the next cluster is twice
  // as large (16, 32, 64, ... pages), up to fault_around_max_pages + 1; any other fault
  // starts again at fault_around_pages. A scan then pays one round trip per 256 pages
  // while a scattered access never brings more than 16. Values below fault_around_pages
  // (or a fault_around_pages of 0) turn the ramp off; capped at 255.
  uint32_t fault_around_max_pages = kDefaultFaultAroundMaxPages;
  // Called by a handler before it installs followers [first, first + count) of a fault:
  // false if any of them must not be installed now (the owner has an invalidation window
  // open over it); the handler then asks page by page. The faulting page itself is always
  // served. Empty: all allowed. Must not block on guest memory or on the page server.
  std::function<bool(uint64_t first, uint64_t count)> fault_around_filter;
  // After serving a message, a handler keeps reading the userfaultfd for up to this long
  // before it blocks in poll() (a guest touching memory in order faults again within
  // microseconds, and waking a sleeping handler on another CPU costs tens of them on some
  // hosts). 0: block at once. Spinning takes a CPU from the vCPUs: measure (README).
  uint32_t spin_before_block_ns = 0;
  // Handler i runs on CPU handler_cpus[i % size()] (sched_setaffinity); empty: anywhere.
  // A failure to set it is ignored (the CPU may be offline or outside the cpuset).
  std::vector<int> handler_cpus;
  PageServerFailureCallback on_failure;
  // Thread names are "<prefix>-<index>" (15 characters at most in total).
  std::string thread_name_prefix = "pgsrv";
  // For tests that force a schedule: called by a handler right before it zero-fills `page`
  // (UFFDIO_ZEROPAGE), with the page's store slot held against Save and Drop. May block;
  // the handler serves nothing else meanwhile. Empty: nothing is called.
  std::function<void(uint64_t page)> test_before_zero_fill;
  // For tests of a handler's fatal errors: called by a handler before each read of a
  // message in its loop; a nonzero errno is taken as that read's result (the message stays
  // queued). Empty: nothing is called.
  std::function<int()> test_read_errno;
};

// faults, swap_ins and zero_fills of a fault are counted before its thread resumes (a racing
// reader may see a transient over-count that is taken back on EEXIST); fault-around pages,
// remove events and latency are counted after (wait for them).
struct PageServerStats {
  uint64_t faults = 0;                   // MISSING faults handled
  uint64_t swap_ins = 0;                 // faults answered from the store
  uint64_t zero_fills = 0;               // faults answered with a zero page
  uint64_t copy_races = 0;               // EEXIST: page already populated (counted as resolved)
  uint64_t fault_around_pages = 0;       // neighbours brought back by fault-around
  uint64_t fault_around_skipped = 0;     // neighbours refused by fault_around_filter
  uint64_t sequential_faults = 0;        // faults that continued a stream (cluster grown)
  uint64_t spin_hits = 0;                // messages read while spinning (no poll wake-up)
  uint64_t remove_events = 0;            // UFFD_EVENT_REMOVE received
  uint64_t removed_pages = 0;            // pages of the range covered by those events
  uint64_t failures = 0;                 // pages that could not be served (poisoned)
  uint64_t shutdown_aborted_faults = 0;  // faults still blocked at Shutdown (failed, not zeroed)
};

// Pages brought back from the store, by faults and by fault-around: what "swapped in" means
// to the owner (a fault-around page is a swap-in that no thread had to wait for).
inline uint64_t PagesFromStore(const PageServerStats& s) {
  return s.swap_ins + s.fault_around_pages;
}

class PageServer {
 public:
  // Registers `range` and starts the handlers. REQUIRES: store->num_pages() >=
  // range.num_pages, store->page_size() == range.page_size, store outlives the server.
  // Errors: InvalidArgument (range), the userfaultfd/ioctl errno with the call named,
  // ResourceExhausted (a handler's copy buffer cannot be allocated).
  static absl::StatusOr<std::unique_ptr<PageServer>> Start(const PagedRange& range,
                                                           SwapStore* store,
                                                           PageServerOptions options);
  ~PageServer();
  PageServer(const PageServer&) = delete;
  PageServer& operator=(const PageServer&) = delete;

  // Idempotent. See SHUTDOWN above.
  void Shutdown() ABSL_LOCKS_EXCLUDED(mu_);

  // OK, or the first failure (page, host address, faulting thread id, cause).
  absl::Status failure() const ABSL_LOCKS_EXCLUDED(mu_);
  PageServerStats Stats() const;
  // Per-fault service time: message read -> page installed (and neighbours, if fault-around).
  LatencyHistogram::Snapshot FaultLatency() const { return latency_.TakeSnapshot(); }

  // One byte per page of [first, first + count): 1 if the page is populated now (mincore).
  // Stable while the caller keeps guests off the range (hub window); this is what reclaim
  // uses to pick the pages to save, with SwapStore::IsSavedClean to skip the write.
  absl::StatusOr<std::vector<uint8_t>> Residency(uint64_t first, uint64_t count) const;

  // Installs `data` (page_size bytes) as page `page` if it is missing now, waking any thread
  // waiting on it: proactive swap-in (prefetch) and the second half of Migrate (see README).
  // Errors: AlreadyExists (the page is populated: someone faulted it in first), OutOfRange,
  // FailedPrecondition (after Shutdown), Unavailable (the mm kept changing: EAGAIN retried
  // 100000 times, e.g. no handler is reading a pending REMOVE event), the UFFDIO_COPY errno.
  // Any thread except a handler; not concurrently with Shutdown().
  absl::Status Populate(uint64_t page, const void* data);

  // For an owner that has just mprotect()ed [first, first + count) (a protection change or
  // restore): makes the pages of it this server poisoned PROT_NONE again, and wakes any
  // thread that faulted on one meanwhile (its retry fails). A poisoned page must stay
  // inaccessible (FAILURE above): opened again, it would be served again or, after a
  // userfaultfd-level error, its fault never (a hang). Call it after the mprotect: a
  // failure recorded after this call's check makes its own PROT_NONE after the owner's.
  // Any thread except a handler; not concurrently with Shutdown().
  void KeepPoisoned(uint64_t first, uint64_t count) ABSL_LOCKS_EXCLUDED(mu_);

  // The userfaultfd, for diagnostics and tests (poll it to see a pending fault). -1 after
  // Shutdown().
  int userfaultfd() const { return uffd_; }
  const PagedRange& range() const { return range_; }

 private:
  struct HandlerState;

  PageServer(const PagedRange& range, SwapStore* store, PageServerOptions options, int uffd,
             int stop_fd);

  // `scratch`: the handler's copy buffer (1 + MaxClusterLimit() pages, page-aligned, from
  // std::aligned_alloc); the loop frees it when it ends.
  void HandlerLoop(int index, void* scratch);
  // Reads one message (non-blocking) and dispatches it. Returns the fatal read error, if any.
  absl::Status ReadAndDispatch(HandlerState& state);
  // After a fatal error: reads one message, counts a REMOVE event, drops a fault. False if
  // the read failed.
  bool DrainOne();
  void Dispatch(HandlerState& state, const ::uffd_msg& msg);
  void HandleFault(HandlerState& state, uint64_t address, uint32_t tid);
  void HandleRemove(uint64_t start, uint64_t end);
  // The faulting page alone: its saved copy, or a zero page when the store does not hold it,
  // decided and installed under its store slot (SwapStore::LoadInto). `wake`: false leaves
  // the faulting thread asleep for the caller's cluster wake.
  absl::Status ResolvePage(HandlerState& state, uint64_t page, bool* swapped_in,
                           bool wake = true);
  // Returns true if this call installed the page, false on EEXIST (already populated).
  absl::StatusOr<bool> CopyPage(HandlerState& state, uint64_t page, const void* data, bool wake);
  absl::Status ZeroPage(HandlerState& state, uint64_t page, bool wake = true);
  // One EAGAIN round of RetryOnEagain: reads one pending message (events handled, faults
  // deferred). Returns 0 or a fatal errno.
  int PumpOnce(HandlerState& state);
  // Retries `ioctl_call` while it fails with EAGAIN, pumping messages between attempts.
  // Returns 0 or the final errno.
  int RetryOnEagain(HandlerState& state, const std::function<int()>& ioctl_call);
  // Fault-around: installs `page` and its eligible followers with DONTWAKE, then wakes the
  // cluster once. Returns the status of `page` (followers' errors are left to their own
  // faults).
  absl::Status ResolveCluster(HandlerState& state, uint64_t page, uint64_t followers);
  // Of the `followers` pages after `page`, those ResolveCluster brings: saved, not resident
  // (mincore) and allowed by fault_around_filter; state.mincore[i] = 1 marks page + 1 + i.
  // Returns one past the last (page + 1: none).
  uint64_t PickFollowers(HandlerState& state, uint64_t page, uint64_t followers);
  // The followers a fault on `page` brings: the stream's grown window if `page` continues
  // one (streams_), else fault_around_pages.
  uint64_t FollowersFor(uint64_t page);
  // Records that a cluster of `followers` followers ended just before page `end`.
  void NoteClusterEnd(uint64_t end, uint64_t followers);
  // Copies pages [first, first + count) from `data` with DONTWAKE, skipping pages that exist
  // (EEXIST) and followers that fail. Returns the status of `must` if it lies in the run (OK
  // if copied or already there); *installed: pages this call installed; *must_installed:
  // whether `must` is one of them.
  absl::Status CopyRun(HandlerState& state, uint64_t first, uint64_t count, const uint8_t* data,
                       uint64_t must, uint64_t* installed, bool* must_installed);
  // Reads one message without blocking into `msg`: 1 read, 0 none, -1 error (errno set).
  int TryRead(::uffd_msg* msg);
  // Spins up to spin_before_block_ns reading messages; true if it served one.
  bool SpinForMessage(HandlerState& state);
  void DispatchDeferred(HandlerState& state);
  // Followers installed with a fault outside a stream: fault_around_pages, capped at one
  // store run; and the most a stream grows to (>= ClusterLimit()).
  uint64_t ClusterLimit() const {
    return std::min<uint64_t>(options_.fault_around_pages, SwapStore::kMaxRunPages - 1);
  }
  uint64_t MaxClusterLimit() const {
    if (ClusterLimit() == 0) return 0;
    return std::clamp<uint64_t>(options_.fault_around_max_pages, ClusterLimit(),
                                SwapStore::kMaxRunPages - 1);
  }
  // Records `cause` for `page` (or the whole range when page == kWholeRange), calls
  // on_failure on the first failure, poisons and wakes.
  void Fail(uint64_t page, uint32_t tid, const absl::Status& cause) ABSL_LOCKS_EXCLUDED(mu_);
  void WakeRange(uint64_t first, uint64_t count);
  uint8_t* PageAddress(uint64_t page) const { return range_.base + page * range_.page_size; }

  static constexpr uint64_t kWholeRange = ~uint64_t{0};
  // After a fatal error, a handler whose poll or read fails again waits this long for the
  // stop fd before it tries the userfaultfd again (an error that persists must not make it
  // spin).
  static constexpr int kFailedRetryMs = 10;
  // A cluster's consecutive pages are read from the store in runs of at most this many:
  // LoadRunInto holds a stripe lock per page of its run, and beyond 32 pages a longer pread
  // saves little while the held locks pass what ThreadSanitizer's deadlock detector tracks
  // per thread (64).
  static constexpr uint64_t kMaxPagesPerStoreRead = 32;

  const PagedRange range_;
  SwapStore* const store_;
  const PageServerOptions options_;
  int uffd_;
  int stop_fd_;
  std::vector<std::thread> handlers_;
  std::atomic<bool> shut_down_{false};

  mutable Mutex mu_;
  absl::Status failure_ ABSL_GUARDED_BY(mu_);
  std::vector<uint64_t> poisoned_ ABSL_GUARDED_BY(mu_);  // pages left PROT_NONE (or kWholeRange)

  LatencyHistogram latency_;
  // Stream ends: slot StreamSlot(e) holds (e << 8) | followers-of-the-window-ending-at-e,
  // 0 when empty. Relaxed: a lost or overwritten entry only restarts a stream's ramp (two
  // streams hashing to one slot take turns), never changes what a fault installs.
  static constexpr size_t kStreamSlots = 32;
  std::array<std::atomic<uint64_t>, kStreamSlots> streams_{};
  // Statistics: relaxed, no ordering partner.
  std::atomic<uint64_t> faults_{0}, swap_ins_{0}, zero_fills_{0}, copy_races_{0},
      fault_around_pages_{0}, fault_around_skipped_{0}, sequential_faults_{0}, spin_hits_{0},
      remove_events_{0},
      removed_pages_{0}, failures_{0}, shutdown_aborted_faults_{0};
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_PAGING_PAGE_SERVER_H_
