# The guest of mmu_stress_test.cc (mmu_stress_guest.h carries the assembled
# bytes). Long mode at CPL3, entry at MMV_IMAGE_GPA, RDI = vCPU index. vCPU v owns the
# PAGES pages at DATA + v * PAGES * 4096. Phases p = 1, 2, 3: for each of its pages, OUT
# the page's gpa to PORT+4 (announce), then store the qword gpa ^ (p << 56) at its first
# byte; then OUT p to PORT (the host acts between phases). Then a ucall DONE (code 0) in
# its own ucall block.
.intel_syntax noprefix
.code64
.set PORT, 0x0e50
.set DATA, 0x200000
.set PAGES, 128
start:
  mov r15, rdi
  mov r12, rdi
  shl r12, 19
  add r12, DATA
  mov r8d, 1
phase:
  xor ecx, ecx
page:
  mov rbx, rcx
  shl rbx, 12
  add rbx, r12
  mov dx, PORT+4
  mov eax, ebx
  out dx, eax
  mov rax, r8
  shl rax, 56
  xor rax, rbx
  mov [rbx], rax
  inc rcx
  cmp rcx, PAGES
  jb page
  mov dx, PORT
  mov eax, r8d
  out dx, eax
  inc r8
  cmp r8, 4
  jb phase
  mov rbx, r15
  shl rbx, 9
  add rbx, 0x4000
  mov dword ptr [rbx], 0x55434c4c
  mov dword ptr [rbx+4], 4
  mov qword ptr [rbx+8], 0
  mov eax, ebx
  mov dx, 0x0e00
  out dx, eax
spin:
  jmp spin
