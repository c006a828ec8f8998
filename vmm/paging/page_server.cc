#include "vmm/paging/page_server.h"

#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <utility>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"

namespace mmuvisor::vmm {
namespace {

// A thread blocked in a MISSING fault retries its access when woken; PROT_NONE makes that
// retry fail (EFAULT / SIGSEGV) instead of zero-filling the page.
constexpr int kRangeProt = PROT_READ | PROT_WRITE;

uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

// userfaultfd(2), falling back to /dev/userfaultfd where the syscall is restricted
// (vm.unprivileged_userfaultfd=0 without CAP_SYS_PTRACE). Kernel-mode faults (KVM's GUP,
// copy_from_user) must be handled, so UFFD_USER_MODE_ONLY is not set.
absl::StatusOr<int> OpenUserfaultfd() {
  const int flags = O_CLOEXEC | O_NONBLOCK;
  int fd = static_cast<int>(syscall(SYS_userfaultfd, flags));
  if (fd >= 0) return fd;
  const int syscall_errno = errno;
  const int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
  if (dev < 0) {
    return ErrnoToStatus(syscall_errno,
                               "userfaultfd(O_CLOEXEC|O_NONBLOCK) (and "
                               "/dev/userfaultfd cannot be opened)");
  }
  fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
  const int e = errno;
  close(dev);
  if (fd < 0) return ErrnoToStatus(e, "ioctl(/dev/userfaultfd, USERFAULTFD_IOC_NEW)");
  return fd;
}

}  // namespace

struct PageServer::HandlerState {
  void* scratch = nullptr;             // 1 + fault-around pages, page-aligned: copy source
  std::vector<uffd_msg> deferred;      // faults read while pumping for EAGAIN
  std::vector<unsigned char> mincore;  // fault-around residency
};

absl::StatusOr<std::unique_ptr<PageServer>> PageServer::Start(const PagedRange& range,
                                                              SwapStore* store,
                                                              PageServerOptions options) {
  const auto host_page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  if (range.base == nullptr || range.num_pages == 0 || range.page_size != host_page ||
      reinterpret_cast<uintptr_t>(range.base) % host_page != 0) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PageServer: range base=%p pages=%d page_size=%d (need page-aligned, non-empty, "
        "page_size %d)",
        range.base, range.num_pages, range.page_size, host_page));
  }
  if (store == nullptr || store->num_pages() < range.num_pages ||
      store->page_size() != range.page_size) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "PageServer: swap store missing or smaller than the range (%d pages)", range.num_pages));
  }
  if (options.handler_threads < 0) {
    return absl::InvalidArgumentError(
        absl::StrFormat("PageServer: handler_threads=%d", options.handler_threads));
  }
  absl::StatusOr<int> uffd = OpenUserfaultfd();
  if (!uffd.ok()) return uffd.status();

  uffdio_api api{};
  api.api = UFFD_API;
  api.features = UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_THREAD_ID | UFFD_FEATURE_MISSING_SHMEM;
  if (ioctl(*uffd, UFFDIO_API, &api) != 0) {
    const int e = errno;
    close(*uffd);
    return ErrnoToStatus(e, "UFFDIO_API features=EVENT_REMOVE|THREAD_ID|MISSING_SHMEM");
  }
  uffdio_register reg{};
  reg.range.start = reinterpret_cast<uintptr_t>(range.base);
  reg.range.len = range.num_pages * range.page_size;
  reg.mode = UFFDIO_REGISTER_MODE_MISSING;
  if (ioctl(*uffd, UFFDIO_REGISTER, &reg) != 0) {
    const int e = errno;
    close(*uffd);
    return ErrnoToStatus(
        e, absl::StrFormat("UFFDIO_REGISTER MISSING start=%p len=0x%x", range.base, reg.range.len));
  }
  const uint64_t needed = (uint64_t{1} << _UFFDIO_COPY) | (uint64_t{1} << _UFFDIO_ZEROPAGE) |
                          (uint64_t{1} << _UFFDIO_WAKE);
  if ((reg.ioctls & needed) != needed) {
    close(*uffd);
    return absl::FailedPreconditionError(
        absl::StrFormat("UFFDIO_REGISTER start=%p: range lacks COPY/ZEROPAGE/WAKE (ioctls=0x%x)",
                        range.base, reg.ioctls));
  }
  const int stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd < 0) {
    const int e = errno;
    close(*uffd);  // closing unregisters the range
    return ErrnoToStatus(e, "PageServer: eventfd");
  }
  std::unique_ptr<PageServer> server(
      new PageServer(range, store, std::move(options), *uffd, stop_fd));
  // Each handler's copy buffer is allocated here, where a failure is an error of Start
  // (the destructor then unregisters the range) rather than a handler that cannot serve.
  const size_t scratch_bytes = (1 + static_cast<size_t>(server->MaxClusterLimit())) * host_page;
  std::vector<void*> scratch;
  for (int i = 0; i < server->options_.handler_threads; ++i) {
    void* buffer = std::aligned_alloc(host_page, scratch_bytes);
    if (buffer == nullptr) {
      for (void* b : scratch) std::free(b);
      return absl::ResourceExhaustedError(absl::StrFormat(
          "PageServer: aligned_alloc(%d, %d) for handler %d's copy buffer", host_page,
          scratch_bytes, i));
    }
    scratch.push_back(buffer);
  }
  for (int i = 0; i < server->options_.handler_threads; ++i) {
    server->handlers_.emplace_back(
        [s = server.get(), i, buffer = scratch[static_cast<size_t>(i)]] {
          s->HandlerLoop(i, buffer);
        });
  }
  return server;
}

PageServer::PageServer(const PagedRange& range, SwapStore* store, PageServerOptions options,
                       int uffd, int stop_fd)
    : range_(range), store_(store), options_(std::move(options)), uffd_(uffd), stop_fd_(stop_fd) {}

PageServer::~PageServer() { Shutdown(); }

void PageServer::HandlerLoop(int index, void* scratch) {
  const std::string name =
      absl::StrFormat("%s-%d", options_.thread_name_prefix, index).substr(0, 15);
  pthread_setname_np(pthread_self(), name.c_str());
  if (!options_.handler_cpus.empty()) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(options_.handler_cpus[static_cast<size_t>(index) % options_.handler_cpus.size()], &set);
    (void)sched_setaffinity(0, sizeof(set), &set);  // best effort (see the option)
  }
  HandlerState state;
  state.scratch = scratch;
  // After a fatal error this handler serves nothing more (the range is poisoned) but keeps
  // reading the userfaultfd until Shutdown: a discard of the range (MADV_REMOVE,
  // MADV_DONTNEED) blocks in the kernel until some reader takes its REMOVE event, so a
  // handler that left its loop would hang every later discard, and with it the reclaim
  // driver's window and the teardown that waits for it.
  bool failed = false;
  int retry_ms = 0;  // > 0: the error may persist, wait on the stop fd alone first
  const auto fatal = [&](const absl::Status& cause) {
    if (!failed) Fail(kWholeRange, 0, cause);
    failed = true;
    retry_ms = kFailedRetryMs;
  };
  pollfd fds[2] = {{uffd_, POLLIN, 0}, {stop_fd_, POLLIN, 0}};
  for (;;) {
    if (!failed && options_.spin_before_block_ns > 0 && SpinForMessage(state)) continue;
    fds[0].revents = 0;
    fds[1].revents = 0;
    const int ready = retry_ms > 0 ? poll(&fds[1], 1, retry_ms) : poll(fds, 2, -1);
    retry_ms = 0;
    if (ready < 0) {
      if (errno == EINTR) continue;
      fatal(ErrnoToStatus(errno, "poll(userfaultfd, eventfd)"));
      continue;
    }
    // The eventfd is never read: once written it stays readable and stops every handler.
    if ((fds[1].revents & POLLIN) != 0) break;
    if ((fds[0].revents & (POLLERR | POLLHUP | POLLNVAL)) != 0) {
      fatal(absl::InternalError(
          absl::StrFormat("poll(userfaultfd): revents=0x%x", fds[0].revents)));
      continue;
    }
    if ((fds[0].revents & POLLIN) == 0) continue;
    if (failed) {
      if (!DrainOne()) retry_ms = kFailedRetryMs;
      continue;
    }
    if (absl::Status read = ReadAndDispatch(state); !read.ok()) {
      fatal(read);
      continue;
    }
    DispatchDeferred(state);
  }
  std::free(state.scratch);
}

bool PageServer::DrainOne() {
  uffd_msg msg;
  const int r = TryRead(&msg);
  if (r < 0) return false;
  // A fault is dropped: Fail made the whole range PROT_NONE and woke it, so its thread's
  // retry fails the access (and if that mprotect failed, Shutdown wakes it).
  if (r > 0 && msg.event == UFFD_EVENT_REMOVE) {
    HandleRemove(msg.arg.remove.start, msg.arg.remove.end);
  }
  return true;
}

bool PageServer::SpinForMessage(HandlerState& state) {
  const uint64_t deadline = NowNs() + options_.spin_before_block_ns;
  do {
    if (shut_down_.load(std::memory_order_relaxed)) return false;  // poll sees the eventfd
    uffd_msg msg;
    const int r = TryRead(&msg);
    if (r < 0) return false;  // poll() + read report it
    if (r > 0) {
      spin_hits_.fetch_add(1, std::memory_order_relaxed);
      Dispatch(state, msg);
      DispatchDeferred(state);
      return true;
    }
#if defined(__x86_64__)
    __builtin_ia32_pause();
#endif
  } while (NowNs() < deadline);
  return false;
}

void PageServer::DispatchDeferred(HandlerState& state) {
  while (!state.deferred.empty()) {
    const uffd_msg msg = state.deferred.back();
    state.deferred.pop_back();
    Dispatch(state, msg);
  }
}

int PageServer::TryRead(uffd_msg* msg) {
  const ssize_t n = read(uffd_, msg, sizeof(*msg));
  if (n == static_cast<ssize_t>(sizeof(*msg))) return 1;
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return 0;
  if (n >= 0) errno = EIO;
  return -1;
}

absl::Status PageServer::ReadAndDispatch(HandlerState& state) {
  uffd_msg msg;
  ssize_t n = 0;
  if (const int injected = options_.test_read_errno ? options_.test_read_errno() : 0;
      injected != 0) {
    n = -1;
    errno = injected;
  } else {
    n = read(uffd_, &msg, sizeof(msg));
  }
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
    return absl::OkStatus();  // another handler took it
  }
  if (n != static_cast<ssize_t>(sizeof(msg))) {
    return n < 0 ? ErrnoToStatus(errno, "read(userfaultfd)")
                 : absl::InternalError(absl::StrFormat("read(userfaultfd): %d bytes", n));
  }
  Dispatch(state, msg);
  return absl::OkStatus();
}

void PageServer::Dispatch(HandlerState& state, const uffd_msg& msg) {
  switch (msg.event) {
    case UFFD_EVENT_PAGEFAULT:
      HandleFault(state, msg.arg.pagefault.address, msg.arg.pagefault.feat.ptid);
      break;
    case UFFD_EVENT_REMOVE:
      HandleRemove(msg.arg.remove.start, msg.arg.remove.end);
      break;
    default:
      break;  // not requested
  }
}

void PageServer::HandleFault(HandlerState& state, uint64_t address, uint32_t tid) {
  const uint64_t start_ns = NowNs();
  faults_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t page = (address - reinterpret_cast<uintptr_t>(range_.base)) / range_.page_size;
  absl::Status s;
  if (ClusterLimit() > 0 && page + 1 < range_.num_pages) {
    s = ResolveCluster(state, page, FollowersFor(page));
  } else {
    bool swapped_in = false;
    s = ResolvePage(state, page, &swapped_in);
  }
  if (!s.ok()) Fail(page, tid, s);
  latency_.Record(NowNs() - start_ns);
}

absl::Status PageServer::ResolvePage(HandlerState& state, uint64_t page, bool* swapped_in,
                                     bool wake) {
  *swapped_in = false;
  // Whether the store holds the page is read, and the answer installed, under its slot: a
  // zero-fill decided outside it could land after another fault populated the page, the
  // guest wrote it and reclaim saved and discarded it, wiping the saved data.
  return store_->LoadInto(page, state.scratch, [&](const void* data) -> absl::Status {
    if (data == nullptr) {  // not saved (never, or dropped by a discard): zeros
      if (options_.test_before_zero_fill) options_.test_before_zero_fill(page);
      return ZeroPage(state, page, wake);
    }
    // Counted before the copy wakes the faulting thread, so a thread that resumed sees its
    // swap-in in Stats(); taken back if the copy loses a race.
    swap_ins_.fetch_add(1, std::memory_order_relaxed);
    absl::StatusOr<bool> r = CopyPage(state, page, data, wake);
    if (!r.ok() || !*r) swap_ins_.fetch_sub(1, std::memory_order_relaxed);
    if (r.ok()) *swapped_in = *r;
    return r.status();
  });
}

int PageServer::RetryOnEagain(HandlerState& state, const std::function<int()>& ioctl_call) {
  for (;;) {
    const int e = ioctl_call();
    if (e != EAGAIN) return e;
    if (const int fatal = PumpOnce(state); fatal != 0) return fatal;
  }
}

int PageServer::PumpOnce(HandlerState& state) {
  // EAGAIN: mmap_changing is set until a pending REMOVE event is read. Read messages here (a single
  // handler would otherwise wait on itself); faults are handled afterwards.
  uffd_msg msg;
  const int r = TryRead(&msg);
  if (r > 0) {
    if (msg.event == UFFD_EVENT_PAGEFAULT) {
      state.deferred.push_back(msg);
    } else {
      Dispatch(state, msg);
    }
  } else if (r < 0) {
    return errno;
  } else {
    sched_yield();  // another handler is reading the event
  }
  return 0;
}

absl::StatusOr<bool> PageServer::CopyPage(HandlerState& state, uint64_t page, const void* data,
                                          bool wake) {
  uffdio_copy copy{};
  copy.dst = reinterpret_cast<uintptr_t>(PageAddress(page));
  copy.src = reinterpret_cast<uintptr_t>(data);
  copy.len = range_.page_size;
  copy.mode = wake ? 0 : UFFDIO_COPY_MODE_DONTWAKE;
  const int e = RetryOnEagain(state, [&] {
    copy.copy = 0;
    return ioctl(uffd_, UFFDIO_COPY, &copy) == 0 ? 0 : errno;
  });
  if (e == 0) return true;
  if (e == EEXIST) {
    // Populated by someone else (possibly with DONTWAKE): a failed copy wakes nobody.
    copy_races_.fetch_add(1, std::memory_order_relaxed);
    if (wake) WakeRange(page, 1);
    return false;
  }
  return ErrnoToStatus(e, absl::StrFormat("UFFDIO_COPY page %d dst=%p len=%d", page,
                                                PageAddress(page), range_.page_size));
}

absl::Status PageServer::ZeroPage(HandlerState& state, uint64_t page, bool wake) {
  uffdio_zeropage zero{};
  zero.range.start = reinterpret_cast<uintptr_t>(PageAddress(page));
  zero.range.len = range_.page_size;
  zero.mode = wake ? 0 : UFFDIO_ZEROPAGE_MODE_DONTWAKE;
  zero_fills_.fetch_add(1, std::memory_order_relaxed);  // before the wake, as in ResolvePage
  const int e = RetryOnEagain(state, [&] {
    zero.zeropage = 0;
    return ioctl(uffd_, UFFDIO_ZEROPAGE, &zero) == 0 ? 0 : errno;
  });
  if (e == 0) return absl::OkStatus();
  zero_fills_.fetch_sub(1, std::memory_order_relaxed);
  if (e == EEXIST) {
    copy_races_.fetch_add(1, std::memory_order_relaxed);
    if (wake) WakeRange(page, 1);
    return absl::OkStatus();
  }
  return ErrnoToStatus(e, absl::StrFormat("UFFDIO_ZEROPAGE page %d start=%p len=%d", page,
                                                PageAddress(page), range_.page_size));
}

namespace {
size_t StreamSlot(uint64_t page, size_t slots) {
  return static_cast<size_t>((page * 0x9E3779B97F4A7C15ull) >> 32) % slots;
}
}  // namespace

uint64_t PageServer::FollowersFor(uint64_t page) {
  const uint64_t base = ClusterLimit();
  const uint64_t max = MaxClusterLimit();
  if (max == base) return base;
  std::atomic<uint64_t>& slot = streams_[StreamSlot(page, kStreamSlots)];
  uint64_t seen = slot.load(std::memory_order_relaxed);
  uint64_t followers = base;
  if (seen != 0 && (seen >> 8) == page) {
    // Continues a stream: double the cluster (followers + 1 pages), up to max + 1.
    followers = std::min<uint64_t>(2 * ((seen & 0xff) + 1) - 1, max);
    sequential_faults_.fetch_add(1, std::memory_order_relaxed);
    (void)slot.compare_exchange_strong(seen, 0, std::memory_order_relaxed);
  }
  return followers;
}

void PageServer::NoteClusterEnd(uint64_t end, uint64_t followers) {
  if (MaxClusterLimit() == ClusterLimit() || end >= range_.num_pages) return;
  streams_[StreamSlot(end, kStreamSlots)].store((end << 8) | followers,
                                                std::memory_order_relaxed);
}

uint64_t PageServer::PickFollowers(HandlerState& state, uint64_t page, uint64_t followers) {
  const uint64_t first = page + 1;
  const uint64_t count = std::min<uint64_t>(followers, range_.num_pages - first);
  // Which followers to bring: saved, not resident (mincore), allowed by the owner.
  std::vector<unsigned char>& eligible = state.mincore;  // [i] for page first + i
  eligible.resize(count);
  if (mincore(PageAddress(first), count * range_.page_size, eligible.data()) != 0) {
    std::fill(eligible.begin(), eligible.end(), 1);  // unknown: no fault-around this time
  }
  uint64_t end = first;  // one past the last eligible follower
  for (uint64_t i = 0; i < count; ++i) {
    const bool ok = (eligible[i] & 1) == 0 && store_->IsSaved(first + i);
    eligible[i] = ok ? 1 : 0;
    if (ok) end = first + i + 1;
  }
  // The owner's veto, asked only when there is something to install: once for the span,
  // then page by page if the span is refused.
  const auto& filter = options_.fault_around_filter;
  uint64_t skipped = 0;
  if (filter && end > first && !filter(first, end - first)) {
    const uint64_t span_end = end;
    end = first;
    for (uint64_t q = first; q < span_end; ++q) {
      if (eligible[q - first] == 0) continue;
      if (!filter(q, 1)) {
        eligible[q - first] = 0;
        ++skipped;
      } else {
        end = q + 1;
      }
    }
  }
  if (skipped > 0) fault_around_skipped_.fetch_add(skipped, std::memory_order_relaxed);
  return end;
}

absl::Status PageServer::ResolveCluster(HandlerState& state, uint64_t page,
                                        uint64_t followers) {
  const uint64_t first = page + 1;
  const uint64_t end = PickFollowers(state, page, followers);
  const std::vector<unsigned char>& eligible = state.mincore;  // [i] for page first + i
  // A stream's next fault is the page after the cluster's last follower.
  if (end > first) NoteClusterEnd(end, followers);
  if (end == first) {
    bool swapped_in = false;
    return ResolvePage(state, page, &swapped_in);  // nothing around: the one-page path
  }
  auto in_cluster = [&](uint64_t q) { return q == page || eligible[q - first] != 0; };

  absl::Status page_status;
  uint64_t around = 0;
  // A hint, for which path serves the faulting page: with its followers' runs when saved,
  // else alone, where ResolvePage decides under its slot (a zero page, or the copy of a
  // Save that came since), woken with the cluster below.
  const bool page_saved = store_->IsSaved(page);
  if (!page_saved) {
    bool swapped_in = false;
    page_status = ResolvePage(state, page, &swapped_in, /*wake=*/false);
  }
  auto* scratch = static_cast<uint8_t*>(state.scratch);
  // Runs of consecutive cluster pages; the faulting page heads the first one when saved.
  for (uint64_t q = page_saved ? page : first; q < end;) {
    if (!in_cluster(q)) {
      ++q;
      continue;
    }
    uint64_t run_end = q + 1;
    while (run_end < end && in_cluster(run_end) && run_end - q < kMaxPagesPerStoreRead) {
      ++run_end;
    }
    const bool has_page = q == page;
    // The faulting page's swap-in is counted before anything can wake it (as ResolvePage).
    if (has_page) swap_ins_.fetch_add(1, std::memory_order_relaxed);
    uint64_t installed = 0;
    bool page_installed = false;
    absl::Status copy_status;
    uint64_t verified = 0;
    const absl::Status load = store_->LoadRunInto(
        q, run_end - q, scratch,
        [&](const void* data, uint64_t pages) {
          copy_status = CopyRun(state, q, pages, static_cast<const uint8_t*>(data), page,
                                &installed, &page_installed);
          return copy_status;
        },
        &verified);
    if (has_page) {
      if (!page_installed) swap_ins_.fetch_sub(1, std::memory_order_relaxed);
      if (verified == 0) {
        // Dropped since IsSaved() (a discard): served alone, under its slot (zeros, or the
        // copy of a Save since). Else its load error.
        bool swapped_in = false;
        page_status = absl::IsNotFound(load)
                          ? ResolvePage(state, page, &swapped_in, /*wake=*/false)
                          : load;
      } else {
        page_status = copy_status;  // OK when copied or already there (EEXIST)
      }
    }
    around += installed - (page_installed ? 1 : 0);
    // A page whose load failed ends the run: its own fault will report it.
    q = verified == run_end - q ? run_end : q + verified + 1;
  }
  if (around > 0) fault_around_pages_.fetch_add(around, std::memory_order_relaxed);
  // One wake for the cluster. A failed page stays asleep here: Fail() wakes it after making it
  // PROT_NONE.
  if (page_status.ok()) {
    WakeRange(page, end - page);
  } else {
    WakeRange(first, end - first);
  }
  return page_status;
}

absl::Status PageServer::CopyRun(HandlerState& state, uint64_t first, uint64_t count,
                                 const uint8_t* data, uint64_t must, uint64_t* installed,
                                 bool* must_installed) {
  *installed = 0;
  *must_installed = false;
  absl::Status must_status;
  // A run may span VMAs (an owner's mprotect splits the range; UFFDIO_COPY then fails with
  // ENOENT): after any error but EEXIST/EAGAIN the rest goes page by page.
  bool one_by_one = false;
  uint64_t i = 0;
  while (i < count) {
    const uint64_t pages = one_by_one ? 1 : count - i;
    uffdio_copy copy{};
    copy.dst = reinterpret_cast<uintptr_t>(PageAddress(first + i));
    copy.src = reinterpret_cast<uintptr_t>(data + i * range_.page_size);
    copy.len = pages * range_.page_size;
    copy.mode = UFFDIO_COPY_MODE_DONTWAKE;
    const int e = ioctl(uffd_, UFFDIO_COPY, &copy) == 0 ? 0 : errno;
    // A partial copy (the kernel stopped at a page) reports the bytes done with EAGAIN.
    const uint64_t done = copy.copy > 0 ? static_cast<uint64_t>(copy.copy) / range_.page_size : 0;
    if (done > 0 || e == 0) {
      if (first + i <= must && must < first + i + done) *must_installed = true;
      *installed += done;
      i += done;
      continue;  // after a partial copy: retry from the page it stopped at, to learn why
    }
    if (e == EAGAIN) {
      if (const int fatal = PumpOnce(state); fatal == 0) continue;
    }
    if (e == EEXIST) {
      // Populated by someone else; the cluster's one wake covers its waiters.
      if (first + i == must) copy_races_.fetch_add(1, std::memory_order_relaxed);
    } else if (pages > 1) {
      one_by_one = true;  // learn which page fails, and why
      continue;
    } else if (first + i == must) {
      must_status = ErrnoToStatus(
          e, absl::StrFormat("UFFDIO_COPY page %d dst=%p len=%d", must, PageAddress(must),
                             range_.page_size));
    }
    ++i;  // a follower's error is left for its own fault to report
  }
  return must_status;
}

void PageServer::HandleRemove(uint64_t start, uint64_t end) {
  remove_events_.fetch_add(1, std::memory_order_relaxed);
  const uint64_t lo = std::max<uint64_t>(start, reinterpret_cast<uintptr_t>(range_.base));
  const uint64_t hi = std::min<uint64_t>(
      end, reinterpret_cast<uintptr_t>(range_.base) + range_.num_pages * range_.page_size);
  if (hi > lo) removed_pages_.fetch_add((hi - lo) / range_.page_size, std::memory_order_relaxed);
}

void PageServer::KeepPoisoned(uint64_t first, uint64_t count) {
  if (first >= range_.num_pages) return;
  count = std::min(count, range_.num_pages - first);
  std::vector<uint64_t> pages;
  {
    MutexLock lock(&mu_);
    for (uint64_t p : poisoned_) {
      if (p == kWholeRange) {
        pages.assign(1, kWholeRange);
        break;
      }
      if (p >= first && p < first + count) pages.push_back(p);
    }
  }
  // Outside mu_ (never held across a syscall on guest memory), as Fail does it.
  for (uint64_t p : pages) {
    const uint64_t p0 = p == kWholeRange ? first : p;
    const uint64_t n = p == kWholeRange ? count : 1;
    if (mprotect(PageAddress(p0), n * range_.page_size, PROT_NONE) == 0) WakeRange(p0, n);
  }
}

void PageServer::WakeRange(uint64_t first, uint64_t count) {
  uffdio_range r{};
  r.start = reinterpret_cast<uintptr_t>(PageAddress(first));
  r.len = count * range_.page_size;
  (void)ioctl(uffd_, UFFDIO_WAKE, &r);  // only fails for a bad range
}

void PageServer::Fail(uint64_t page, uint32_t tid, const absl::Status& cause) {
  const bool whole = page == kWholeRange;
  const std::string where =
      whole ? absl::StrFormat("the whole range at %p (%d pages)", range_.base, range_.num_pages)
            : absl::StrFormat("page %d (host %p)", page, PageAddress(page));
  const absl::Status annotated(
      cause.code(), absl::StrFormat("page server cannot serve %s, faulting thread %d: %s", where,
                                    tid, cause.message()));
  bool first = false;
  {
    MutexLock lock(&mu_);
    first = failure_.ok();
    if (first) failure_ = annotated;
    poisoned_.push_back(page);
  }
  failures_.fetch_add(1, std::memory_order_relaxed);
  // Stop the VM first, so a vCPU whose access fails below finds the stop request.
  if (first && options_.on_failure) options_.on_failure(annotated);
  const uint64_t p0 = whole ? 0 : page;
  const uint64_t n = whole ? range_.num_pages : 1;
  if (mprotect(PageAddress(p0), n * range_.page_size, PROT_NONE) != 0) {
    return;  // cannot fail the access safely: the thread stays blocked until Shutdown()
  }
  WakeRange(p0, n);
}

void PageServer::Shutdown() {
  if (shut_down_.exchange(true)) return;
  const uint64_t one = 1;
  (void)!write(stop_fd_, &one, sizeof(one));
  for (std::thread& t : handlers_) t.join();
  handlers_.clear();

  // No handler runs now. Close the range to new faults, then collect the blocked ones: every
  // fault that passed the permission check is queued before mprotect can take mmap_lock.
  const uint64_t bytes = range_.num_pages * range_.page_size;
  const bool closed = mprotect(range_.base, bytes, PROT_NONE) == 0;
  std::vector<uint64_t> keep_closed;
  uffd_msg msg;
  while (read(uffd_, &msg, sizeof(msg)) == static_cast<ssize_t>(sizeof(msg))) {
    if (msg.event == UFFD_EVENT_PAGEFAULT) {
      keep_closed.push_back((msg.arg.pagefault.address - reinterpret_cast<uintptr_t>(range_.base)) /
                            range_.page_size);
      shutdown_aborted_faults_.fetch_add(1, std::memory_order_relaxed);
    } else if (msg.event == UFFD_EVENT_REMOVE) {
      HandleRemove(msg.arg.remove.start, msg.arg.remove.end);
    }
  }
  bool all_closed = false;
  {
    MutexLock lock(&mu_);
    for (uint64_t p : poisoned_) {
      if (p == kWholeRange) all_closed = true;
      keep_closed.push_back(p);
    }
  }
  if (closed && !all_closed) {
    std::sort(keep_closed.begin(), keep_closed.end());
    keep_closed.erase(std::unique(keep_closed.begin(), keep_closed.end()), keep_closed.end());
    uint64_t next = 0;
    keep_closed.push_back(range_.num_pages);  // sentinel
    for (uint64_t p : keep_closed) {
      if (p > next) mprotect(PageAddress(next), (p - next) * range_.page_size, kRangeProt);
      next = p + 1;
    }
  }
  WakeRange(0, range_.num_pages);  // blocked threads retry and fail on PROT_NONE
  uffdio_range r{};
  r.start = reinterpret_cast<uintptr_t>(range_.base);
  r.len = bytes;
  (void)ioctl(uffd_, UFFDIO_UNREGISTER, &r);
  close(uffd_);
  uffd_ = -1;
  close(stop_fd_);
  stop_fd_ = -1;
}

absl::Status PageServer::failure() const {
  MutexLock lock(&mu_);
  return failure_;
}

PageServerStats PageServer::Stats() const {
  PageServerStats s;
  s.faults = faults_.load(std::memory_order_relaxed);
  s.swap_ins = swap_ins_.load(std::memory_order_relaxed);
  s.zero_fills = zero_fills_.load(std::memory_order_relaxed);
  s.copy_races = copy_races_.load(std::memory_order_relaxed);
  s.fault_around_pages = fault_around_pages_.load(std::memory_order_relaxed);
  s.fault_around_skipped = fault_around_skipped_.load(std::memory_order_relaxed);
  s.sequential_faults = sequential_faults_.load(std::memory_order_relaxed);
  s.spin_hits = spin_hits_.load(std::memory_order_relaxed);
  s.remove_events = remove_events_.load(std::memory_order_relaxed);
  s.removed_pages = removed_pages_.load(std::memory_order_relaxed);
  s.failures = failures_.load(std::memory_order_relaxed);
  s.shutdown_aborted_faults = shutdown_aborted_faults_.load(std::memory_order_relaxed);
  return s;
}

absl::Status PageServer::Populate(uint64_t page, const void* data) {
  if (page >= range_.num_pages) {
    return absl::OutOfRangeError(
        absl::StrFormat("PageServer::Populate page %d >= %d", page, range_.num_pages));
  }
  if (shut_down_.load(std::memory_order_relaxed)) {
    return absl::FailedPreconditionError(
        absl::StrFormat("PageServer::Populate page %d: shut down", page));
  }
  uffdio_copy copy{};
  copy.dst = reinterpret_cast<uintptr_t>(PageAddress(page));
  copy.src = reinterpret_cast<uintptr_t>(data);
  copy.len = range_.page_size;
  // Not a handler: EAGAIN clears when a handler reads the pending event, so just retry.
  for (int attempt = 0; attempt < 100000; ++attempt) {
    copy.copy = 0;
    if (ioctl(uffd_, UFFDIO_COPY, &copy) == 0) return absl::OkStatus();
    if (errno == EEXIST) {
      return absl::AlreadyExistsError(
          absl::StrFormat("PageServer::Populate page %d: already populated", page));
    }
    if (errno != EAGAIN) {
      const int err = errno;  // before the message allocates
      return ErrnoToStatus(err, absl::StrFormat("UFFDIO_COPY page %d dst=%p len=%d", page,
                                                        PageAddress(page), range_.page_size));
    }
    sched_yield();
  }
  return absl::UnavailableError(
      absl::StrFormat("PageServer::Populate page %d: UFFDIO_COPY kept failing with EAGAIN", page));
}

absl::StatusOr<std::vector<uint8_t>> PageServer::Residency(uint64_t first, uint64_t count) const {
  if (first > range_.num_pages || count > range_.num_pages - first) {
    return absl::OutOfRangeError(
        absl::StrFormat("PageServer::Residency pages [%d, %d) outside [0, %d)", first,
                        first + count, range_.num_pages));
  }
  std::vector<unsigned char> vec(count);
  if (count > 0 && mincore(PageAddress(first), count * range_.page_size, vec.data()) != 0) {
    const int err = errno;  // before the message allocates
    return ErrnoToStatus(err, absl::StrFormat("mincore pages [%d, %d)", first, first + count));
  }
  std::vector<uint8_t> out(count);
  for (uint64_t i = 0; i < count; ++i) out[i] = vec[i] & 1;
  return out;
}

}  // namespace mmuvisor::vmm
