// RunGuestTouch: one run of the demand-paging benchmark with a real guest
// (bench_guest_demand_paging, and its kvm-labelled smoke test in tests/vmm/paging). A
// Machine (KVM, HostAddressSpace-owned memfd RAM, one page-server handler per vCPU) boots
// the `touch` guest (guests/touch/touch_shared.h): each vCPU writes one byte to every page
// of its share of a range of free guest memory, then verifies every page.
//
//   kDemandPaged  before the run the host writes touch_word(gpa) into every page of the
//                 range (WriteGuest) and reclaims the whole range to the swap store
//                 (HostAddressSpace::Reclaim): each first touch faults to the userfaultfd
//                 page server, which copies the page back from the store.
//   kNeverTouched the baseline: the same guest on never-touched pages of a Machine whose
//                 page server has been shut down before the run (PageServer::Shutdown
//                 unregisters the range: afterwards it is plain memfd memory), so each first
//                 touch is an ordinary shmem fault, without userfaultfd.
//
// Timing (touch_time): from the first vCPU's SYNC(START) to the last vCPU's SYNC(TOUCHED),
// host clock, read on the vCPU threads in the ucall handler; between the two the guest
// only stores (no exits but the faults). Setup, fill, reclaim and the guest's verification
// are outside it.
//
// Threads: RunGuestTouch is called from one thread and returns after the Machine is gone.
#ifndef MMUVISOR_TESTS_BENCH_PAGING_GUEST_TOUCH_RUN_H_
#define MMUVISOR_TESTS_BENCH_PAGING_GUEST_TOUCH_RUN_H_

#include <cstdint>
#include <string>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "vmm/boot/x86_state.h"
#include "vmm/host/dirty_tracking.h"
#include "vmm/kvm/system.h"
#include "vmm/paging/latency_histogram.h"
#include "vmm/paging/page_server.h"

namespace mmuvisor::vmm {

enum class TouchMemory : uint8_t { kDemandPaged, kNeverTouched };

struct GuestTouchOptions {
  std::string kvm_path = std::string(kDefaultKvmPath);
  uint32_t vcpus = 1;
  uint64_t pages_per_vcpu = 1024;
  TouchMemory memory = TouchMemory::kDemandPaged;
  // The page server's fault-around (HostAddressSpaceOptions); the default is what a user gets.
  uint32_t fault_around_pages = kDefaultFaultAroundPages;
  uint32_t fault_around_max_pages = kDefaultFaultAroundMaxPages;  // the stream ramp's top
  uint32_t spin_ns = 0;      // HostAddressSpaceOptions::page_server_spin_ns
  bool pin = false;          // vCPU i's page-server handler on CPU i (page_server_cpus)
  // The guest's privilege: CPL3 (the default, what `mmuvisor run` uses) or CPL0, which
  // kvm_pvm emulates instruction by instruction but maps without shadow faults.
  GuestPrivilege privilege = GuestPrivilege::kUser;
  // The Machine's dirty log (MachineConfig::dirty_log; auto is what `mmuvisor run
  // --resident` uses, the bitmap the library's default).
  DirtyLogSource dirty_log = DirtyLogSource::kAuto;
  absl::Duration timeout = absl::Seconds(300);  // the Machine's timeout (nested KVM is slow)
};

struct GuestTouchResult {
  absl::Duration touch_time;       // see the header comment
  uint64_t pages_touched = 0;      // sum of the vCPUs' SYNC(TOUCHED) counts
  uint64_t pages_verified = 0;     // pages that read back what they should
  uint64_t pages_bad = 0;          // pages that did not
  uint64_t first_bad_gpa = 0;      // 0 if none
  uint64_t reclaimed = 0;          // pages the pre-run Reclaim discarded (kDemandPaged)
  uint64_t swap_ins = 0;           // pages brought from the store (faults + fault-around)
  uint64_t server_faults = 0;      // page-server faults during the run (swap-ins + zero fills)
  DirtyLogSource dirty_log = DirtyLogSource::kBitmap;  // what options.dirty_log became
  // Page-server service time of the faults during the run (message read -> page installed):
  // the touch faults plus a few zero-fills of stack pages. Empty for kNeverTouched.
  LatencyHistogram::Snapshot fault_latency;
};

// Snapshot `after` minus snapshot `before` of the same histogram (max_ns: after's).
LatencyHistogram::Snapshot SnapshotDelta(const LatencyHistogram::Snapshot& after,
                                         const LatencyHistogram::Snapshot& before);

// Errors: FailedPrecondition "needs /dev/kvm: ..." when KVM cannot be opened (callers skip);
// InvalidArgument when the range does not fit the guest's free memory; the Machine's or the
// space's error for a failed step; Internal when the guest run was not clean (the verdict
// and summary in the message) or the reclaim left pages resident. A run whose pages read
// back wrong is NOT an error: pages_bad says so (the caller asserts).
absl::StatusOr<GuestTouchResult> RunGuestTouch(const GuestTouchOptions& options);

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_TESTS_BENCH_PAGING_GUEST_TOUCH_RUN_H_
