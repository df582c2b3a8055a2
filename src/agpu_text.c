/* Checking text from the network (UTF-8 decoded just far enough to validate it), and copying
 * text into a fixed-size field. */
#include "agpu_text.h"

#include <stdint.h>
#include <string.h>

bool agpu_text_clean(const void *str, size_t n, unsigned flags)
{
    const uint8_t *s = str;
    bool token = flags & AGPU_TEXT_TOKEN;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = s[i];
        if (c < 0x20 || c == 0x7f || (token && (c == ' ' || c > 0x7e)))
            return false;
        if (c < 0x80)
            continue;
        /* A UTF-8 sequence: its lead byte fixes the length and the range of the next byte
         * (which rules out overlong forms, surrogates and code points past U+10FFFF; and, when
         * asked, C1 controls: C2 80..C2 9F). */
        size_t more;
        uint8_t lo = 0x80, hi = 0xbf;
        if (c >= 0xc2 && c <= 0xdf)
            more = 1, lo = c == 0xc2 && (flags & AGPU_TEXT_NO_C1) ? 0xa0 : 0x80;
        else if (c >= 0xe0 && c <= 0xef)
            more = 2, lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        else if (c >= 0xf0 && c <= 0xf4)
            more = 3, lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        else
            return false;
        if (n - i - 1 < more || s[i + 1] < lo || s[i + 1] > hi)
            return false;
        for (size_t j = 2; j <= more; j++)
            if (s[i + j] < 0x80 || s[i + j] > 0xbf)
                return false;
        i += more;
    }
    return true;
}

size_t agpu_text_copy(char *out, size_t size, const char *s)
{
    size_t len = strlen(s);
    size_t n = len < size ? len : size - 1;
    memcpy(out, s, n);
    out[n] = '\0';
    return len;
}
