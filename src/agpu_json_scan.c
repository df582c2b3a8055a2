/* The top level of a JSON object read without building it (see agpu_json_scan.h). */
#include "agpu_json_scan.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Keys longer than this cannot be one of those asked for (they are names like "model"). */
#define SCAN_KEY_MAX 64

typedef struct {
    const char *p, *end;
} cursor_t;

static void skip_space(cursor_t *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

/* Moves past the string whose opening quote is at c->p; *text and *len span its contents,
 * still escaped. False when it does not end. */
static bool skip_string(cursor_t *c, const char **text, size_t *len)
{
    const char *start = ++c->p;
    for (;;) {
        const char *quote = memchr(c->p, '"', (size_t)(c->end - c->p));
        if (!quote)
            return false;
        /* the quote ends the string unless an odd number of backslashes escapes it */
        size_t slashes = 0;
        while (quote - slashes > start && quote[-1 - (ptrdiff_t)slashes] == '\\')
            slashes++;
        c->p = quote + 1;
        if (slashes % 2 == 0) {
            *text = start;
            *len = (size_t)(quote - start);
            return true;
        }
    }
}

/* Moves past one value of any kind. False when it is malformed as far as a skip can tell. */
static bool skip_value(cursor_t *c)
{
    const char *text;
    size_t len;
    if (c->p >= c->end)
        return false;
    if (*c->p == '"')
        return skip_string(c, &text, &len);
    if (*c->p == '{' || *c->p == '[') {
        size_t depth = 0;
        while (c->p < c->end) {
            char ch = *c->p;
            if (ch == '"') {
                if (!skip_string(c, &text, &len))
                    return false;
                continue;
            }
            if (ch == '{' || ch == '[') {
                depth++;
            } else if ((ch == '}' || ch == ']') && --depth == 0) {
                c->p++;
                return true;
            }
            c->p++;
        }
        return false;
    }
    const char *start = c->p; /* a number, true, false or null: up to the next delimiter */
    while (c->p < c->end && *c->p && !strchr(",}] \t\n\r", *c->p))
        c->p++;
    return c->p > start;
}

static int hex_digit(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* The four hex digits at s (a \u escape's); -1 when they are not. */
static int32_t hex4(const char *s, const char *end)
{
    if (end - s < 4)
        return -1;
    int32_t value = 0;
    for (int i = 0; i < 4; i++) {
        int d = hex_digit(s[i]);
        if (d < 0)
            return -1;
        value = value * 16 + d;
    }
    return value;
}

/* Appends code point cp as UTF-8; false when it does not fit. */
static bool put_utf8(char *out, size_t size, size_t *at, uint32_t cp)
{
    char bytes[4];
    size_t n;
    if (cp < 0x80) {
        bytes[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        bytes[0] = (char)(0xC0 | cp >> 6);
        bytes[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        bytes[0] = (char)(0xE0 | cp >> 12);
        bytes[1] = (char)(0x80 | (cp >> 6 & 0x3F));
        bytes[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        bytes[0] = (char)(0xF0 | cp >> 18);
        bytes[1] = (char)(0x80 | (cp >> 12 & 0x3F));
        bytes[2] = (char)(0x80 | (cp >> 6 & 0x3F));
        bytes[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    if (*at + n >= size)
        return false;
    memcpy(out + *at, bytes, n);
    *at += n;
    return true;
}

/* A \u escape at s (after the backslash and the u): its code point, joining a surrogate pair;
 * *used is how many bytes past s it took. -1 when malformed, NUL or a lone surrogate (which
 * a strict parser refuses). */
static int32_t unicode_escape(const char *s, const char *end, size_t *used)
{
    int32_t cp = hex4(s, end);
    *used = 4;
    if (cp <= 0 || (cp >= 0xDC00 && cp <= 0xDFFF))
        return -1;
    if (cp >= 0xD800 && cp <= 0xDBFF) {
        int32_t low = end - s >= 6 && s[4] == '\\' && s[5] == 'u' ? hex4(s + 6, end) : -1;
        if (low < 0xDC00 || low > 0xDFFF)
            return -1;
        *used = 10;
        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
    }
    return cp;
}

/* The character a one-letter escape (\n, \", ...) stands for; -1 for none. */
static int simple_escape(char kind)
{
    switch (kind) {
    case '"':
    case '\\':
    case '/':
        return kind;
    case 'b':
        return '\b';
    case 'f':
        return '\f';
    case 'n':
        return '\n';
    case 'r':
        return '\r';
    case 't':
        return '\t';
    default:
        return -1;
    }
}

/* A string's contents (as skip_string spans them) unescaped into out; false when they do not
 * fit or an escape is malformed. */
static bool unescape(const char *s, size_t len, char *out, size_t size)
{
    const char *end = s + len;
    size_t at = 0;
    while (s < end) {
        int32_t cp = (unsigned char)*s++;
        if (cp == '\\') {
            if (s == end)
                return false;
            char kind = *s++;
            if (kind == 'u') {
                size_t used;
                cp = unicode_escape(s, end, &used);
                s += used;
            } else {
                cp = simple_escape(kind);
            }
            if (cp < 0)
                return false;
        }
        if (!put_utf8(out, size, &at, (uint32_t)cp))
            return false;
    }
    out[at] = '\0';
    return true;
}

/* Which of the keys this member's name (escaped as in the text) is; -1 for none. */
static int key_index(const char *text, size_t len, const char *const keys[], size_t n)
{
    char name[SCAN_KEY_MAX];
    if (memchr(text, '\\', len)) {
        if (!unescape(text, len, name, sizeof name))
            return -1;
        text = name;
        len = strlen(name);
    }
    for (size_t i = 0; i < n; i++)
        if (strlen(keys[i]) == len && memcmp(keys[i], text, len) == 0)
            return (int)i;
    return -1;
}

/* One member at c->p ("key": value): records the value when its key is asked for. */
static bool read_member(cursor_t *c, const char *const keys[], size_t n, char *values,
                        size_t value_size)
{
    const char *text;
    size_t len;
    if (c->p >= c->end || *c->p != '"' || !skip_string(c, &text, &len))
        return false;
    int which = key_index(text, len, keys, n);
    skip_space(c);
    if (c->p >= c->end || *c->p != ':')
        return false;
    c->p++;
    skip_space(c);
    if (which < 0)
        return skip_value(c);
    char *value = values + (size_t)which * value_size;
    value[0] = '\0'; /* the last member of a name counts, whatever came before */
    if (c->p >= c->end || *c->p != '"')
        return skip_value(c);
    if (!skip_string(c, &text, &len))
        return false;
    if (!unescape(text, len, value, value_size))
        value[0] = '\0';
    return true;
}

int agpu_json_scan_strings(const char *json, size_t len, const char *const keys[], size_t n,
                           char *values, size_t value_size)
{
    for (size_t i = 0; i < n; i++)
        values[i * value_size] = '\0';
    cursor_t c = {json, json + len};
    skip_space(&c);
    if (c.p >= c.end || *c.p != '{')
        return -1;
    c.p++;
    skip_space(&c);
    bool empty = c.p < c.end && *c.p == '}';
    while (!empty) {
        if (!read_member(&c, keys, n, values, value_size))
            return -1;
        skip_space(&c);
        if (c.p < c.end && *c.p == ',') {
            c.p++;
            skip_space(&c);
            continue;
        }
        if (c.p >= c.end || *c.p != '}')
            return -1;
        break;
    }
    c.p++;
    skip_space(&c);
    return c.p == c.end ? 0 : -1;
}
