// notifier/base/zeroed_pages.h: memory that starts zero without being written.
//
// A table with an entry per guest page (a byte of state, a checksum) is mostly never
// written: a guest touches little of its RAM. A value-initialised array from the heap
// writes all of it at creation, a page fault per 4 KiB before the guest runs (on a
// kvm_pvm host, where this process is itself a shadow-paged guest, each one costs
// microseconds). ZeroedPages is a private anonymous mapping instead: the kernel hands out
// zeroed pages on first touch, so a page of the table is allocated where an entry in it
// is first written (a read of an untouched page maps the shared zero page and allocates
// nothing). MAP_NORESERVE: the size is virtual until written.
//
// Entries that threads share are accessed through std::atomic_ref over the bytes.
#ifndef MMUVISOR_NOTIFIER_BASE_ZEROED_PAGES_H_
#define MMUVISOR_NOTIFIER_BASE_ZEROED_PAGES_H_

#include <cstddef>
#include <cstdint>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace mmuvisor {

class ZeroedPages {
 public:
  // `bytes` > 0; `what` names the table in the error (mmap's errno, with the size).
  static absl::StatusOr<ZeroedPages> Create(size_t bytes, absl::string_view what);

  ZeroedPages() = default;  // empty: data() null, size() 0
  ZeroedPages(ZeroedPages&& other) noexcept;
  ZeroedPages& operator=(ZeroedPages&& other) noexcept;
  ZeroedPages(const ZeroedPages&) = delete;
  ZeroedPages& operator=(const ZeroedPages&) = delete;
  ~ZeroedPages();

  uint8_t* data() const { return base_; }
  size_t size() const { return bytes_; }

 private:
  ZeroedPages(uint8_t* base, size_t bytes) : base_(base), bytes_(bytes) {}
  void Release();

  uint8_t* base_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace mmuvisor

#endif  // MMUVISOR_NOTIFIER_BASE_ZEROED_PAGES_H_
