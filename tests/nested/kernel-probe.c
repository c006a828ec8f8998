// kernel-probe: prints, one "probe:" line per fact, how this kernel's KVM answers the calls
// mmuvisor makes: capabilities, what KVM_RUN reports when a guest store hits a host mapping
// that is read-only / PROT_NONE / unmapped (errno, exit_reason, the memory_fault words),
// a KVM_MEM_READONLY slot, the dirty log, and the memslot error codes. Run it in the nested
// guest under each kernel and diff the outputs (tests/nested/README.md, "Comparing kernels"):
//
//   cc -static -O2 -o /tmp/kernel-probe tests/nested/kernel-probe.c
//   NESTED_KERNEL=6.1 NESTED_TESTS_REGEX=KvmSystem NESTED_EXTRA_CMD=/tmp/kernel-probe
//     tests/nested/run-kvm-tests BUILD_DIR      (one line; again with NESTED_KERNEL=6.12)
//
// Built against the host's <linux/kvm.h> (6.1 UAPI): newer numbers are spelled out here.
// The guest is 16-bit real-mode code at CPL0: `mov byte [0x1000], 0x42; out 0x10, al; hlt`.
#define _GNU_SOURCE  // strerrorname_np
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

enum { kCapUserMemory2 = 231, kCapMemoryFaultInfo = 232, kCapGuestMemfd = 234, kCapVmTypes = 235,
       kExitMemoryFault = 39, kPage = 4096 };

static int kvm_fd;

static void cap(const char* name, int nr) {
  printf("probe: cap %-28s = %d\n", name, ioctl(kvm_fd, KVM_CHECK_EXTENSION, nr));
}

static int set_slot(int vm, unsigned slot, unsigned flags, uint64_t gpa, uint64_t size, void* hva) {
  struct kvm_userspace_memory_region r = {slot, flags, gpa, size, (uint64_t)(uintptr_t)hva};
  return ioctl(vm, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

static const char* err(int rc) { return rc == 0 ? "ok" : strerrorname_np(-rc); }

// A VM with the code page at gpa 0 (slot 0) and the data page at gpa 0x1000 (slot 1).
struct vm { int fd, vcpu; struct kvm_run* run; uint8_t* code; uint8_t* data; };

static int make_vm(struct vm* v, unsigned data_flags, int data_prot, int data_unmapped) {
  static const uint8_t code[] = {0xc6, 0x06, 0x00, 0x10, 0x42,  // mov byte [0x1000], 0x42
                                 0xe6, 0x10,                    // out 0x10, al
                                 0xf4};                         // hlt
  v->fd = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  if (v->fd < 0) return -errno;
  v->code = mmap(NULL, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  v->data = mmap(NULL, kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  memcpy(v->code, code, sizeof(code));
  v->data[0] = 1;  // populated
  if (set_slot(v->fd, 0, 0, 0, kPage, v->code) < 0) return -errno;
  int rc = set_slot(v->fd, 1, data_flags, 0x1000, kPage, v->data);
  if (rc < 0) return rc;
  v->vcpu = ioctl(v->fd, KVM_CREATE_VCPU, 0);
  if (v->vcpu < 0) return -errno;
  int size = ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
  v->run = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, v->vcpu, 0);
  struct kvm_sregs s;
  ioctl(v->vcpu, KVM_GET_SREGS, &s);
  s.cs.base = 0; s.cs.selector = 0;
  s.ds.base = 0; s.ds.selector = 0;
  ioctl(v->vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs r = {0};
  r.rip = 0; r.rflags = 2; r.rax = 0x42;
  ioctl(v->vcpu, KVM_SET_REGS, &r);
  // Last, so that no later mmap (kvm_run's) can land on the hole the slot still points at.
  if (data_prot >= 0) mprotect(v->data, kPage, data_prot);
  if (data_unmapped) munmap(v->data, kPage);
  return 0;
}

static void close_vm(struct vm* v) { close(v->vcpu); close(v->fd); }

// Runs until an exit other than the store's port I/O, or an error; prints what KVM said.
static void run_case(const char* name, unsigned data_flags, int data_prot, int data_unmapped) {
  struct vm v;
  int rc = make_vm(&v, data_flags, data_prot, data_unmapped);
  if (rc < 0) { printf("probe: %-24s setup failed: %s\n", name, err(rc)); return; }
  for (int i = 0; i < 4; i++) {
    v.run->exit_reason = 0xdead;  // does KVM write exit_reason when KVM_RUN fails?
    memset(v.run->padding, 0xa5, 24);
    rc = ioctl(v.vcpu, KVM_RUN, 0) < 0 ? -errno : 0;
    uint64_t w[3];
    memcpy(w, v.run->padding, sizeof(w));
    struct kvm_regs r;
    ioctl(v.vcpu, KVM_GET_REGS, &r);
    if (rc < 0) {
      printf("probe: %-24s KVM_RUN=%s exit_reason=%#x memory_fault{flags=%#llx gpa=%#llx "
             "size=%#llx} rip=%#llx\n", name, err(rc), v.run->exit_reason,
             (unsigned long long)w[0], (unsigned long long)w[1], (unsigned long long)w[2],
             (unsigned long long)r.rip);
      break;
    }
    if (v.run->exit_reason == KVM_EXIT_MMIO) {
      printf("probe: %-24s exit MMIO gpa=%#llx len=%u write=%u data=%#x rip=%#llx\n", name,
             (unsigned long long)v.run->mmio.phys_addr, v.run->mmio.len, v.run->mmio.is_write,
             v.run->mmio.data[0], (unsigned long long)r.rip);
      continue;
    }
    if (v.run->exit_reason == KVM_EXIT_IO) {
      printf("probe: %-24s exit IO port=%#x (the guest went past the store; data page now %#x)\n",
             name, v.run->io.port, data_unmapped || data_prot == PROT_NONE ? 0 : v.data[0]);
      break;
    }
    printf("probe: %-24s exit_reason=%u rip=%#llx\n", name, v.run->exit_reason,
           (unsigned long long)r.rip);
    break;
  }
  close_vm(&v);
}

static void memslot_errors(void) {
  int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  uint8_t* p = mmap(NULL, 4 * kPage, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  printf("probe: memslot add                     %s\n", err(set_slot(vm, 0, 0, 0, 2 * kPage, p)));
  printf("probe: memslot overlap other slot      %s\n", err(set_slot(vm, 1, 0, kPage, 2 * kPage, p)));
  printf("probe: memslot move hva of live slot   %s\n", err(set_slot(vm, 0, 0, 0, 2 * kPage, p + kPage)));
  printf("probe: memslot resize live slot        %s\n", err(set_slot(vm, 0, 0, 0, 3 * kPage, p)));
  printf("probe: memslot unaligned size          %s\n", err(set_slot(vm, 2, 0, 0x10000, 100, p)));
  printf("probe: memslot unaligned hva           %s\n", err(set_slot(vm, 2, 0, 0x10000, kPage, p + 8)));
  printf("probe: memslot unknown flag bit 4      %s\n", err(set_slot(vm, 2, 1u << 4, 0x10000, kPage, p)));
  printf("probe: memslot id = NR_MEMSLOTS        %s\n",
         err(set_slot(vm, (unsigned)ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_MEMSLOTS), 0,
                      0x10000, kPage, p)));
  printf("probe: memslot delete absent slot      %s\n", err(set_slot(vm, 5, 0, 0, 0, NULL)));
  printf("probe: memslot toggle LOG_DIRTY        %s\n",
         err(set_slot(vm, 0, KVM_MEM_LOG_DIRTY_PAGES, 0, 2 * kPage, p)));
  uint64_t bitmap = 0;
  struct kvm_dirty_log log = {.slot = 0};
  log.dirty_bitmap = &bitmap;
  printf("probe: dirty log, logging slot         %s\n",
         err(ioctl(vm, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0));
  set_slot(vm, 0, 0, 0, 2 * kPage, p);
  printf("probe: dirty log, slot without logging %s\n",
         err(ioctl(vm, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0));
  log.slot = 7;
  printf("probe: dirty log, absent slot          %s\n",
         err(ioctl(vm, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0));
  printf("probe: memslot delete live slot        %s\n", err(set_slot(vm, 0, 0, 0, 0, NULL)));
  close(vm);
}

static void dirty_log_after_store(void) {
  struct vm v;
  int rc = make_vm(&v, KVM_MEM_LOG_DIRTY_PAGES, -1, 0);
  if (rc < 0) { printf("probe: dirty log store setup failed: %s\n", err(rc)); return; }
  rc = ioctl(v.vcpu, KVM_RUN, 0) < 0 ? -errno : 0;
  uint64_t bitmap = 0;
  struct kvm_dirty_log log = {.slot = 1};
  log.dirty_bitmap = &bitmap;
  int g1 = ioctl(v.fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
  uint64_t first = bitmap;
  bitmap = 0;
  int g2 = ioctl(v.fd, KVM_GET_DIRTY_LOG, &log) < 0 ? -errno : 0;
  printf("probe: dirty log after guest store     run=%s exit=%u get=%s bitmap=%#llx; again %s "
         "bitmap=%#llx\n", err(rc), v.run->exit_reason, err(g1), (unsigned long long)first,
         err(g2), (unsigned long long)bitmap);
  close_vm(&v);
}

// Port I/O at CPL3 in long mode with IOPL 0, granted only by the TSS I/O permission bitmap
// (the way mmuvisor's guests start), with TR loaded as a busy (type 11, what VMX requires) or
// an available (type 9) 64-bit TSS; and with IOPL 3 as the control. No IDT: a #GP is a
// triple fault, KVM_EXIT_SHUTDOWN. Layout: PML4 0x1000, PDPT 0x2000, PD 0x3000 (one 2 MiB
// user page at 0), GDT 0x4000, TSS 0x5000, bitmap 0x6000 (all ports granted, then 0xff),
// code 0x9000: `out 0x10, al; jmp .`.
static void cpl3_port_io(const char* name, uint8_t tr_type, unsigned iopl) {
  enum { kSize = 0x10000 };
  int vm = ioctl(kvm_fd, KVM_CREATE_VM, 0);
  uint8_t* m = mmap(NULL, kSize, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  uint64_t* pml4 = (uint64_t*)(m + 0x1000);
  uint64_t* pdpt = (uint64_t*)(m + 0x2000);
  uint64_t* pd = (uint64_t*)(m + 0x3000);
  pml4[0] = 0x2000 | 7;
  pdpt[0] = 0x3000 | 7;
  pd[0] = 0 | 0x87;  // 2 MiB, present, writable, user
  uint64_t* gdt = (uint64_t*)(m + 0x4000);
  gdt[1] = 0x00af9b000000ffffull;  // 0x08 kernel code64
  gdt[2] = 0x00cf93000000ffffull;  // 0x10 kernel data
  gdt[3] = 0x00affb000000ffffull;  // 0x18 user code64, DPL 3
  gdt[4] = 0x00cff3000000ffffull;  // 0x20 user data, DPL 3
  const uint64_t tss = 0x5000, limit = 0x1000 + 8192;  // covers the bitmap and its 0xff
  gdt[5] = (limit & 0xffff) | ((tss & 0xffffff) << 16) | ((uint64_t)tr_type << 40) |
           (1ull << 47) | (((limit >> 16) & 0xf) << 48) | (((tss >> 24) & 0xff) << 56);
  gdt[6] = tss >> 32;
  uint16_t iomap = 0x1000;
  memcpy(m + tss + 102, &iomap, sizeof(iomap));
  m[0x6000 + 8192] = 0xff;
  static const uint8_t code[] = {0xe6, 0x10, 0xeb, 0xfe};  // out 0x10, al; jmp .
  memcpy(m + 0x9000, code, sizeof(code));
  set_slot(vm, 0, 0, 0, kSize, m);
  int vcpu = ioctl(vm, KVM_CREATE_VCPU, 0);
  struct kvm_run* run = mmap(NULL, ioctl(kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0),
                             PROT_READ | PROT_WRITE, MAP_SHARED, vcpu, 0);
  struct kvm_sregs s;
  ioctl(vcpu, KVM_GET_SREGS, &s);
  struct kvm_segment cs = {.base = 0, .limit = 0xffffffff, .selector = 0x1b, .type = 0xb,
                           .present = 1, .dpl = 3, .db = 0, .s = 1, .l = 1, .g = 1};
  struct kvm_segment ds = {.base = 0, .limit = 0xffffffff, .selector = 0x23, .type = 0x3,
                           .present = 1, .dpl = 3, .db = 1, .s = 1, .l = 0, .g = 1};
  struct kvm_segment tr = {.base = tss, .limit = limit, .selector = 0x28, .type = tr_type,
                           .present = 1};
  s.cs = cs;
  s.ds = s.es = s.fs = s.gs = s.ss = ds;
  s.tr = tr;
  s.gdt.base = 0x4000; s.gdt.limit = 7 * 8 - 1;
  s.idt.base = 0; s.idt.limit = 0;
  s.cr3 = 0x1000; s.cr4 = 0x20; s.cr0 = 0x80000011; s.efer = 0x500;
  ioctl(vcpu, KVM_SET_SREGS, &s);
  struct kvm_regs r = {0};
  r.rip = 0x9000; r.rsp = 0x8f00; r.rflags = 2 | ((uint64_t)iopl << 12);
  ioctl(vcpu, KVM_SET_REGS, &r);
  int rc = ioctl(vcpu, KVM_RUN, 0) < 0 ? -errno : 0;
  ioctl(vcpu, KVM_GET_SREGS, &s);
  if (rc < 0) printf("probe: %-44s KVM_RUN=%s\n", name, err(rc));
  else if (run->exit_reason == KVM_EXIT_IO) printf("probe: %-44s exit IO port=%#x: granted\n", name, run->io.port);
  else if (run->exit_reason == KVM_EXIT_SHUTDOWN) printf("probe: %-44s exit SHUTDOWN: #GP (triple fault)\n", name);
  else printf("probe: %-44s exit_reason=%u\n", name, run->exit_reason);
  printf("probe: %-44s KVM_GET_SREGS tr.type=%u\n", name, s.tr.type);
  close(vcpu); close(vm); munmap(m, kSize);
}

int main(void) {
  kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
  if (kvm_fd < 0) { perror("probe: /dev/kvm"); return 1; }
  printf("probe: KVM_GET_API_VERSION = %d\n", ioctl(kvm_fd, KVM_GET_API_VERSION, 0));
  cap("USER_MEMORY", KVM_CAP_USER_MEMORY);
  cap("READONLY_MEM", KVM_CAP_READONLY_MEM);
  cap("SYNC_MMU", KVM_CAP_SYNC_MMU);
  cap("IMMEDIATE_EXIT", KVM_CAP_IMMEDIATE_EXIT);
  cap("NR_MEMSLOTS", KVM_CAP_NR_MEMSLOTS);
  cap("NR_VCPUS", KVM_CAP_NR_VCPUS);
  cap("MAX_VCPUS", KVM_CAP_MAX_VCPUS);
  cap("MAX_VCPU_ID", KVM_CAP_MAX_VCPU_ID);
  cap("MANUAL_DIRTY_LOG_PROTECT2", KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
  cap("DIRTY_LOG_RING", KVM_CAP_DIRTY_LOG_RING);
  cap("USER_MEMORY2 (231)", kCapUserMemory2);
  cap("MEMORY_FAULT_INFO (232)", kCapMemoryFaultInfo);
  cap("GUEST_MEMFD (234)", kCapGuestMemfd);
  cap("VM_TYPES (235)", kCapVmTypes);
  run_case("store, writable", 0, -1, 0);
  run_case("store, hva PROT_READ", 0, PROT_READ, 0);
  run_case("store, hva PROT_NONE", 0, PROT_NONE, 0);
  run_case("store, hva unmapped", 0, -1, 1);
  run_case("store, KVM_MEM_READONLY", KVM_MEM_READONLY, -1, 0);
  cpl3_port_io("cpl3 out, IOPL 0, TR busy 64-bit TSS (11)", 0xb, 0);
  cpl3_port_io("cpl3 out, IOPL 0, TR available TSS (9)", 0x9, 0);
  cpl3_port_io("cpl3 out, IOPL 3, TR busy 64-bit TSS (11)", 0xb, 3);
  dirty_log_after_store();
  memslot_errors();
  return 0;
}
