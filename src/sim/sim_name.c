/* sim_name: Ollama model names parsed, checked and shown as types/model/name.go does. */
#include "sim_name.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define DEFAULT_HOST "registry.ollama.ai"
#define DEFAULT_NS "library"
#define DEFAULT_TAG "latest"
#define MISSING "!MISSING!"

enum { PART_HOST, PART_NS, PART_MODEL, PART_TAG };

static void put(char *dst, const char *src, size_t len, bool *too_long)
{
    if (len >= SIM_NAME_PART_MAX) {
        len = SIM_NAME_PART_MAX - 1;
        *too_long = true;
    }
    memcpy(dst, src, len);
    dst[len] = '\0';
}

/* cutPromised: split at the last sep; an empty side becomes "!MISSING!". */
static bool cut_last(const char *s, size_t len, char sep, size_t *before, const char **after,
                     size_t *after_len)
{
    const char *p = NULL;
    for (size_t i = len; i > 0; i--) {
        if (s[i - 1] == sep) {
            p = s + i - 1;
            break;
        }
    }
    if (!p)
        return false;
    *before = (size_t)(p - s);
    *after = p + 1;
    *after_len = len - *before - 1;
    return true;
}

static void put_promised(char *dst, const char *src, size_t len, bool *too_long)
{
    if (len == 0)
        put(dst, MISSING, strlen(MISSING), too_long);
    else
        put(dst, src, len, too_long);
}

void sim_name_parse(const char *s, sim_name_t *out)
{
    memset(out, 0, sizeof *out);
    size_t len = strlen(s);
    const char *last_colon = strrchr(s, ':');
    const char *last_slash = strrchr(s, '/');
    size_t before = 0;
    const char *after = NULL;
    size_t after_len = 0;

    if (last_colon && (!last_slash || last_colon > last_slash)) {
        cut_last(s, len, ':', &before, &after, &after_len);
        put_promised(out->tag, after, after_len, &out->too_long);
        len = before ? before : 0;
        if (before == 0) {
            s = MISSING;
            len = strlen(MISSING);
        }
    }
    if (!cut_last(s, len, '/', &before, &after, &after_len)) {
        put(out->model, s, len, &out->too_long);
    } else {
        put_promised(out->model, after, after_len, &out->too_long);
        if (before == 0) {
            s = MISSING;
            len = strlen(MISSING);
        } else {
            len = before;
        }
        if (!cut_last(s, len, '/', &before, &after, &after_len)) {
            put(out->ns, s, len, &out->too_long);
        } else {
            put_promised(out->ns, after, after_len, &out->too_long);
            if (before == 0) {
                s = MISSING;
                len = strlen(MISSING);
            } else {
                len = before;
            }
            const char *scheme_end = NULL;
            for (size_t i = 0; i + 2 < len; i++) {
                if (memcmp(s + i, "://", 3) == 0) {
                    scheme_end = s + i + 3;
                    break;
                }
            }
            if (scheme_end)
                put(out->host, scheme_end, len - (size_t)(scheme_end - s), &out->too_long);
            else
                put(out->host, s, len, &out->too_long);
        }
    }
    if (!out->host[0])
        strcpy(out->host, DEFAULT_HOST);
    if (!out->ns[0])
        strcpy(out->ns, DEFAULT_NS);
    if (!out->tag[0])
        strcpy(out->tag, DEFAULT_TAG);
}

static bool alnum_or_underscore(char c)
{
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

static bool part_valid(int kind, const char *s)
{
    size_t len = strlen(s);
    size_t max = kind == PART_HOST ? 350 : 80;
    if (len < 1 || len > max)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = s[i];
        if (i == 0) {
            if (!alnum_or_underscore(c))
                return false;
            continue;
        }
        if (c == '_' || c == '-')
            continue;
        if (c == '.') {
            if (kind == PART_NS)
                return false;
            continue;
        }
        if (c == ':') {
            if (kind != PART_HOST)
                return false;
            continue;
        }
        if (!alnum_or_underscore(c))
            return false;
    }
    return true;
}

bool sim_name_valid(const sim_name_t *n)
{
    return !n->too_long && part_valid(PART_HOST, n->host) && part_valid(PART_NS, n->ns) &&
           part_valid(PART_MODEL, n->model) && part_valid(PART_TAG, n->tag);
}

void sim_name_full(const sim_name_t *n, char *buf, size_t size)
{
    snprintf(buf, size, "%s/%s/%s:%s", n->host, n->ns, n->model, n->tag);
}

void sim_name_shortest(const sim_name_t *n, char *buf, size_t size)
{
    if (strcasecmp(n->host, DEFAULT_HOST) != 0)
        snprintf(buf, size, "%s/%s/%s:%s", n->host, n->ns, n->model, n->tag);
    else if (strcasecmp(n->ns, DEFAULT_NS) != 0)
        snprintf(buf, size, "%s/%s:%s", n->ns, n->model, n->tag);
    else
        snprintf(buf, size, "%s:%s", n->model, n->tag);
}

bool sim_name_eqfold(const sim_name_t *a, const sim_name_t *b)
{
    return strcasecmp(a->host, b->host) == 0 && strcasecmp(a->ns, b->ns) == 0 &&
           strcasecmp(a->model, b->model) == 0 && strcasecmp(a->tag, b->tag) == 0;
}
