#include "notifier/thread_shard.h"

#include <linux/membarrier.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <bitset>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

namespace mmuvisor::notifier::internal {
namespace {

std::mutex slot_mu;
std::bitset<kExclusiveSlots> slot_used;  // guarded by slot_mu
unsigned next_shared = 0;               // guarded by slot_mu

// Gives the exclusive slot back when its thread exits.
struct SlotReleaser {
  ~SlotReleaser() {
    std::lock_guard<std::mutex> lock(slot_mu);
    slot_used.reset(static_cast<size_t>(tls_slot));
    tls_slot = -1;
  }
};

long Membarrier(int cmd) { return syscall(__NR_membarrier, cmd, 0, 0); }

bool RegisterMembarrier() {
  const long cmds = Membarrier(MEMBARRIER_CMD_QUERY);
  if (cmds < 0 || (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return false;
  return Membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0;
}

// Written once inside InitAsymmetricFences' call_once, read after it (call_once orders).
FenceRegistration registration;
bool in_static_init = false;

// The static initializer: registers before main, while the process has one thread.
[[maybe_unused]] const bool registered_at_load = [] {
  in_static_init = true;
  InitAsymmetricFences();
  in_static_init = false;
  return true;
}();

}  // namespace

int AssignThreadSlot() {
  int slot;
  {
    std::lock_guard<std::mutex> lock(slot_mu);
    slot = -1;
    for (int i = 0; i < kExclusiveSlots; ++i) {
      if (!slot_used.test(static_cast<size_t>(i))) {
        slot_used.set(static_cast<size_t>(i));
        slot = i;
        break;
      }
    }
    if (slot < 0) slot = kExclusiveSlots + static_cast<int>(next_shared++ % kSharedSlots);
  }
  tls_slot = slot;
  if (slot < kExclusiveSlots) {
    thread_local SlotReleaser releaser;  // registered on first use; runs at thread exit
    (void)releaser;
  }
  return slot;
}

void InitAsymmetricFences() {
  // A function-local once_flag: usable from the static initializer whatever the order
  // of initialisation between translation units.
  static std::once_flag once;
  std::call_once(once, [] {
    const auto t0 = std::chrono::steady_clock::now();
    const bool ok = RegisterMembarrier();
    registration.ns = std::chrono::duration_cast<std::chrono::nanoseconds>(
                          std::chrono::steady_clock::now() - t0)
                          .count();
    registration.ready = ok;
    registration.at_load = in_static_init;
    // release: not needed for correctness (a reader that sees true only skips a fence
    // that the writer's membarrier now provides), kept for clarity.
    if (ok) membarrier_ready.store(true, std::memory_order_release);
  });
}

FenceRegistration AsymmetricFenceRegistration() {
  InitAsymmetricFences();  // orders the read after the write (call_once)
  return registration;
}

void HeavyFence() {
  InitAsymmetricFences();
  // acquire: pairs with the release in InitAsymmetricFences.
  if (!membarrier_ready.load(std::memory_order_acquire)) {
    // Never registered: every reader uses a full fence too (LightFence, SrcuDomain's
    // kFullFenceBit), so a full fence here completes the pair.
#if !defined(MMUVISOR_NOTIFIER_TSAN)  // under TSan both sides use seq_cst accesses instead
    std::atomic_thread_fence(std::memory_order_seq_cst);
#endif
    return;
  }
  // Registered: readers rely on this call and have only a compiler barrier. A fence of
  // our own would order nothing on their CPUs, so a failure here cannot fall back: the
  // grace period or gate close would admit a writer beside a reader it cannot see.
  // ENOMEM (the kernel's cpumask allocation) is transient, EINTR and EAGAIN are retried
  // for safety; a bounded number of tries (about 0.1 s with WaitStep's backoff), then
  // abort. Anything else (EPERM after a lost registration, EINVAL, ENOSYS under a
  // seccomp filter) cannot get better. Returning an error is not possible: the callers
  // (Synchronize, WindowGate::Close) run in destructors and void teardown paths.
  constexpr int kTries = 1000;
  int err = 0;
  for (int round = 0; round < kTries; ++round) {
    if (Membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) == 0) return;
    err = errno;
    if (err != ENOMEM && err != EINTR && err != EAGAIN) break;
    WaitStep(round);
  }
  std::fprintf(stderr,
               "mmuvisor notifier: membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) failed after "
               "its registration succeeded: %s (errno %d). The SRCU and window-gate readers "
               "rely on it for their ordering and nothing else can provide it; aborting.\n",
               std::strerror(err), err);
  std::abort();
}

void WaitStep(int round) {
  if (round < 64) {
    std::this_thread::yield();
    return;
  }
  std::this_thread::sleep_for(std::chrono::microseconds(std::min(100, round - 63)));
}

}  // namespace mmuvisor::notifier::internal
