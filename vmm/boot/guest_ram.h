// GuestRamView: a non-owning view of guest RAM as one contiguous host mapping covering
// guest-physical [0, size). Everything in vmm/boot/ writes guest memory through it.
//
// Invariants: `host` points at `size` writable bytes that outlive the view; the view never
// owns, maps or unmaps anything. Copyable. Not synchronised: the boot code runs before any
// vCPU does, on the thread that builds the VM.
#ifndef MMUVISOR_VMM_BOOT_GUEST_RAM_H_
#define MMUVISOR_VMM_BOOT_GUEST_RAM_H_

#include <cstdint>

namespace mmuvisor::vmm {

struct GuestRamView {
  uint8_t* host = nullptr;  // host address of guest-physical 0
  uint64_t size = 0;        // bytes of guest RAM

  // True when the half-open range [gpa, gpa + len) lies inside RAM (no wrap-around).
  bool Contains(uint64_t gpa, uint64_t len) const {
    return gpa <= size && len <= size - gpa;
  }
  // Host address of `gpa`. REQUIRES: Contains(gpa, bytes you access).
  uint8_t* At(uint64_t gpa) const { return host + gpa; }
};

}  // namespace mmuvisor::vmm

#endif  // MMUVISOR_VMM_BOOT_GUEST_RAM_H_
