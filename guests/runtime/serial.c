/* Serial console output on COM1 (THR at MMV_PORT_SERIAL); mmv_serial_write is in ucall.c. */
#include "mmuvisor/guest_runtime.h"

void mmv_serial_putc(char c) { mmv_outb(MMV_PORT_SERIAL, (uint8_t)c); }

void mmv_serial_printf(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  size_t n = mmv_vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  mmv_serial_write(buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}
