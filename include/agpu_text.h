/* Text agpu keeps. Text from the network, which agpu keeps, logs and puts in JSON as it is,
 * has one check for all of it, so "clean" means the same for a gossiped name and an mDNS one;
 * and any text goes into a fixed-size field through one bounded copy. */
#ifndef AGPU_TEXT_H
#define AGPU_TEXT_H

#include <stdbool.h>
#include <stddef.h>

#define AGPU_TEXT_NO_C1 1U /* also no C1 controls (U+0080..U+009F) */
#define AGPU_TEXT_TOKEN 2U /* printable ASCII without spaces only */

/* Whether s[0..n) is well-formed UTF-8 (no overlong form, surrogate or code point past
 * U+10FFFF) without C0 controls or DEL, narrowed by flags. Reads nothing past s + n. */
bool agpu_text_clean(const void *s, size_t n, unsigned flags);

/* Copies s into out[size] (size > 0) as snprintf(out, size, "%s", s) does, without its format
 * parsing: cut to fit and always NUL-terminated. Returns strlen(s): >= size when it was cut. */
size_t agpu_text_copy(char *out, size_t size, const char *s);

#endif
