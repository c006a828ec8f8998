// notifier/thread_shard.h: per-thread counter slots and asymmetric fences (internal).
//
// SrcuDomain keeps one counter line per slot (its read counts and the open windows of
// the WindowGate that shares it). A thread takes a slot on first use and keeps it until
// it exits:
//  - slots [0, kExclusiveSlots) are exclusive: only their owner thread writes them, so the
//    owner updates its counter with a plain load + store (no locked instruction);
//  - threads beyond that share slots [kExclusiveSlots, kSlots) and update them with
//    atomic read-modify-writes.
// Writers (grace periods, registration) only read the counters.
//
// Asymmetric fences: both users have a store-buffering pair ("reader: store my count,
// load flag" vs "writer: store flag, load counts"). The reader side calls LightFence (a
// compiler barrier when membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) is available, else a
// full fence); the writer side calls HeavyFence (membarrier, which runs a full barrier on
// every CPU running a thread of this process; a full fence only when membarrier was never
// registered, as the readers then use one too). Either way, at least one
// side sees the other's store. This is liburcu's urcu-memb / folly's asymmetric barrier.
// Under TSan (which models neither fences nor membarrier) the accesses themselves are
// seq_cst (kPairOrder), which orders the pair in the C++ model.
//
// Threads: everything here is thread-safe. A slot is handed to a new thread only after
// its previous owner exited (through a mutex: the old owner's stores happen-before).
#ifndef MMUVISOR_NOTIFIER_THREAD_SHARD_H_
#define MMUVISOR_NOTIFIER_THREAD_SHARD_H_

#include <atomic>
#include <cstdint>

namespace mmuvisor::notifier::internal {

inline constexpr int kExclusiveSlots = 64;
inline constexpr int kSharedSlots = 16;
inline constexpr int kSlots = kExclusiveSlots + kSharedSlots;

#if defined(__SANITIZE_THREAD__)
#define MMUVISOR_NOTIFIER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define MMUVISOR_NOTIFIER_TSAN 1
#endif
#endif
#if defined(MMUVISOR_NOTIFIER_TSAN)
inline constexpr bool kTsan = true;
#else
inline constexpr bool kTsan = false;
#endif
// Memory order of the two accesses on each side of a store-buffering pair.
inline constexpr std::memory_order kPairOrder =
    kTsan ? std::memory_order_seq_cst : std::memory_order_relaxed;
// The reader's re-check of the flag word after its store (the pair's load), where the fast
// path is then taken: acquire, so that a re-check that reads a writer's later value (a
// gate closed and reopened by a registration, an epoch flipped twice) also makes what the
// writer published before it (the new list, has_itree) visible to the loads that follow.
// Relaxed would leave those loads free to be satisfied first on a weakly ordered CPU
// (ARM64); on x86 an acquire load is the same plain load.
inline constexpr std::memory_order kRecheckOrder =
    kTsan ? std::memory_order_seq_cst : std::memory_order_acquire;

// -1 until the thread first asks for a slot. Constant-initialised: no TLS wrapper call.
inline thread_local int tls_slot = -1;
int AssignThreadSlot();

// True for an exclusive slot; false for a shared one and for -1 (not yet assigned), so a
// fast path can test the raw tls_slot once: one unsigned compare.
inline bool IsExclusiveSlot(int slot) {
  return static_cast<unsigned>(slot) < static_cast<unsigned>(kExclusiveSlots);
}

// The calling thread's slot in [0, kSlots); exclusive if < kExclusiveSlots.
inline int ThreadSlot() {
  const int slot = tls_slot;
  return slot >= 0 ? slot : AssignThreadSlot();
}

// True once membarrier is registered; set once, before any HeavyFence returns.
// relaxed readers: a reader that sees false uses a full fence, which is always enough.
inline std::atomic<bool> membarrier_ready{false};

// Reader half of an asymmetric store-buffering pair. Between "store my count" and "load
// the writer's flag".
inline void LightFence() {
#if !defined(MMUVISOR_NOTIFIER_TSAN)  // under TSan kPairOrder is seq_cst: no fence needed
  // relaxed: see membarrier_ready.
  if (membarrier_ready.load(std::memory_order_relaxed)) {
    std::atomic_signal_fence(std::memory_order_seq_cst);  // the compiler must not reorder
  } else {
    std::atomic_thread_fence(std::memory_order_seq_cst);
  }
#endif
}
// Writer half: between "store my flag" and "load the counts". May take microseconds.
// Once membarrier is registered it never falls back: a call that keeps failing (after a
// bounded retry of transient errors) aborts the process with a message, because the
// readers' compiler barrier is then ordered by nothing.
void HeavyFence();
// Registers this process for membarrier (idempotent, once per process). Runs at load, from
// a static initializer in thread_shard.cc, while the process is still single-threaded:
// the kernel registers a process with one mm user at once (a few microseconds) but waits
// for an RCU grace period otherwise (15.7 ms measured on kvm_pvm, 14-75 ms here with one
// idle second thread), and that wait used to sit on the boot path, at the first hub's
// construction. liburcu's urcu-memb registers from a library constructor the same way.
// The counters' owners' constructors still call it (a no-op by then) for a library loaded
// after threads exist (dlopen), where it registers on first use as before.
void InitAsymmetricFences();

// How the registration went, for tests and benchmarks.
struct FenceRegistration {
  bool ready = false;    // membarrier registered (membarrier_ready)
  bool at_load = false;  // registered by the static initializer, before main
  int64_t ns = 0;        // wall time of the registration syscalls
};
FenceRegistration AsymmetricFenceRegistration();

// Backoff step `round` of a wait loop: yields first, then sleeps up to 100 us.
void WaitStep(int round);

}  // namespace mmuvisor::notifier::internal

#endif  // MMUVISOR_NOTIFIER_THREAD_SHARD_H_
