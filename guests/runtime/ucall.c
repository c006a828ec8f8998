/* ucall: guest -> VMM calls through this vCPU's block and MMV_PORT_UCALL. */
#include "mmuvisor/guest_runtime.h"

const volatile struct mmv_boot_info* mmv_boot_info(void) {
  return (const volatile struct mmv_boot_info*)(uintptr_t)MMV_BOOT_INFO_GPA;
}

uint32_t mmv_nr_args(void) {
  const uint32_t n = mmv_boot_info()->nr_args;
  return n < MMV_BOOT_INFO_MAX_ARGS ? n : MMV_BOOT_INFO_MAX_ARGS;
}

uint64_t mmv_arg(uint32_t i, uint64_t fallback) {
  return i < mmv_nr_args() ? mmv_boot_info()->args[i] : fallback;
}

uint32_t mmv_vcpu_index(void) {
  uintptr_t rsp;
  __asm__ volatile("mov %%rsp, %0" : "=r"(rsp));
  return (uint32_t)((mmv_boot_info()->ram_size - rsp) / MMV_STACK_SIZE);
}

static struct mmv_ucall* this_ucall(void) {
  return (struct mmv_ucall*)(uintptr_t)(MMV_UCALL_GPA +
                                        (uint64_t)mmv_vcpu_index() * MMV_UCALL_STRIDE);
}

/* The OUT is synchronous: the VMM has read the block when it resumes this vCPU, so the
 * block may be reused at once. The "memory" clobber on mmv_outl orders the stores. */
static void send(struct mmv_ucall* uc, uint32_t cmd) {
  uc->magic = MMV_UCALL_MAGIC;
  uc->cmd = cmd;
  mmv_outl(MMV_PORT_UCALL, (uint32_t)(uintptr_t)uc);
}

/* Up to MMV_UCALL_TEXT_MAX bytes per exit: on a shadow-paging host every exit from ring 3
 * is a world switch (~40-60 us on kvm_pvm), one OUT per byte made a line cost milliseconds. */
void mmv_serial_write(const char* s, size_t len) {
  struct mmv_ucall* uc = this_ucall();
  while (len > 0) {
    const size_t n = len < MMV_UCALL_TEXT_MAX ? len : MMV_UCALL_TEXT_MAX;
    for (size_t i = 0; i < n; ++i) uc->text[i] = s[i];
    for (int i = 0; i < 6; ++i) uc->args[i] = 0;
    uc->args[0] = n;
    send(uc, MMV_UCALL_SERIAL);
    s += n;
    len -= n;
  }
}

void mmv_ucall(uint32_t cmd, const uint64_t args[6], const char* text) {
  struct mmv_ucall* uc = this_ucall();
  for (int i = 0; i < 6; ++i) uc->args[i] = args ? args[i] : 0;
  size_t n = 0;
  if (text) {
    for (; n + 1 < MMV_UCALL_TEXT_MAX && text[n]; ++n) uc->text[n] = text[n];
  }
  uc->text[n] = '\0';
  send(uc, cmd);
}

void mmv_print(const char* fmt, ...) {
  struct mmv_ucall* uc = this_ucall();
  va_list ap;
  va_start(ap, fmt);
  mmv_vsnprintf(uc->text, MMV_UCALL_TEXT_MAX, fmt, ap);
  va_end(ap);
  for (int i = 0; i < 6; ++i) uc->args[i] = 0;
  send(uc, MMV_UCALL_PRINT);
}

void mmv_sync(uint64_t stage, uint64_t v1, uint64_t v2, uint64_t v3) {
  const uint64_t args[6] = {stage, v1, v2, v3, 0, 0};
  mmv_ucall(MMV_UCALL_SYNC, args, 0);
}

void mmv_report(uint64_t kind, uint64_t v1, uint64_t v2, uint64_t v3, uint64_t v4,
                uint64_t v5) {
  const uint64_t args[6] = {kind, v1, v2, v3, v4, v5};
  mmv_ucall(MMV_UCALL_REPORT, args, 0);
}

void mmv_balloon(uint64_t gpa, uint64_t len) {
  const uint64_t args[6] = {gpa, len, 0, 0, 0, 0};
  mmv_ucall(MMV_UCALL_BALLOON, args, 0);
}

void mmv_done(uint64_t code) {
  const uint64_t args[6] = {code, 0, 0, 0, 0, 0};
  mmv_ucall(MMV_UCALL_DONE, args, 0);
  /* The VMM stops the vCPU at DONE; HLT would #GP at CPL3, so spin if it ever returns. */
  for (;;) mmv_pause();
}

void mmv_assert_fail(const char* file, int line, const char* expr, uint64_t a, uint64_t b) {
  struct mmv_ucall* uc = this_ucall();
  mmv_snprintf(uc->text, MMV_UCALL_TEXT_MAX, "%s:%d: %s", file, line, expr);
  uc->args[0] = (uint64_t)line;
  uc->args[1] = a;
  uc->args[2] = b;
  for (int i = 3; i < 6; ++i) uc->args[i] = 0;
  send(uc, MMV_UCALL_ASSERT);
  mmv_done(MMV_EXIT_ASSERT);
}
