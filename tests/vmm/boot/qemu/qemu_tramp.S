/* A 64 KiB BIOS for QEMU (-bios) that applies, on every vCPU, the state the test left in
 * that vCPU's handoff block (the values of InitialRegs/InitialSregs) and enters the guest:
 * real mode -> long mode with the VMM's own GDT, IDT and page tables, then iretq to the
 * guest's CS:RIP at its CPL (or a far return to 0:IP for real-mode images).
 * Test-only: stands in for KVM_SET_SREGS/KVM_SET_REGS where /dev/kvm is absent.
 *
 * Handoff of vCPU i at HANDOFF + i * 0x80 (qemu_boot_test.cc writes it; keep in step):
 *   0x00 u32 mode (0 long, 1 real)   0x04 u32 nr_vcpus   0x08 rip   0x10 rsp   0x18 rdi
 *   0x20 rsi  0x28 rflags  0x30 cr0  0x38 cr3  0x40 cr4  0x48 efer
 *   0x50 u16 cs  0x52 u16 ss  0x54 u16 ds  0x56 u16 tr  0x58 gdt (u16 limit, u32 base)
 *   0x60 idt (u16 limit, u32 base)
 * The BSP (vCPU 0) starts the APs with INIT + SIPI (vector 0xf0: they start at 0xf000:0,
 * i.e. here too); each vCPU finds its block from its initial APIC ID (CPUID.1:EBX[31:24]). */
  .set HANDOFF, 0x7c00
  .set KERNEL_CODE, 0x08
  .set KERNEL_DATA, 0x10
  .set ICR_LOW, 0xfee00300
  .code16
  .text
  .globl rom_start
rom_start:
  cli
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  mov $1, %eax
  cpuid
  shr $24, %ebx
  shl $7, %bx
  add $HANDOFF, %bx            /* %bx = this vCPU's handoff block */
  cmpl $1, 0x00(%bx)
  jne to_long
  /* Real mode: SS:SP and CS:IP straight from the handoff. */
  mov 0x10(%bx), %sp
  pushw $0
  pushw 0x08(%bx)
  lret

to_long:
  lgdtl 0x58(%bx)
  lidtl 0x60(%bx)
  cmp $HANDOFF, %bx
  jne 1f                       /* APs: straight on */
  cmpl $1, 0x04(%bx)
  jbe 1f                       /* one vCPU: no APs to start */
  /* BSP: PE on, DS = flat data (base 0, 4 GiB), write the local APIC's ICR with 32-bit
   * addressing. CS keeps its real-mode cache; PE stays on for the switch below. */
  mov %cr0, %eax
  or $1, %eax
  mov %eax, %cr0
  mov $KERNEL_DATA, %ax
  mov %ax, %ds
  mov $ICR_LOW, %edi
  movl $0x000c4500, (%edi)     /* INIT, all excluding self */
  movl $0x000c46f0, (%edi)     /* SIPI, vector 0xf0 */
  movl $0x000c46f0, (%edi)     /* SIPI again, as the MP spec says */
1:
  mov 0x40(%bx), %eax
  mov %eax, %cr4
  mov 0x38(%bx), %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx
  mov 0x48(%bx), %eax
  and $~0x400, %eax            /* LMA is set by the CPU, not written */
  xor %edx, %edx
  wrmsr
  mov 0x30(%bx), %eax
  mov %eax, %cr0
  ljmpl $KERNEL_CODE, $start64

  .code64
start64:
  movzwl %bx, %ebx
  mov $KERNEL_DATA, %ax
  mov %ax, %ss
  mov 0x10(%rbx), %rsp         /* the iretq frame goes just below the guest's stack */
  /* ltr needs an available TSS: clear the busy bit KVM wants in TR. */
  movzwl 0x56(%rbx), %eax
  movl 0x5a(%rbx), %ecx
  andb $~0x02, 5(%rcx,%rax)
  ltr %ax
  movzwl 0x54(%rbx), %eax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %fs
  mov %ax, %gs
  movzwq 0x52(%rbx), %rax
  pushq %rax                   /* SS */
  pushq 0x10(%rbx)             /* RSP */
  pushq 0x28(%rbx)             /* RFLAGS */
  movzwq 0x50(%rbx), %rax
  pushq %rax                   /* CS */
  pushq 0x08(%rbx)             /* RIP */
  mov 0x18(%rbx), %rdi
  mov 0x20(%rbx), %rsi
  xor %eax, %eax
  xor %ebx, %ebx
  xor %ecx, %ecx
  xor %edx, %edx
  iretq

  .code16
  .org 0xfff0
reset:
  ljmp $0xf000, $0
  .org 0x10000
