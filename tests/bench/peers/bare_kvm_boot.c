/* bare_kvm_boot: the whole-process baseline of tests/bench/vmm (BM_ProcessBoot) and of
 * tests/bench/peers/run. The least a KVM program does to boot a 64-bit guest and stop:
 * open /dev/kvm, create a VM, one 2 MiB memslot of anonymous memory, one vCPU with KVM's
 * supported CPUID (KVM refuses EFER.LME without it), long mode (identity page tables
 * with one 2 MiB page, flat 64-bit code segment), KVM_RUN until the guest's HLT, exit.
 * The guest is one `hlt` at CPL0 (on kvm_pvm one emulated instruction).
 *
 * `bare_kvm_boot N` (0 <= N <= 4096): the guest first writes N bytes to port 0x3f8, one
 * `out` each, so the run takes N KVM_EXIT_IO exits (the program answers none of them)
 * before the HLT: the same number of exits as a guest that prints, for comparing equal
 * guest work (BM_ProcessBoot's `same_exits` variant).
 *
 * Exit status 0 on KVM_EXIT_HLT after exactly N port exits; 1 with a message naming the
 * failed step otherwise.
 * Plain C and raw ioctls on purpose: it is the floor mmuvisor's boot is compared with. */
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#define MEM_BYTES (2u << 20)
#define PML4 0x1000u
#define PDPT 0x2000u
#define PD 0x3000u
#define CODE 0x4000u
#define MAX_OUTS 4096u

static void die(const char* what) {
  perror(what);
  exit(1);
}

int main(int argc, char** argv) {
  unsigned long outs = 0;
  char* end = NULL;
  if (argc == 2) outs = strtoul(argv[1], &end, 10);
  if (argc > 2 || (argc == 2 && (argv[1][0] < '0' || argv[1][0] > '9' || *end != '\0' ||
                                 outs > MAX_OUTS))) {
    fprintf(stderr, "usage: bare_kvm_boot [N]: N port writes before the hlt, 0..%u\n", MAX_OUTS);
    return 1;
  }
  const int kvm = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm < 0) die("open /dev/kvm");
  const int vm = ioctl(kvm, KVM_CREATE_VM, 0);
  if (vm < 0) die("KVM_CREATE_VM");
  uint8_t* mem = mmap(NULL, MEM_BYTES, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (mem == MAP_FAILED) die("mmap guest memory");
  ((uint64_t*)(mem + PML4))[0] = PDPT | 3;  /* present, writable */
  ((uint64_t*)(mem + PDPT))[0] = PD | 3;
  ((uint64_t*)(mem + PD))[0] = 0x83;  /* present, writable, 2 MiB page at 0 */
  uint8_t* code_at = mem + CODE;
  *code_at++ = 0x66; /* mov $0x3f8, %dx */
  *code_at++ = 0xba;
  *code_at++ = 0xf8;
  *code_at++ = 0x03;
  for (unsigned long i = 0; i < outs; ++i) *code_at++ = 0xee; /* out %al, (%dx) */
  *code_at = 0xf4;                                            /* hlt */
  struct kvm_userspace_memory_region region;
  memset(&region, 0, sizeof(region));
  region.memory_size = MEM_BYTES;
  region.userspace_addr = (uint64_t)(uintptr_t)mem;
  if (ioctl(vm, KVM_SET_USER_MEMORY_REGION, &region) < 0) die("KVM_SET_USER_MEMORY_REGION");
  const int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  if (vcpu < 0) die("KVM_CREATE_VCPU");
  const int run_size = ioctl(kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
  if (run_size <= 0) die("KVM_GET_VCPU_MMAP_SIZE");
  struct kvm_run* run = mmap(NULL, (size_t)run_size, PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  if (run == MAP_FAILED) die("mmap kvm_run");

  const unsigned nent = 256;
  struct kvm_cpuid2* cpuid = calloc(1, sizeof(*cpuid) + nent * sizeof(struct kvm_cpuid_entry2));
  if (cpuid == NULL) die("calloc");
  cpuid->nent = nent;
  if (ioctl(kvm, KVM_GET_SUPPORTED_CPUID, cpuid) < 0) die("KVM_GET_SUPPORTED_CPUID");
  if (ioctl(vcpu, KVM_SET_CPUID2, cpuid) < 0) die("KVM_SET_CPUID2");

  struct kvm_sregs sregs;
  if (ioctl(vcpu, KVM_GET_SREGS, &sregs) < 0) die("KVM_GET_SREGS");
  struct kvm_segment code;
  memset(&code, 0, sizeof(code));
  code.limit = 0xffffffff;
  code.selector = 8;
  code.type = 11; /* execute/read, accessed */
  code.present = 1;
  code.s = 1;
  code.l = 1;
  code.g = 1;
  struct kvm_segment data = code;
  data.selector = 16;
  data.type = 3; /* read/write, accessed */
  data.l = 0;
  data.db = 1;
  sregs.cs = code;
  sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
  sregs.cr3 = PML4;
  sregs.cr4 = 1u << 5;                                       /* PAE */
  sregs.cr0 = 0x80000000u | 0x10000u | 0x20u | 0x10u | 0x2u | 0x1u; /* PG WP NE ET MP PE */
  sregs.efer = 0x500;                                        /* LME | LMA */
  if (ioctl(vcpu, KVM_SET_SREGS, &sregs) < 0) die("KVM_SET_SREGS");
  struct kvm_regs regs;
  memset(&regs, 0, sizeof(regs));
  regs.rip = CODE;
  regs.rflags = 2;
  regs.rsp = MEM_BYTES;
  if (ioctl(vcpu, KVM_SET_REGS, &regs) < 0) die("KVM_SET_REGS");
  unsigned long io_exits = 0;
  for (;;) {
    if (ioctl(vcpu, KVM_RUN, 0) < 0) die("KVM_RUN");
    if (run->exit_reason == KVM_EXIT_HLT) {
      if (io_exits == outs) return 0;
      fprintf(stderr, "bare_kvm_boot: %lu port exits before the hlt, expected %lu\n", io_exits,
              outs);
      return 1;
    }
    if (run->exit_reason == KVM_EXIT_IO) {
      ++io_exits;
      continue;
    }
    if (run->exit_reason != KVM_EXIT_INTR) {
      fprintf(stderr, "bare_kvm_boot: unexpected exit reason %u\n", run->exit_reason);
      return 1;
    }
  }
}
