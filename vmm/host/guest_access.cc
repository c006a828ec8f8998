// HostAddressSpace: host copies to and from guest RAM (GuestMemoryAccess), and the count
// of protected pages.
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

#include "absl/strings/str_format.h"
#include "notifier/base/errno_status.h"
#include "notifier/base/status_macros.h"
#include "vmm/host/host_address_space.h"
#include "vmm/host/host_address_space_internal.h"

namespace mmuvisor::vmm {

bool HostAddressSpace::ContainsGuestRange(Gpa gpa, ByteSize len) const {
  return memslots()->Translate(gpa, len).has_value();
}

uint64_t HostAddressSpace::ProtectedPages(uint64_t* first) const {
  uint64_t count = 0;
  for (uint64_t p = 0; p < num_pages_; ++p) {
    if (protection(p) != PageProtection::kReadWrite) {
      if (count == 0 && first != nullptr) *first = p;
      ++count;
    }
  }
  return count;
}

absl::Status HostAddressSpace::CopyPage(uint64_t page, uint8_t* hva, uint8_t* buffer,
                                        size_t len, bool write) {
  for (;;) {
    {
      ReaderMutexLock teardown(&teardown_mu_);
      if (torn_down_.load(std::memory_order_acquire)) {  // pairs with Teardown's release
        return absl::FailedPreconditionError("guest memory access: torn down");
      }
      MMUVISOR_RETURN_IF_ERROR(PageServerFailure());
      if (options_.test_before_host_copy) options_.test_before_host_copy(page);
      // One section of the host copies' drain (HostCopies), across the checks and the copy:
      // a window that starts now waits for it before it changes the page; one that
      // started before holds the page in windows_, which the check sees.
      mmu::InflightDrain::Section section(host_copies_->drain());
      if (!windows_.IsLocked(page)) {
        // The protection is read here, inside the section and after the page was seen
        // unlocked, never before: a Protect that starts later waits for the section, one
        // that finished stored it before it unlocked the page (IsLocked took that lock
        // after). Read before the section, a Protect run in between went unseen and the
        // copy below faulted on the page it had just protected (SIGSEGV).
        const PageProtection prot = protection(page);
        if (prot == PageProtection::kNone || (write && prot != PageProtection::kReadWrite)) {
          return absl::PermissionDeniedError(absl::StrFormat(
              "host %s of page %d: protected %s", write ? "write" : "read", page,
              PageProtectionName(prot)));
        }
        // Fault the page in first, as Resolve does: a swapped-out page whose copy the page
        // server cannot serve (a corrupt or unreadable slot) is poisoned (PROT_NONE), and a
        // memcpy into it would end the process with SIGSEGV; madvise reports it as an
        // error. In the section no window can take the page out again before the copy.
        void* const page_address = reinterpret_cast<void*>(base_ + page * kPageSize);
        if (madvise(page_address, kPageSize, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) !=
            0) {
          const int err = errno;
          MMUVISOR_RETURN_IF_ERROR(PageServerFailure());
          if (err != EAGAIN && err != EINTR) {
            return ErrnoToStatus(
                err, absl::StrFormat("host %s of page %d: madvise(MADV_POPULATE_%s)",
                                     write ? "write" : "read", page, write ? "WRITE" : "READ"));
          }
          continue;  // transient: check everything again
        }
        if (write) {
          // In the section: no window can save this page between the note and the copy.
          NoteHostWrite(PageRange{page, 1});
          std::memcpy(hva, buffer, len);
        } else {
          std::memcpy(buffer, hva, len);
        }
        return absl::OkStatus();
      }
    }
    windows_.WaitUntilUnlocked(page);  // no lock of ours held while waiting
  }
}

absl::Status HostAddressSpace::ReadGuest(Gpa gpa, absl::Span<uint8_t> out) {
  std::optional<Hva> hva = memslots()->Translate(gpa, ByteSize{out.size()});
  if (!hva.has_value()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest range gpa=%#x len=%#x is outside guest RAM (no memslot holds all of it)",
        gpa.value, out.size()));
  }
  size_t done = 0;
  while (done < out.size()) {
    const uint64_t address = hva->value + done;
    const size_t len = std::min<size_t>(out.size() - done, kPageSize - (address % kPageSize));
    if (absl::Status s = CopyPage((address - base_) / kPageSize,
                                  reinterpret_cast<uint8_t*>(address), out.data() + done, len,
                                  /*write=*/false);
        !s.ok()) {
      return s;
    }
    done += len;
  }
  return absl::OkStatus();
}

absl::Status HostAddressSpace::WriteGuest(Gpa gpa, absl::Span<const uint8_t> in) {
  std::optional<Hva> hva = memslots()->Translate(gpa, ByteSize{in.size()});
  if (!hva.has_value()) {
    return absl::OutOfRangeError(absl::StrFormat(
        "guest range gpa=%#x len=%#x is outside guest RAM (no memslot holds all of it)",
        gpa.value, in.size()));
  }
  size_t done = 0;
  while (done < in.size()) {
    const uint64_t address = hva->value + done;
    const size_t len = std::min<size_t>(in.size() - done, kPageSize - (address % kPageSize));
    if (absl::Status s = CopyPage((address - base_) / kPageSize,
                                  reinterpret_cast<uint8_t*>(address),
                                  const_cast<uint8_t*>(in.data() + done), len, /*write=*/true);
        !s.ok()) {
      return s;
    }
    done += len;
  }
  return absl::OkStatus();
}

}  // namespace mmuvisor::vmm
