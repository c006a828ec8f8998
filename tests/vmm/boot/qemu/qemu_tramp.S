/* A 64 KiB BIOS for QEMU (-bios) that applies the state boot_image_dump left at 0x7e00
 * (the values of InitialRegs/InitialSregs) and enters the guest: real mode -> long mode with
 * the VMM's own GDT, IDT and page tables, then iretq to the guest's CS:RIP at its CPL.
 * Test-only: stands in for KVM_SET_SREGS/KVM_SET_REGS where /dev/kvm is absent. */
  .set H, 0x7e00
  .code16
  .text
  .globl rom_start
rom_start:
start16:
  cli
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %ss
  cmpl $1, H+0x00
  jne to_long
  /* Real mode: SS:SP and CS:IP straight from the handoff. */
  mov H+0x10, %sp
  pushw $0
  pushw H+0x08
  lret
to_long:
  lgdtl H+0x58
  lidtl H+0x60
  mov H+0x40, %eax
  mov %eax, %cr4
  mov H+0x38, %eax
  mov %eax, %cr3
  mov $0xc0000080, %ecx
  mov H+0x48, %eax
  and $~0x400, %eax          /* LMA is set by the CPU, not written */
  xor %edx, %edx
  wrmsr
  mov H+0x30, %eax
  mov %eax, %cr0
  ljmpl $0x08, $start64

  .code64
start64:
  mov $0x10, %ax
  mov %ax, %ss
  mov H+0x10, %rsp           /* the iretq frame goes just below the guest's stack */
  /* ltr needs an available TSS: clear the busy bit KVM wants in TR. */
  movzwl H+0x56, %eax
  movl H+0x5a, %ebx
  andb $~0x02, 5(%rbx,%rax)
  ltr %ax
  movzwl H+0x54, %eax
  mov %ax, %ds
  mov %ax, %es
  mov %ax, %fs
  mov %ax, %gs
  movzwq H+0x52, %rax
  pushq %rax                 /* SS */
  pushq H+0x10               /* RSP */
  pushq H+0x28               /* RFLAGS */
  movzwq H+0x50, %rax
  pushq %rax                 /* CS */
  pushq H+0x08               /* RIP */
  mov H+0x18, %rdi
  mov H+0x20, %rsi
  xor %eax, %eax
  xor %ebx, %ebx
  iretq

  .code16
  .org 0xfff0
reset:
  ljmp $0xf000, $(start16 - rom_start)
  .org 0x10000
