/* printf-lite: enough formatting for guest messages (see mmuvisor/guest_runtime.h for the
 * subset). One rule keeps it safe: an argument is read only for a conversion this file
 * understands, with the type that conversion and its length modifier name. At the first
 * conversion it does not understand, it writes that conversion as it stands and stops:
 * every later argument's position would be a guess, and a %s reading an integer as a
 * pointer faults the guest. */
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

static void put_n(struct out* o, char c, int n) {
  while (n-- > 0) put(o, c);
}

/* One parsed conversion specification: %[flags][width][.precision][length]conversion. */
struct spec {
  int left;      /* '-' */
  int zero;      /* '0' */
  int alt;       /* '#' */
  char sign;     /* '+' or ' ' (forced sign of a non-negative signed number), or 0 */
  int width;     /* 0: none */
  int precision; /* -1: none */
  int length;    /* LEN_* */
};

enum { LEN_NONE, LEN_HH, LEN_H, LEN_64 };

/* The largest width or precision honoured; larger ones, as digits or as a '*' argument, count
 * as this. A width of 10^12 (or INT_MAX from '*') is a bug, not a reason for the padding
 * arithmetic in put_number_text to overflow an int or for 2^31 calls of put(). */
#define FIELD_MAX 100000000

static int clamp_field(int n) { return n > FIELD_MAX ? FIELD_MAX : n; }

/* Decimal digits, saturating at FIELD_MAX. */
static int parse_int(const char** p) {
  int n = 0;
  while (**p >= '0' && **p <= '9') {
    if (n < FIELD_MAX) n = n * 10 + (**p - '0');
    ++*p;
  }
  return clamp_field(n);
}

/* `prefix` (sign, "0x" or "") then `digits`, padded to the spec's precision and width. */
static void put_number_text(struct out* o, const struct spec* s, const char* prefix,
                            const char* digits, int n) {
  int plen = 0;
  while (prefix[plen]) ++plen;
  const int zeros = s->precision > n ? s->precision - n : 0;
  const int body = plen + zeros + n;
  int fill = s->width > body ? s->width - body : 0;
  /* '0' pads between prefix and digits, unless '-' or a precision says otherwise. */
  const int zero_fill = s->zero && !s->left && s->precision < 0;
  if (!s->left && !zero_fill) put_n(o, ' ', fill);
  for (int i = 0; i < plen; ++i) put(o, prefix[i]);
  if (zero_fill) put_n(o, '0', fill);
  put_n(o, '0', zeros);
  for (int i = 0; i < n; ++i) put(o, digits[i]);
  if (s->left) put_n(o, ' ', fill);
}

static void put_number(struct out* o, const struct spec* s, uint64_t v, int negative,
                       unsigned base, int upper, int alt_hex) {
  const char* digit_set = upper ? "0123456789ABCDEF" : "0123456789abcdef";
  char tmp[24];
  int n = 0;
  if (v != 0 || s->precision != 0) { /* C: "%.0d" of 0 prints no digits */
    do {
      tmp[n++] = digit_set[v % base];
      v /= base;
    } while (v);
  }
  char digits[24];
  for (int i = 0; i < n; ++i) digits[i] = tmp[n - 1 - i];
  struct spec adjusted = *s;
  const char* prefix = "";
  if (negative) prefix = "-";
  else if (s->sign == '+') prefix = "+";
  else if (s->sign == ' ') prefix = " ";
  if (alt_hex) prefix = upper ? "0X" : "0x";
  /* '#' with %o: the first digit is a 0 (by raising the precision when it is not). */
  if (s->alt && base == 8 && (n == 0 || digits[0] != '0') && adjusted.precision <= n) {
    adjusted.precision = n + 1;
  }
  put_number_text(o, &adjusted, prefix, digits, n);
}

static void put_text(struct out* o, const struct spec* s, const char* text) {
  int n = 0;
  /* Never read past the precision: the text need not be terminated within it. */
  while ((s->precision < 0 || n < s->precision) && text[n]) ++n;
  const int fill = s->width > n ? s->width - n : 0;
  if (!s->left) put_n(o, ' ', fill);
  for (int i = 0; i < n; ++i) put(o, text[i]);
  if (s->left) put_n(o, ' ', fill);
}

static int64_t signed_arg(va_list* ap, int length) {
  switch (length) {
    case LEN_HH: return (signed char)va_arg(*ap, int);
    case LEN_H: return (short)va_arg(*ap, int);
    case LEN_64: return va_arg(*ap, int64_t);
    default: return va_arg(*ap, int);
  }
}

static uint64_t unsigned_arg(va_list* ap, int length) {
  switch (length) {
    case LEN_HH: return (unsigned char)va_arg(*ap, unsigned int);
    case LEN_H: return (unsigned short)va_arg(*ap, unsigned int);
    case LEN_64: return va_arg(*ap, uint64_t);
    default: return va_arg(*ap, unsigned int);
  }
}

/* Formats `fmt` into `o`, reading arguments through `ap`. */
static void format(struct out* o, const char* fmt, va_list* ap) {
  for (const char* p = fmt; *p; ++p) {
    if (*p != '%') {
      put(o, *p);
      continue;
    }
    const char* start = p++;
    struct spec s = {0, 0, 0, 0, 0, -1, LEN_NONE};
    for (;; ++p) {
      if (*p == '-') s.left = 1;
      else if (*p == '0') s.zero = 1;
      else if (*p == '#') s.alt = 1;
      else if (*p == '+') s.sign = '+';
      else if (*p == ' ') { if (s.sign != '+') s.sign = ' '; }
      else break;
    }
    if (*p == '*') {
      const int w = va_arg(*ap, int);
      ++p;
      if (w < 0) {
        s.left = 1;
        s.width = w < -FIELD_MAX ? FIELD_MAX : -w; /* before negating: -INT_MIN overflows */
      } else {
        s.width = clamp_field(w);
      }
    } else {
      s.width = parse_int(&p);
    }
    if (*p == '.') {
      ++p;
      if (*p == '*') {
        const int prec = va_arg(*ap, int);
        ++p;
        s.precision = prec < 0 ? -1 : clamp_field(prec); /* negative: as if omitted */
      } else {
        s.precision = parse_int(&p);
      }
    }
    if (*p == 'h') {
      ++p;
      s.length = LEN_H;
      if (*p == 'h') { ++p; s.length = LEN_HH; }
    } else if (*p == 'l') {
      ++p;
      s.length = LEN_64;
      if (*p == 'l') ++p;
    } else if (*p == 'z' || *p == 'j' || *p == 't') {
      ++p;
      s.length = LEN_64; /* size_t, intmax_t, ptrdiff_t: all 64-bit here */
    }
    switch (*p) {
      case '%':
        put(o, '%');
        continue;
      case 'd':
      case 'i': {
        const int64_t v = signed_arg(ap, s.length);
        const uint64_t mag = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
        put_number(o, &s, mag, v < 0, 10, 0, 0);
        continue;
      }
      case 'u':
      case 'x':
      case 'X':
      case 'o': {
        const uint64_t v = unsigned_arg(ap, s.length);
        const unsigned base = *p == 'u' ? 10 : *p == 'o' ? 8 : 16;
        s.sign = 0; /* '+' and ' ' apply to signed conversions only */
        put_number(o, &s, v, 0, base, *p == 'X', s.alt && base == 16 && v != 0);
        continue;
      }
      case 'c':
      case 's':
      case 'p':
        if (s.length != LEN_NONE) break; /* %lc, %ls (wide): not supported */
        if (*p == 'c') {
          const char c = (char)va_arg(*ap, int);
          const int fill = s.width > 1 ? s.width - 1 : 0;
          if (!s.left) put_n(o, ' ', fill);
          put(o, c); /* not put_text: %c prints a NUL too */
          if (s.left) put_n(o, ' ', fill);
        } else if (*p == 's') {
          const char* text = va_arg(*ap, const char*);
          if (!text) text = s.precision < 0 || s.precision >= 6 ? "(null)" : "";
          put_text(o, &s, text);
        } else {
          s.sign = 0;
          s.precision = -1;
          put_number(o, &s, (uint64_t)(uintptr_t)va_arg(*ap, void*), 0, 16, 0, 1);
        }
        continue;
      case '\0':
        return; /* an unfinished specification at the end: nothing more to print */
      default:
        break;
    }
    /* Not understood: write the specification as it stands and stop reading arguments. */
    for (const char* q = start; q <= p; ++q) put(o, *q);
    return;
  }
}

size_t mmv_vsnprintf(char* buf, size_t size, const char* fmt, va_list ap) {
  struct out o = {buf, size, 0};
  va_list copy;
  va_copy(copy, ap); /* a va_list cannot portably be passed by address */
  format(&o, fmt, &copy);
  va_end(copy);
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
