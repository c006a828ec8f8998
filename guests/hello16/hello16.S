/* hello16: a real-mode guest. The VMM enters at _start with CS = DS = ES = SS = 0,
 * IP = _start, SP = MMV_REAL_MODE_STACK_TOP. It writes "hello16: Hello from real mode!\n"
 * to the serial port, then sends DONE(0) through vCPU 0's ucall block with a 32-bit OUT
 * (operand-size prefix), and halts (HLT is legal at CPL0) should the VMM resume it.
 * Constants mirror guests/include/mmuvisor/guest_abi.h (the assembler cannot read the
 * C header); tests/vmm/boot checks the image loads as real mode at MMV_REAL_MODE_LOAD_GPA. */
  .set PORT_SERIAL, 0x3f8      /* MMV_PORT_SERIAL */
  .set PORT_UCALL, 0x0e00      /* MMV_PORT_UCALL */
  .set UCALL_BLOCK, 0x4000     /* MMV_UCALL_GPA: vCPU 0's struct mmv_ucall */
  .set UCALL_MAGIC, 0x55434c4c /* MMV_UCALL_MAGIC */
  .set UCALL_DONE, 4           /* MMV_UCALL_DONE */

  .code16
  .section .text.start, "ax"
  .globl _start
_start:
  cli
  cld
  xor %ax, %ax
  mov %ax, %ds
  mov %ax, %es
  mov $greeting, %si
  mov $PORT_SERIAL, %dx
1:
  lodsb
  test %al, %al
  jz 2f
  outb %al, %dx
  jmp 1b
2:
  /* struct mmv_ucall: magic @0, cmd @4, args[0] @8 (exit code 0), text[0] @56. */
  movl $UCALL_MAGIC, UCALL_BLOCK
  movl $UCALL_DONE, UCALL_BLOCK + 4
  movl $0, UCALL_BLOCK + 8
  movl $0, UCALL_BLOCK + 12
  movb $0, UCALL_BLOCK + 56
  mov $PORT_UCALL, %dx
  mov $UCALL_BLOCK, %eax
  outl %eax, %dx
3:
  hlt
  jmp 3b

  .section .rodata, "a"
greeting:
  .asciz "hello16: Hello from real mode!\n"

  /* PT_NOTE "mmuvisor" / MMV_ELF_NOTE_BOOT_MODE (1) = MMV_BOOT_MODE_REAL16 (1). */
  .section .note.mmuvisor, "a", @note
  .balign 4
  .long 9, 4, 1
  .asciz "mmuvisor"
  .balign 4
  .long 1

  .section .note.GNU-stack, "", @progbits
