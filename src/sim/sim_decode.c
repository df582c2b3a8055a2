/* sim_decode: request bodies read as Go's encoding/json reads them, with Go's error text. */
#include "sim_decode.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Nesting deeper than this is refused, as Go's decoder refuses it. */
#define JSON_MAX_DEPTH 10000

/* ---- errors ---- */

void sim_err_set(sim_err_t *err, int status, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    err->status = status;
}

/* ---- a syntax scanner, only to word parse errors the way Go's decoder does ---- */

typedef struct {
    const char *s;
    size_t n, i;
    const char *msg;
    char bad;
    bool eof;
} scan_t;

static void skip_ws(scan_t *sc)
{
    while (sc->i < sc->n && (sc->s[sc->i] == ' ' || sc->s[sc->i] == '\t' || sc->s[sc->i] == '\n' ||
                             sc->s[sc->i] == '\r'))
        sc->i++;
}

static bool scan_fail(scan_t *sc, const char *msg)
{
    if (sc->i >= sc->n)
        sc->eof = true;
    else
        sc->bad = sc->s[sc->i];
    sc->msg = msg;
    return false;
}

static bool scan_value(scan_t *sc, int depth);

static bool scan_string(scan_t *sc)
{
    sc->i++; /* opening quote */
    while (sc->i < sc->n) {
        unsigned char c = (unsigned char)sc->s[sc->i];
        if (c == '"') {
            sc->i++;
            return true;
        }
        if (c < 0x20)
            return scan_fail(sc, "in string literal");
        if (c == '\\') {
            sc->i++;
            if (sc->i >= sc->n)
                break;
            if (!strchr("\"\\/bfnrtu", sc->s[sc->i]))
                return scan_fail(sc, "in string escape code");
        }
        sc->i++;
    }
    return scan_fail(sc, "");
}

static bool scan_value(scan_t *sc, int depth)
{
    skip_ws(sc);
    if (sc->i >= sc->n)
        return scan_fail(sc, "");
    if (depth > JSON_MAX_DEPTH)
        return scan_fail(sc, "looking for beginning of value");
    char c = sc->s[sc->i];
    if (c == '"')
        return scan_string(sc);
    if (c == '{' || c == '[') {
        bool obj = c == '{';
        sc->i++;
        skip_ws(sc);
        if (sc->i < sc->n && sc->s[sc->i] == (obj ? '}' : ']')) {
            sc->i++;
            return true;
        }
        for (;;) {
            if (obj) {
                skip_ws(sc);
                if (sc->i >= sc->n || sc->s[sc->i] != '"')
                    return scan_fail(sc, "looking for beginning of object key string");
                if (!scan_string(sc))
                    return false;
                skip_ws(sc);
                if (sc->i >= sc->n || sc->s[sc->i] != ':')
                    return scan_fail(sc, "after object key");
                sc->i++;
            }
            if (!scan_value(sc, depth + 1))
                return false;
            skip_ws(sc);
            if (sc->i < sc->n && sc->s[sc->i] == ',') {
                sc->i++;
                continue;
            }
            if (sc->i < sc->n && sc->s[sc->i] == (obj ? '}' : ']')) {
                sc->i++;
                return true;
            }
            return scan_fail(sc, obj ? "after object key:value pair" : "after array element");
        }
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
        if (c == '-')
            sc->i++;
        if (sc->i >= sc->n)
            return scan_fail(sc, "");
        if (sc->s[sc->i] < '0' || sc->s[sc->i] > '9')
            return scan_fail(sc, "in numeric literal");
        while (sc->i < sc->n &&
               ((sc->s[sc->i] >= '0' && sc->s[sc->i] <= '9') || strchr(".eE+-", sc->s[sc->i])))
            sc->i++;
        return true;
    }
    static const char *const lits[] = {"true", "false", "null"};
    for (size_t k = 0; k < 3; k++) {
        if (c != lits[k][0])
            continue;
        for (size_t j = 1; lits[k][j]; j++) {
            sc->i++;
            if (sc->i >= sc->n)
                return scan_fail(sc, "");
            if (sc->s[sc->i] != lits[k][j])
                return scan_fail(sc, "in literal");
        }
        sc->i++;
        return true;
    }
    return scan_fail(sc, "looking for beginning of value");
}

static void syntax_error(const char *body, size_t len, const json_error_t *jerr, sim_err_t *err)
{
    scan_t sc = {.s = body, .n = len};
    if (scan_value(&sc, 0) || !sc.msg) {
        sim_err_set(err, 400, "%s", jerr->text);
        return;
    }
    if (sc.eof) {
        sim_err_set(err, 400, "unexpected EOF");
        return;
    }
    char shown[8];
    unsigned char c = (unsigned char)sc.bad;
    if (c == '\'')
        snprintf(shown, sizeof shown, "'\\''");
    else if (c < 0x20 || c >= 0x7f)
        snprintf(shown, sizeof shown, "'\\x%02x'", c);
    else
        snprintf(shown, sizeof shown, "'%c'", c);
    sim_err_set(err, 400, "invalid character %s %s", shown, sc.msg);
}

json_t *sim_json_parse(const char *body, size_t len, const char *go_type, sim_err_t *err)
{
    size_t i = 0;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\n' || body[i] == '\r'))
        i++;
    if (i == len) {
        sim_err_set(err, 400, "missing request body");
        return NULL;
    }
    json_error_t jerr;
    json_t *root =
        json_loadb(body, len, JSON_DECODE_ANY | JSON_DISABLE_EOF_CHECK | JSON_ALLOW_NUL, &jerr);
    if (!root) {
        syntax_error(body, len, &jerr, err);
        return NULL;
    }
    if (json_is_null(root)) {
        json_decref(root);
        return json_object(); /* Go leaves the struct at its zero value */
    }
    if (!json_is_object(root)) {
        sim_err_set(err, 400, "json: cannot unmarshal %s into Go value of type %s",
                    sim_json_type_name(root), go_type);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* ---- members ---- */

const char *sim_json_type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    default:
        return "null";
    }
}

json_t *sim_json_member(json_t *obj, const char *key)
{
    if (!obj || !json_is_object(obj))
        return NULL;
    json_t *v = json_object_get(obj, key);
    if (!v) {
        const char *k;
        json_t *val;
        json_object_foreach(obj, k, val)
        {
            if (strcasecmp(k, key) == 0) {
                v = val;
                break;
            }
        }
    }
    return (v && json_is_null(v)) ? NULL : v;
}

static bool type_error(sim_err_t *err, json_t *v, const char *where, const char *key,
                       const char *go_type)
{
    sim_err_set(err, 400, "json: cannot unmarshal %s into Go struct field %s.%s of type %s",
                sim_json_type_name(v), where, key, go_type);
    return false;
}

bool sim_json_str(json_t *obj, const char *key, const char *where, const char **s, size_t *n,
                  sim_err_t *err)
{
    json_t *v = sim_json_member(obj, key);
    if (!v)
        return true;
    if (!json_is_string(v))
        return type_error(err, v, where, key, "string");
    *s = json_string_value(v);
    if (n)
        *n = json_string_length(v);
    return true;
}

bool sim_json_bool(json_t *obj, const char *key, const char *where, int *val, sim_err_t *err)
{
    json_t *v = sim_json_member(obj, key);
    if (!v)
        return true;
    if (!json_is_boolean(v))
        return type_error(err, v, where, key, "bool");
    *val = json_is_true(v);
    return true;
}

bool sim_json_int(json_t *obj, const char *key, const char *where, int64_t *val, bool *set,
                  sim_err_t *err)
{
    json_t *v = sim_json_member(obj, key);
    if (!v)
        return true;
    if (json_is_integer(v)) {
        *val = json_integer_value(v);
    } else if (json_is_real(v) && json_real_value(v) == floor(json_real_value(v))) {
        *val = (int64_t)json_real_value(v);
    } else if (json_is_real(v)) {
        sim_err_set(err, 400,
                    "json: cannot unmarshal number %g into Go struct field %s.%s of type int",
                    json_real_value(v), where, key);
        return false;
    } else {
        return type_error(err, v, where, key, "int");
    }
    if (set)
        *set = true;
    return true;
}

/* ---- durations ---- */

int sim_go_duration(const char *orig, int64_t *ns, char *errmsg, size_t errlen)
{
    static const struct {
        const char *name;
        uint64_t ns;
    } units[] = {
        {"ns", 1},       {"us", 1000},         {"\xc2\xb5s", 1000},   {"\xce\xbcs", 1000},
        {"ms", 1000000}, {"s", 1000000000ULL}, {"m", 60000000000ULL}, {"h", 3600000000000ULL}};
    const char *s = orig;
    bool neg = false;
    uint64_t total = 0;
    if (*s == '-' || *s == '+') {
        neg = *s == '-';
        s++;
    }
    if (strcmp(s, "0") == 0) {
        *ns = 0;
        return 0;
    }
    if (*s == '\0')
        goto invalid;
    while (*s) {
        uint64_t v = 0, f = 0;
        double scale = 1;
        if (!(*s == '.' || (*s >= '0' && *s <= '9')))
            goto invalid;
        const char *start = s;
        while (*s >= '0' && *s <= '9') {
            if (v > (UINT64_C(1) << 63) / 10)
                goto invalid;
            v = v * 10 + (uint64_t)(*s - '0');
            if (v > (UINT64_C(1) << 63))
                goto invalid;
            s++;
        }
        bool pre = s != start, post = false;
        if (*s == '.') {
            s++;
            const char *fs = s;
            bool overflow = false;
            while (*s >= '0' && *s <= '9') {
                if (!overflow) {
                    if (f > (UINT64_C(1) << 63) / 10) {
                        overflow = true;
                    } else {
                        f = f * 10 + (uint64_t)(*s - '0');
                        scale *= 10;
                    }
                }
                s++;
            }
            post = s != fs;
        }
        if (!pre && !post)
            goto invalid;
        const char *u = s;
        while (*s && *s != '.' && !(*s >= '0' && *s <= '9'))
            s++;
        if (s == u) {
            snprintf(errmsg, errlen, "time: missing unit in duration \"%s\"", orig);
            return -1;
        }
        size_t ulen = (size_t)(s - u);
        uint64_t unit = 0;
        for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
            if (strlen(units[k].name) == ulen && memcmp(units[k].name, u, ulen) == 0)
                unit = units[k].ns;
        if (!unit) {
            snprintf(errmsg, errlen, "time: unknown unit \"%.*s\" in duration \"%s\"", (int)ulen, u,
                     orig);
            return -1;
        }
        if (v > (UINT64_C(1) << 63) / unit)
            goto invalid;
        v *= unit;
        if (f > 0) {
            v += (uint64_t)((double)f * ((double)unit / scale));
            if (v > (UINT64_C(1) << 63))
                goto invalid;
        }
        total += v;
        if (total > (UINT64_C(1) << 63))
            goto invalid;
    }
    if (neg) {
        *ns = total == (UINT64_C(1) << 63) ? INT64_MIN : -(int64_t)total;
        return 0;
    }
    if (total > (uint64_t)INT64_MAX)
        goto invalid;
    *ns = (int64_t)total;
    return 0;
invalid:
    snprintf(errmsg, errlen, "time: invalid duration \"%s\"", orig);
    return -1;
}

bool sim_json_keep_alive(json_t *obj, bool *set, int64_t *ns, sim_err_t *err)
{
    json_t *v = sim_json_member(obj, "keep_alive");
    if (!v)
        return true;
    if (json_is_number(v)) {
        double secs = json_number_value(v);
        if (secs < 0)
            *ns = INT64_MAX;
        else if (secs * 1e9 >= 9.2e18)
            *ns = INT64_MAX;
        else
            *ns = (int64_t)(secs * 1e9);
    } else if (json_is_string(v)) {
        char msg[256];
        if (sim_go_duration(json_string_value(v), ns, msg, sizeof msg) != 0) {
            sim_err_set(err, 400, "%s", msg);
            return false;
        }
        if (*ns < 0)
            *ns = INT64_MAX;
    } else {
        const char *t = json_is_boolean(v) ? "bool"
                        : json_is_array(v) ? "[]interface {}"
                                           : "map[string]interface {}";
        sim_err_set(err, 400, "Unsupported type: '%s'", t);
        return false;
    }
    *set = true;
    return true;
}
