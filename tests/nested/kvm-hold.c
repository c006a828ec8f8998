// kvm-hold: keeps one KVM VM with one vCPU open until killed, so that the guest kernel's
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
// Run by the nested guest's init in the background (tests/nested/run-kvm-tests builds it
// with `cc -static`); prints "kvm-hold: holding" once the vCPU exists.
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
  printf("kvm-hold: holding\n");
  fflush(stdout);
  for (;;) pause();
}
