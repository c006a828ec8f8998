/* Serial console output on COM1 (THR at MMV_PORT_SERIAL). */
#include "mmuvisor/guest_runtime.h"

void mmv_serial_putc(char c) { mmv_outb(MMV_PORT_SERIAL, (uint8_t)c); }

void mmv_serial_write(const char* s, size_t len) {
  for (size_t i = 0; i < len; ++i) mmv_serial_putc(s[i]);
}

void mmv_serial_printf(const char* fmt, ...) {
  char buf[256];
  va_list ap;
  va_start(ap, fmt);
  size_t n = mmv_vsnprintf(buf, sizeof(buf), fmt, ap);
  va_end(ap);
  mmv_serial_write(buf, n < sizeof(buf) ? n : sizeof(buf) - 1);
}
