// DmaMemory: how the DMA engine reaches guest memory, one page piece at a time, and the two
// implementations the design allows:
//   - SecondaryMmuMemory: through an mmu::SecondaryMmu, exactly like a KVM device access:
//       section; seq = SnapshotSeq(); hva = Translate(gfn)  (miss -> Fault(gfn), again)
//       copy the words;  AccessRetry(seq, gfn)? -> the access raced an invalidation
//     A read that raced is done again after the fault. A write that raced is NOT redone:
//     DeviceMmu's start waited for it, so it landed before the primary changed the page,
//     and the change keeps it; a redo would replay it over whatever the guest wrote there
//     after seeing it (raced_writes counts them). Only with DeviceMmu's wait switched off
//     (a test switch) is a raced write redone, into the page the primary uses now.
//   - MirrorMemory: through an mmu::Mirror (interval subscription); AccessPage runs the
//     copy with the mirror's lock held, so invalidations wait for it.
// Words are copied with relaxed 64-bit atomic loads and stores: guest vCPUs and the host's
// migrate/reclaim copies touch the same pages concurrently (that race is what the retry
// protocol resolves), and the copies must not be C++ data races.
//
// Addresses: guest-physical; gfn = gpa >> 12 is the MMU's frame number (the stress runner
// and tests give the MMU one slot: gfn 0 at the primary address of gpa 0).
// REQUIRES for every call: gpa 8-byte aligned and [gpa, gpa + 8 * words) inside one page.
// Threads: one DmaMemory per device thread (the counters are atomics; the trace sink is
// called on the accessing thread).
#ifndef MMUVISOR_VMM_DMA_DMA_MEMORY_H_
#define MMUVISOR_VMM_DMA_DMA_MEMORY_H_

#include <atomic>
#include <cstdint>
#include <functional>

#include "absl/status/status.h"
#include "absl/types/span.h"
#include "mmu/mirror.h"
#include "mmu/secondary_mmu.h"
#include "vmm/dma/device_mmu.h"
#include "vmm/paging/latency_histogram.h"

namespace mmuvisor::vmm::dma {

// Optional observer of the access path (the stress runner's trace). Called on the
// accessing thread; must be cheap (an append to a per-thread buffer).
class DmaTraceSink {
 public:
  virtual ~DmaTraceSink() = default;
  // A Fault() call on the MMU ended after `duration_ns`.
  virtual void OnDmaFault(uint64_t gpa, uint64_t duration_ns, bool ok) = 0;
  // An access was found stale (raced an invalidation) and is redone.
  virtual void OnDmaRetry(uint64_t gpa) = 0;
};

// What the owner of guest memory must see of device accesses (vmm/host's
// HostAddressSpace: writes no dirty log sees). Optional; the stress rig installs one.
// Called on the accessing thread, inside the access (the DeviceMmu's section, or the
// mirror's lock), so a window's start has waited for it.
class DeviceAccessHooks {
 public:
  virtual ~DeviceAccessHooks() = default;
  // The device is about to write the page holding host address `host`.
  virtual void BeforeWrite(uint64_t host) = 0;
  // The address the device really touches for translated host address `host` (default:
  // `host`). A view that bypasses the CPU-side page protection (as bus-mastering DMA
  // does) lets a test show what a stale translation does; see vmm/stress/kvm_device_hooks.h
  // (MapDeviceView), which the stress rig installs for its must-fail control.
  virtual uint64_t DeviceAddress(uint64_t host) { return host; }
};

struct DmaMemoryStats {
  uint64_t faults = 0;         // MMU Fault() calls made by this path
  uint64_t fault_errors = 0;   // of which failed
  uint64_t access_retries = 0; // accesses redone because they raced an invalidation
  uint64_t raced_writes = 0;   // writes that raced one and were kept, not replayed
};

class DmaMemory {
 public:
  virtual ~DmaMemory() = default;
  // Errors: the MMU's (kNotFound: no memory there; kDeadlineExceeded: stuck racing an
  // invalidation; kFailedPrecondition: released/detached), with the gpa in the message.
  virtual absl::Status ReadWords(uint64_t gpa, absl::Span<uint64_t> out) = 0;
  virtual absl::Status WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) = 0;
  // Writes one word (FILL): `value` repeated `words` times.
  virtual absl::Status FillWords(uint64_t gpa, uint64_t value, uint64_t words) = 0;
  virtual DmaMemoryStats stats() const = 0;
};

class SecondaryMmuMemory : public DmaMemory {
 public:
  // `mmu` and `latency` (fault latency, may be null) must outlive this object.
  // skip_retry_check_for_testing: never validate an access with AccessRetry. Exists only
  // so a test can show that the oracle catches stale data without it; such a test also
  // turns the MMU's own checks off (mmu::FaultHooks::retry_checks = false), which the
  // owner of the MMU installs (it may add fault-path delays in the same hooks).
  SecondaryMmuMemory(DeviceMmu& mmu, LatencyHistogram* latency,
                     bool skip_retry_check_for_testing = false);
  void set_trace(DmaTraceSink* sink) { trace_ = sink; }  // REQUIRES: before any access
  void set_hooks(DeviceAccessHooks* hooks) { hooks_ = hooks; }  // REQUIRES: likewise
  // Test only: runs inside the access section, after a Translate hit, before the copy.
  void set_after_translate_for_testing(std::function<void(uint64_t gpa)> hook) {
    after_translate_ = std::move(hook);
  }

  absl::Status ReadWords(uint64_t gpa, absl::Span<uint64_t> out) override;
  absl::Status WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) override;
  absl::Status FillWords(uint64_t gpa, uint64_t value, uint64_t words) override;
  DmaMemoryStats stats() const override;

 private:
  enum class Kind { kRead, kWrite, kFill };
  absl::Status Access(uint64_t gpa, Kind kind, uint64_t* words, uint64_t count, uint64_t value);
  absl::Status FaultIn(uint64_t gpa, mmu::Access access);

  DeviceMmu& mmu_;
  LatencyHistogram* const latency_;
  const bool skip_retry_;
  DmaTraceSink* trace_ = nullptr;
  DeviceAccessHooks* hooks_ = nullptr;
  std::function<void(uint64_t gpa)> after_translate_;  // test only
  std::atomic<uint64_t> faults_{0};
  std::atomic<uint64_t> fault_errors_{0};
  std::atomic<uint64_t> retries_{0};
  std::atomic<uint64_t> raced_writes_{0};
};

class MirrorMemory : public DmaMemory {
 public:
  // The mirror must cover the addresses accessed; `base` is the primary address of gpa 0.
  MirrorMemory(mmu::Mirror& mirror, uint64_t base) : mirror_(mirror), base_(base) {}
  // The mirror's lock keeps invalidations out of an access (its Invalidate takes it, and
  // refuses a non-blockable start while it is held).
  void set_hooks(DeviceAccessHooks* hooks) { hooks_ = hooks; }  // REQUIRES: before any access

  absl::Status ReadWords(uint64_t gpa, absl::Span<uint64_t> out) override;
  absl::Status WriteWords(uint64_t gpa, absl::Span<const uint64_t> in) override;
  absl::Status FillWords(uint64_t gpa, uint64_t value, uint64_t words) override;
  DmaMemoryStats stats() const override;

 private:
  uint64_t Device(uint64_t host) const {
    return hooks_ != nullptr ? hooks_->DeviceAddress(host) : host;
  }

  mmu::Mirror& mirror_;
  const uint64_t base_;
  DeviceAccessHooks* hooks_ = nullptr;
};

// Relaxed word copies between a host page and a buffer (see the header comment).
void LoadWords(const uint64_t* page_words, uint64_t* out, uint64_t count);
void StoreWords(uint64_t* page_words, const uint64_t* in, uint64_t count);
void StoreValue(uint64_t* page_words, uint64_t value, uint64_t count);

}  // namespace mmuvisor::vmm::dma

#endif  // MMUVISOR_VMM_DMA_DMA_MEMORY_H_
