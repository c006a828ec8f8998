/* Long-mode entry. The VMM enters here with RDI = vCPU index, RSI = number of run
 * arguments and RSP = top of this vCPU's stack - 8 (mmuvisor/guest_abi.h). */
  .section .text.start, "ax"
  .globl _start
  .type _start, @function
_start:
  xor %ebp, %ebp          /* end of the frame-pointer chain */
  and $-16, %rsp          /* ABI: RSP+8 is 16-byte aligned at a callee's entry */
  call mmv_start          /* mmv_start(index, nr_args): never returns */
1:
  pause
  jmp 1b
  .size _start, . - _start

  .section .note.GNU-stack, "", @progbits
