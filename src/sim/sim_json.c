/* sim_json: JSON written byte for byte as Go's encoding/json writes it. */
#include "sim_json.h"

#include "sim_log.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* ---- the buffer ---- */

void sim_buf_reserve(sim_buf_t *b, size_t extra)
{
    if (b->cap - b->len > extra)
        return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap - b->len <= extra)
        cap *= 2;
    char *grown = realloc(b->data, cap);
    if (!grown)
        sim_die("out of memory (%zu bytes)", cap);
    b->data = grown;
    b->cap = cap;
}

void sim_buf_add(sim_buf_t *b, const void *p, size_t n)
{
    sim_buf_reserve(b, n);
    memcpy(b->data + b->len, p, n);
    b->len += n;
    b->data[b->len] = '\0';
}

void sim_buf_str(sim_buf_t *b, const char *s)
{
    sim_buf_add(b, s, strlen(s));
}

void sim_buf_fmt(sim_buf_t *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n <= 0)
        return;
    sim_buf_reserve(b, (size_t)n + 1);
    va_start(ap, fmt);
    vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void sim_buf_i64(sim_buf_t *b, int64_t v)
{
    char tmp[24];
    char *p = tmp + sizeof tmp;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        *--p = '-';
    sim_buf_add(b, p, (size_t)(tmp + sizeof tmp - p));
}

void sim_buf_opt_i64(sim_buf_t *b, const char *key, int64_t v)
{
    if (v == 0)
        return;
    sim_buf_add(b, ",\"", 2);
    sim_buf_str(b, key);
    sim_buf_add(b, "\":", 2);
    sim_buf_i64(b, v);
}

void sim_buf_free(sim_buf_t *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

/* ---- strings ---- */

/* Length of the valid UTF-8 sequence at s (Go's utf8.DecodeRune rules), 0 if invalid. */
static size_t utf8_valid(const unsigned char *s, size_t n, unsigned *cp)
{
    unsigned c = s[0];
    size_t need;
    unsigned lo = 0x80, hi = 0xBF;
    if (c >= 0xC2 && c <= 0xDF) {
        need = 1;
        *cp = c & 0x1F;
    } else if (c >= 0xE0 && c <= 0xEF) {
        need = 2;
        *cp = c & 0x0F;
        if (c == 0xE0)
            lo = 0xA0;
        if (c == 0xED)
            hi = 0x9F;
    } else if (c >= 0xF0 && c <= 0xF4) {
        need = 3;
        *cp = c & 0x07;
        if (c == 0xF0)
            lo = 0x90;
        if (c == 0xF4)
            hi = 0x8F;
    } else {
        return 0;
    }
    if (n < need + 1 || s[1] < lo || s[1] > hi)
        return 0;
    *cp = (*cp << 6) | (s[1] & 0x3F);
    for (size_t i = 2; i <= need; i++) {
        if (s[i] < 0x80 || s[i] > 0xBF)
            return 0;
        *cp = (*cp << 6) | (s[i] & 0x3F);
    }
    return need + 1;
}

void sim_buf_jstr(sim_buf_t *b, const char *str, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *s = (const unsigned char *)str;
    sim_buf_reserve(b, n + 2);
    b->data[b->len++] = '"';
    size_t start = 0, i = 0;
    while (i < n) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            unsigned cp;
            size_t w = utf8_valid(s + i, n - i, &cp);
            if (w && cp != 0x2028 && cp != 0x2029) {
                i += w;
                continue;
            }
            sim_buf_add(b, s + start, i - start);
            if (w)
                sim_buf_add(b, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
            else
                sim_buf_add(b, "\\ufffd", 6);
            i += w ? w : 1;
            start = i;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
            i++;
            continue;
        }
        sim_buf_add(b, s + start, i - start);
        char esc[6] = {'\\', 0, 0, 0, 0, 0};
        size_t elen = 2;
        switch (c) {
        case '"':
        case '\\':
            esc[1] = (char)c;
            break;
        case '\b':
            esc[1] = 'b';
            break;
        case '\f':
            esc[1] = 'f';
            break;
        case '\n':
            esc[1] = 'n';
            break;
        case '\r':
            esc[1] = 'r';
            break;
        case '\t':
            esc[1] = 't';
            break;
        default:
            esc[1] = 'u';
            esc[2] = '0';
            esc[3] = '0';
            esc[4] = hex[c >> 4];
            esc[5] = hex[c & 0xF];
            elen = 6;
        }
        sim_buf_add(b, esc, elen);
        i++;
        start = i;
    }
    sim_buf_add(b, s + start, i - start);
    sim_buf_add(b, "\"", 1);
}

void sim_buf_jcstr(sim_buf_t *b, const char *s)
{
    sim_buf_jstr(b, s, strlen(s));
}

void sim_buf_goquote(sim_buf_t *b, const char *s)
{
    sim_buf_add(b, "\"", 1);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            sim_buf_add(b, "\\", 1);
        if ((unsigned char)*s < 0x20)
            sim_buf_fmt(b, "\\x%02x", (unsigned char)*s);
        else
            sim_buf_add(b, s, 1);
    }
    sim_buf_add(b, "\"", 1);
}

/* ---- numbers ---- */

/* Shortest decimal digits that read back as the same float32 / float64, as strconv does. */
static void shortest_digits(double f, int bits, char *digits, int *ndigits, int *exp10)
{
    char tmp[48];
    int max = bits == 32 ? 9 : 17;
    int prec = bits == 32 ? 6 : 15;
    bool ok;
#define ROUNDTRIP(p)                                                                               \
    (snprintf(tmp, sizeof tmp, "%.*e", (p)-1, f),                                                  \
     bits == 32 ? strtof(tmp, NULL) == (float)f : strtod(tmp, NULL) == f)
    ok = ROUNDTRIP(prec);
    if (ok) {
        while (prec > 1 && ROUNDTRIP(prec - 1))
            prec--;
    } else {
        do
            prec++;
        while (prec < max && !ROUNDTRIP(prec));
    }
    ok = ROUNDTRIP(prec); /* leave tmp holding the chosen form */
#undef ROUNDTRIP
    (void)ok;
    const char *p = tmp;
    if (*p == '-')
        p++;
    int n = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9')
            digits[n++] = *p;
    while (n > 1 && digits[n - 1] == '0')
        n--;
    digits[n] = '\0';
    *ndigits = n;
    *exp10 = *p == 'e' ? atoi(p + 1) : 0;
}

static void buf_float(sim_buf_t *b, double f, int bits)
{
    if (isnan(f) || isinf(f)) {
        sim_buf_add(b, "0", 1); /* Go refuses to encode these; never produced here */
        return;
    }
    if (f == 0) {
        sim_buf_str(b, signbit(f) ? "-0" : "0");
        return;
    }
    double a = fabs(f);
    bool e_form = bits == 64 ? (a < 1e-6 || a >= 1e21) : ((float)a < 1e-6f || (float)a >= 1e21f);
    char digits[24];
    int nd, exp10;
    shortest_digits(f, bits, digits, &nd, &exp10);
    if (f < 0)
        sim_buf_add(b, "-", 1);
    if (e_form) {
        sim_buf_add(b, digits, 1);
        if (nd > 1) {
            sim_buf_add(b, ".", 1);
            sim_buf_add(b, digits + 1, (size_t)nd - 1);
        }
        int e = exp10 < 0 ? -exp10 : exp10;
        /* strconv writes at least two exponent digits; encoding/json then turns e-07 into e-7 */
        if (exp10 < 0 && e < 10)
            sim_buf_fmt(b, "e-%d", e);
        else
            sim_buf_fmt(b, "e%c%02d", exp10 < 0 ? '-' : '+', e);
        return;
    }
    if (exp10 < 0) {
        sim_buf_add(b, "0.", 2);
        for (int i = 0; i < -exp10 - 1; i++)
            sim_buf_add(b, "0", 1);
        sim_buf_add(b, digits, (size_t)nd);
        return;
    }
    int int_digits = exp10 + 1;
    if (nd <= int_digits) {
        sim_buf_add(b, digits, (size_t)nd);
        for (int i = nd; i < int_digits; i++)
            sim_buf_add(b, "0", 1);
    } else {
        sim_buf_add(b, digits, (size_t)int_digits);
        sim_buf_add(b, ".", 1);
        sim_buf_add(b, digits + int_digits, (size_t)(nd - int_digits));
    }
}

void sim_buf_f32(sim_buf_t *b, float f)
{
    buf_float(b, (double)f, 32);
}

void sim_buf_f64(sim_buf_t *b, double f)
{
    buf_float(b, f, 64);
}

/* ---- times ---- */

void sim_buf_time(sim_buf_t *b, int64_t sec, long nsec, bool utc)
{
    time_t t = (time_t)sec;
    struct tm tm;
    if (utc)
        gmtime_r(&t, &tm);
    else
        localtime_r(&t, &tm);
    sim_buf_fmt(b, "\"%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
                tm.tm_hour, tm.tm_min, tm.tm_sec);
    if (nsec > 0) {
        char frac[11];
        snprintf(frac, sizeof frac, ".%09ld", nsec);
        size_t n = strlen(frac);
        while (frac[n - 1] == '0')
            n--;
        sim_buf_add(b, frac, n);
    }
    long off = utc ? 0 : tm.tm_gmtoff;
    if (off == 0) {
        sim_buf_add(b, "Z\"", 2);
    } else {
        char sign = off < 0 ? '-' : '+';
        if (off < 0)
            off = -off;
        sim_buf_fmt(b, "%c%02ld:%02ld\"", sign, off / 3600, (off / 60) % 60);
    }
}
