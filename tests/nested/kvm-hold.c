// kvm-hold: keeps KVM VMs with one vCPU each open until killed, so that the guest kernel's
// KVM static keys stay enabled for the whole nested run.
//
// Why: creating the first VM enables `preempt_notifier_key` (a jump label inside
// __schedule) and destroying the last one disables it again, and the first vCPU without an
// in-kernel LAPIC does the same to `kvm_has_noapic_vcpu`. Every such flip is a live text
// patch (text_poke_bp: int3, sync IPIs, rest, first byte). Under QEMU's multi-threaded TCG a
// CPU running __schedule on the other vCPU has been seen to execute the transient int3
// after the patch had completed ("Oops: int3" in __schedule, then a panic): with every test
// executable creating and destroying its own VMs, that was half of all 6.12 boots. Held
// open from before the first test, the keys flip once, while nothing else runs.
//
// A vCPU with its LAPIC in KVM (what the Machine gives long-mode CPL3 guests since
// 2026-12-04: KVM_CAP_SPLIT_IRQCHIP) flips another key: `apic_sw_disabled`, raised when the
// LAPIC is created software-disabled and lowered (deferred by a second) when it is freed.
// So a second VM, with the split irqchip and one vCPU, is held too; without it every test
// process patched the kernel's text twice more, and the soft lockups at the start of
// stress_kvm_test came back (tests/nested/README.md, 5).
//
// Run by the nested guest's init in the background (tests/nested/run-kvm-tests builds it
// with `cc -static`); prints "kvm-hold: holding" once both vCPUs exist.
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <string.h>
#include <errno.h>
#include <sys/ioctl.h>
#include <unistd.h>

int main(void) {
  int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) {
    printf("kvm-hold: open /dev/kvm: %s\n", strerror(errno));
    return 1;
  }
  int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) {
    printf("kvm-hold: KVM_CREATE_VM: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(vm, KVM_CREATE_VCPU, 0) < 0) {
    printf("kvm-hold: KVM_CREATE_VCPU: %s\n", strerror(errno));
    return 1;
  }
  // The second VM: split irqchip (LAPIC in KVM, 24 IOAPIC routes for userspace), one vCPU.
  int lapic_vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (lapic_vm < 0) {
    printf("kvm-hold: KVM_CREATE_VM (LAPIC): %s\n", strerror(errno));
    return 1;
  }
  struct kvm_enable_cap cap;
  memset(&cap, 0, sizeof(cap));
  cap.cap = KVM_CAP_SPLIT_IRQCHIP;
  cap.args[0] = 24;
  if (ioctl(lapic_vm, KVM_ENABLE_CAP, &cap) < 0) {
    printf("kvm-hold: KVM_CAP_SPLIT_IRQCHIP: %s\n", strerror(errno));
    return 1;
  }
  if (ioctl(lapic_vm, KVM_CREATE_VCPU, 0) < 0) {
    printf("kvm-hold: KVM_CREATE_VCPU (LAPIC): %s\n", strerror(errno));
    return 1;
  }
  printf("kvm-hold: holding\n");
  fflush(stdout);
  for (;;) pause();
}
