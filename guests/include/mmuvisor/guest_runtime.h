/* The guest runtime (mmuvisor SDK): what every long-mode mmuvisor guest links. It provides
 * _start, calls the guest's mmv_main(), and gives ucall (print, sync, report, assert with
 * file:line, done), serial output, a printf-lite, boot-info and argument accessors and its
 * own memcpy/memset/memmove/memcmp/strlen. The ABI itself (layout, ports, blocks) is
 * mmuvisor/guest_abi.h; the guide is guests/README.md.
 *
 * Runs in the guest at CPL3 (or CPL0), identity-mapped, no interrupts, no libc. Each vCPU
 * uses its own ucall block, found from its stack pointer (vCPU i's stack region is
 * [ram_size - (i+1)*MMV_STACK_SIZE, ram_size - i*MMV_STACK_SIZE)), so every call here is
 * safe on any vCPU concurrently without locks; one vCPU must not call it from two contexts
 * at once (there are none: no interrupts). A guest provides mmv_main(); returning from it
 * sends DONE with the returned code.
 */
#ifndef MMUVISOR_GUEST_RUNTIME_H_
#define MMUVISOR_GUEST_RUNTIME_H_

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "mmuvisor/guest_abi.h"

/* Provided by each guest; runs on every vCPU. vcpu = RDI at entry (the vCPU index),
 * nr_args = RSI at entry (= mmv_boot_info.nr_args: how many run arguments were given).
 * The return value is the DONE exit code (0 = success). */
int mmv_main(uint32_t vcpu, uint64_t nr_args);

/* Port I/O (allowed at CPL3 because the VMM's TSS I/O bitmap grants every port). */
static inline void mmv_outb(uint16_t port, uint8_t value) {
  __asm__ volatile("outb %0, %1" : : "a"(value), "Nd"(port) : "memory");
}
static inline void mmv_outl(uint16_t port, uint32_t value) {
  __asm__ volatile("outl %0, %1" : : "a"(value), "Nd"(port) : "memory");
}
static inline void mmv_pause(void) { __asm__ volatile("pause" : : : "memory"); }
/* Current privilege level: the RPL bits of CS. */
static inline uint32_t mmv_cpl(void) {
  uint16_t cs;
  __asm__ volatile("mov %%cs, %0" : "=r"(cs));
  return cs & 3u;
}

/* The boot info the VMM wrote at MMV_BOOT_INFO_GPA (sizes, free memory, seed, arguments). */
const volatile struct mmv_boot_info* mmv_boot_info(void);
uint32_t mmv_vcpu_index(void);
/* Run arguments (`mmuvisor run GUEST -- ARG...`): how many were given, and argument i, or
 * `fallback` when fewer than i + 1 were given. */
uint32_t mmv_nr_args(void);
uint64_t mmv_arg(uint32_t i, uint64_t fallback);

/* ucall: fill this vCPU's block and OUT its address to MMV_PORT_UCALL. */
void mmv_ucall(uint32_t cmd, const uint64_t args[6], const char* text);
/* PRINT: one line of at most MMV_UCALL_TEXT_MAX - 1 bytes (longer text is cut). */
void mmv_print(const char* fmt, ...) __attribute__((format(printf, 1, 2)));
void mmv_sync(uint64_t stage, uint64_t v1, uint64_t v2, uint64_t v3);
/* REPORT: kind plus up to five values (progress, mismatches, ...). */
void mmv_report(uint64_t kind, uint64_t v1, uint64_t v2, uint64_t v3, uint64_t v4,
                uint64_t v5);
/* BALLOON: hand [gpa, gpa + len) back to the host. */
void mmv_balloon(uint64_t gpa, uint64_t len);
__attribute__((noreturn)) void mmv_done(uint64_t code);
__attribute__((noreturn)) void mmv_assert_fail(const char* file, int line, const char* expr,
                                               uint64_t a, uint64_t b);

/* Exit code sent with DONE after a failed assertion (if the VMM resumes the vCPU). */
#define MMV_EXIT_ASSERT 0xa5u

#define MMV_ASSERT(expr) \
  ((expr) ? (void)0 : mmv_assert_fail(__FILE__, __LINE__, #expr, 0, 0))
#define MMV_ASSERT_EQ(a, b)                                                   \
  do {                                                                        \
    uint64_t mmv_a_ = (uint64_t)(a), mmv_b_ = (uint64_t)(b);                  \
    if (mmv_a_ != mmv_b_) mmv_assert_fail(__FILE__, __LINE__, #a " == " #b, mmv_a_, mmv_b_); \
  } while (0)

/* Serial console (COM1, MMV_PORT_SERIAL). mmv_serial_putc writes THR (one exit per byte:
 * the VMM's UART is always ready, so LSR is not polled). mmv_serial_write and
 * mmv_serial_printf hand the bytes over with a ucall SERIAL instead, one exit per
 * MMV_UCALL_TEXT_MAX bytes; the console receives them exactly as if written to THR. */
void mmv_serial_putc(char c);
void mmv_serial_write(const char* s, size_t len);
void mmv_serial_printf(const char* fmt, ...) __attribute__((format(printf, 1, 2)));

/* printf-lite: conversions %% %c %s %d %i %u %x %X %o %p; flags '-', '0', '#' (0x/0X for
 * %x/%X, a leading 0 for %o), '+' and ' ' (signed conversions); a width and a .precision
 * (minimum digits, or at most that many bytes of a %s, which need not be terminated within
 * it), each as digits or '*' (an int argument), any above 100000000 taken as 100000000;
 * length modifiers hh, h (int arguments cut to char/short), l, ll, z, j, t (64-bit).
 * Anything else (%f, %n, %ls, %lc, a ' flag, ...) is not understood, though format(printf)
 * lets GCC accept it: it is printed as written, e.g. "%f", and formatting stops there,
 * reading no further argument. Always NUL-terminates (size > 0); returns the untruncated
 * length. */
size_t mmv_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap);
size_t mmv_snprintf(char* buf, size_t size, const char* fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Our own string functions (the compiler may also emit calls to the mem* ones). */
void* memcpy(void* dst, const void* src, size_t n);
void* memmove(void* dst, const void* src, size_t n);
void* memset(void* dst, int c, size_t n);
int memcmp(const void* a, const void* b, size_t n);
size_t strlen(const char* s);

#endif /* MMUVISOR_GUEST_RUNTIME_H_ */
