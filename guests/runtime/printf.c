/* printf-lite: enough formatting for guest messages (see mmuvisor/guest_runtime.h for the subset). */
#include "mmuvisor/guest_runtime.h"

struct out {
  char* buf;
  size_t size;
  size_t len; /* characters produced so far, truncated or not */
};

static void put(struct out* o, char c) {
  if (o->len + 1 < o->size) o->buf[o->len] = c;
  ++o->len;
}

static void put_padded(struct out* o, const char* s, size_t n, int width, int left, char pad) {
  int fill = width > (int)n ? width - (int)n : 0;
  if (!left) while (fill-- > 0) put(o, pad);
  for (size_t i = 0; i < n; ++i) put(o, s[i]);
  if (left) while (fill-- > 0) put(o, ' ');
}

static void put_number(struct out* o, uint64_t v, int negative, unsigned base, int upper,
                       int width, int left, char pad) {
  const char* digits = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char tmp[24];
  size_t n = 0;
  do {
    tmp[n++] = digits[v % base];
    v /= base;
  } while (v);
  if (negative) {
    if (pad == '0') {
      put(o, '-');
      if (width > 0) --width;
    } else {
      tmp[n++] = '-';
    }
  }
  char text[24];
  for (size_t i = 0; i < n; ++i) text[i] = tmp[n - 1 - i];
  put_padded(o, text, n, width, left, pad);
}

size_t mmv_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) {
  struct out o = {buf, size, 0};
  for (const char* p = fmt; *p; ++p) {
    if (*p != '%') {
      put(&o, *p);
      continue;
    }
    ++p;
    int left = 0;
    char pad = ' ';
    for (;; ++p) {
      if (*p == '-') left = 1;
      else if (*p == '0') pad = '0';
      else break;
    }
    int width = 0;
    while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
    int longs = 0;
    while (*p == 'l') { ++longs; ++p; }
    if (*p == 'z') { longs = 2; ++p; }
    if (left) pad = ' ';
    switch (*p) {
      case '%': put(&o, '%'); break;
      case 'c': {
        const char c = (char)va_arg(ap, int);
        put_padded(&o, &c, 1, width, left, ' ');
        break;
      }
      case 's': {
        const char* s = va_arg(ap, const char*);
        if (!s) s = "(null)";
        put_padded(&o, s, strlen(s), width, left, ' ');
        break;
      }
      case 'd':
      case 'i': {
        const int64_t v = longs ? va_arg(ap, int64_t) : va_arg(ap, int);
        const uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        put_number(&o, mag, v < 0, 10, 0, width, left, pad);
        break;
      }
      case 'u':
      case 'x':
      case 'X': {
        const uint64_t v = longs ? va_arg(ap, uint64_t) : va_arg(ap, unsigned int);
        put_number(&o, v, 0, *p == 'u' ? 10 : 16, *p == 'X', width, left, pad);
        break;
      }
      case 'p': {
        const uint64_t v = (uint64_t)(uintptr_t)va_arg(ap, void*);
        put(&o, '0');
        put(&o, 'x');
        put_number(&o, v, 0, 16, 0, width, left, pad);
        break;
      }
      case '\0':
        --p; /* a lone '%' at the end: stop at the terminator */
        break;
      default: /* unknown conversion: print it verbatim */
        put(&o, '%');
        put(&o, *p);
        break;
    }
  }
  if (size) buf[o.len < size ? o.len : size - 1] = '\0';
  return o.len;
}

size_t mmv_snprintf(char* buf, size_t size, const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  size_t n = mmv_vsnprintf(buf, size, fmt, ap);
  va_end(ap);
  return n;
}
