# The guest of machine_host_test.cc (machine_test_guest.h carries the assembled
# bytes). Long mode at CPL3, entry at MMV_IMAGE_GPA (0x100000). Rounds r = 1, 2, ...: write
# w[i] = (i * K) ^ r over DATA, OUT r to PORT (the host acts), verify every word, OUT the
# mismatch count to PORT+4, IN PORT+8 (non-zero: next round). Then a ucall DONE with the
# total mismatches as exit code.
.intel_syntax noprefix
.code64
.set PORT, 0x0e40
.set DATA, 0x200000
.set WORDS, 256*512
start:
  mov r12, DATA
  mov r13, WORDS
  movabs r9, 0x9E3779B97F4A7C15
  mov r8d, 1
  xor r14d, r14d
round:
  xor ecx, ecx
wloop:
  mov rax, rcx
  imul rax, r9
  xor rax, r8
  mov [r12 + rcx*8], rax
  inc rcx
  cmp rcx, r13
  jb wloop
  mov dx, PORT
  mov eax, r8d
  out dx, eax
  xor ecx, ecx
  xor r10d, r10d
vloop:
  mov rax, rcx
  imul rax, r9
  xor rax, r8
  cmp [r12 + rcx*8], rax
  je vok
  inc r10
vok:
  inc rcx
  cmp rcx, r13
  jb vloop
  add r14, r10
  mov dx, PORT+4
  mov eax, r10d
  out dx, eax
  inc r8
  mov dx, PORT+8
  in eax, dx
  test eax, eax
  jnz round
  mov rbx, 0x4000
  mov dword ptr [rbx], 0x55434c4c
  mov dword ptr [rbx+4], 4
  mov [rbx+8], r14
  mov dx, 0x0e00
  mov eax, 0x4000
  out dx, eax
spin:
  jmp spin
