// Discard (discard.h): one kClear window; the store's copies go before the pages.
#include "vmm/host/discard.h"

#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space_internal.h"
#include "vmm/host/host_window.h"
#include "vmm/memory/memory_backing.h"

namespace mmuvisor::vmm {

absl::Status Discard(HostAddressSpace& space, PageRange range) {
  MMUVISOR_ASSIGN_OR_RETURN(HostWindow window,
                            HostWindow::Open(space, range, notifier::Event::kClear,
                                             WindowMode::kBlockable, "Discard"));
  // Store first: once the copies are gone no fault can bring old data back, so after the
  // discard every access reads zeros.
  absl::Status status = window.store().Drop(range.first, range.count);
  // The pages must then go whatever the owner's protection of the range: a failure here
  // would leave a half-done discard (the swapped-out pages' only copies are gone, the
  // resident ones keep their data). memfd RAM punches a hole in the file: before Linux 6.7,
  // madvise(MADV_REMOVE) refused (EACCES) a range mprotect()ed read-only or none
  // (madvise_remove wanted VM_SHARED|VM_WRITE; 6.7 asks vma_is_shared_maywrite), while
  // fallocate does not look at the mapping. Like MADV_REMOVE it zaps every mapping of the
  // pages, so the next access faults to the page server (zeros: the store slots are gone);
  // unlike it, it raises no UFFD_EVENT_REMOVE, which the page server only counts. On shmem
  // it fails only on a write seal, which guest RAM never has. Anonymous RAM's MADV_DONTNEED
  // does not check the protection either.
  if (status.ok()) {
    status = window.ram().backing() == MemoryBacking::kMemfd
                 ? window.ram().PunchHole(range.first, range.count)
                 : window.ram().Discard(range.first, range.count);
  }
  (void)window.Close();  // no protection to restore
  if (!status.ok()) return status;
  HostCounters& c = HostWindow::CountersOf(space);
  HostCounters::Add(c.discards, 1);
  HostCounters::Add(c.discarded_pages, range.count);
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
