/* Mesh-wide list answers: several nodes' /api/tags, /api/ps or /v1/models bodies made one. */
#include "agpu_merge.h"

#include "agpu_name.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* What a list is ordered by. Ollama orders by a time; a time that does not parse still has
 * to sort somewhere, so the order stays total (qsort needs that): such entries go after every
 * parsed one, ordered among themselves by their text. */
typedef struct {
    bool parsed;
    int64_t sec;
    int32_t nsec;
    const char *text; /* points into the entry, which the merge holds */
} merge_when_t;

/* One entry of the merged list. */
typedef struct {
    json_t *entry; /* the base entry (a reference): the first seen, or for ps the latest expiry */
    json_t *nodes; /* names of the nodes it came from, in the order of parts */
    merge_when_t when;
    size_t seen; /* first-seen rank: ties keep it, so the sort is stable */
} merge_row_t;

typedef struct {
    agpu_merge_kind_t kind;
    merge_row_t *rows;
    size_t n_rows, alloc;
    json_t *index; /* dedupe key -> row number (a jansson object is a ready hash table) */
    json_t *roots; /* the parsed parts, alive until the answer is written */
} merge_t;

/* ---- RFC 3339 times, as Go writes them ("2024-05-01T10:20:30.123456789-07:00") ---- */

static bool read_digits(const char **p, int n, int *out)
{
    int value = 0;
    for (int i = 0; i < n; i++) {
        if (!isdigit((unsigned char)(*p)[i]))
            return false;
        value = value * 10 + ((*p)[i] - '0');
    }
    *p += n;
    *out = value;
    return true;
}

static bool expect_char(const char **p, const char *allowed)
{
    if (**p == '\0' || !strchr(allowed, **p))
        return false;
    (*p)++;
    return true;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil),
 * so no time zone or timegm() is involved. */
static int64_t days_from_civil(int64_t y, int m, int d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t yoe = y - era * 400;
    int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
    int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + doe - 719468;
}

static bool parse_rfc3339(const char *s, int64_t *sec, int32_t *nsec)
{
    int year, month, day, hour, minute, second, off_h = 0, off_m = 0;
    const char *p = s;
    if (!read_digits(&p, 4, &year) || !expect_char(&p, "-") || !read_digits(&p, 2, &month) ||
        !expect_char(&p, "-") || !read_digits(&p, 2, &day) || !expect_char(&p, "Tt ") ||
        !read_digits(&p, 2, &hour) || !expect_char(&p, ":") || !read_digits(&p, 2, &minute) ||
        !expect_char(&p, ":") || !read_digits(&p, 2, &second))
        return false;
    if (month < 1 || month > 12 || day < 1 || day > 31 || hour > 23 || minute > 59 || second > 60)
        return false;
    int32_t fraction = 0;
    if (*p == '.') {
        p++;
        int digits = 0;
        for (; isdigit((unsigned char)*p); p++, digits++)
            if (digits < 9) /* finer than nanoseconds is ignored */
                fraction = fraction * 10 + (*p - '0');
        if (digits == 0)
            return false;
        for (; digits < 9; digits++)
            fraction *= 10;
    }
    int sign = 0;
    if (*p == 'Z' || *p == 'z') {
        p++;
    } else if (*p == '+' || *p == '-') {
        sign = *p == '+' ? 1 : -1;
        p++;
        if (!read_digits(&p, 2, &off_h) || !expect_char(&p, ":") || !read_digits(&p, 2, &off_m))
            return false;
    } else {
        return false;
    }
    if (*p != '\0')
        return false;
    *sec = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second -
           sign * (off_h * 3600 + off_m * 60);
    *nsec = fraction;
    return true;
}

/* ---- reading one entry ---- */

static const char *string_field(json_t *entry, const char *key)
{
    const char *value = json_string_value(json_object_get(entry, key));
    return value ? value : "";
}

static merge_when_t entry_when(agpu_merge_kind_t kind, json_t *entry)
{
    merge_when_t when = {.text = ""};
    if (kind == AGPU_MERGE_OPENAI) {
        json_t *created = json_object_get(entry, "created");
        if (json_is_integer(created)) {
            when.parsed = true;
            when.sec = json_integer_value(created);
        }
        return when;
    }
    when.text = string_field(entry, kind == AGPU_MERGE_TAGS ? "modified_at" : "expires_at");
    when.parsed = parse_rfc3339(when.text, &when.sec, &when.nsec);
    return when;
}

/* >0 when a is later than b. */
static int when_compare(const merge_when_t *a, const merge_when_t *b)
{
    if (a->parsed != b->parsed)
        return a->parsed ? 1 : -1;
    if (a->parsed) {
        if (a->sec != b->sec)
            return a->sec > b->sec ? 1 : -1;
        return a->nsec > b->nsec ? 1 : a->nsec < b->nsec ? -1 : 0;
    }
    return strcmp(a->text, b->text);
}

static int row_compare(const void *pa, const void *pb)
{
    const merge_row_t *a = pa, *b = pb;
    int later = when_compare(&a->when, &b->when);
    if (later)
        return -later; /* newest first */
    return a->seen < b->seen ? -1 : a->seen > b->seen;
}

/* Appends the lowercased text to key at *used; false when it does not fit. */
static bool append_lower(char *key, size_t size, size_t *used, const char *text)
{
    size_t n = strlen(text);
    if (*used + n + 1 > size)
        return false;
    for (size_t i = 0; i < n; i++)
        key[*used + i] = (char)tolower((unsigned char)text[i]);
    *used += n;
    key[*used] = '\0';
    return true;
}

/* The dedupe key of an entry: its name as Ollama compares names (agpu_name_key: the shortest
 * form, case-insensitive), then for the native lists its digest, since the same name with
 * two digests is two different models. NULL when the entry names no model or out of memory;
 * the caller frees it. */
static char *entry_key(agpu_merge_kind_t kind, json_t *entry)
{
    const char *name =
        kind == AGPU_MERGE_OPENAI ? string_field(entry, "id") : string_field(entry, "name");
    if (!name[0] && kind != AGPU_MERGE_OPENAI)
        name = string_field(entry, "model");
    if (!name[0])
        return NULL;
    const char *digest = kind == AGPU_MERGE_OPENAI ? "" : string_field(entry, "digest");
    size_t size = strlen(name) + strlen(digest) + AGPU_NAME_KEY_MAX + 2;
    char *key = malloc(size);
    if (!key)
        return NULL;
    size_t used = 0;
    if (agpu_name_key(name, key, size) == 0)
        used = strlen(key);
    else
        append_lower(key, size, &used, name); /* not a name Ollama would take: compare as is */
    key[used++] = '\n';
    key[used] = '\0';
    append_lower(key, size, &used, digest);
    return key;
}

/* ---- the merge ---- */

static bool add_node(json_t *nodes, const char *node)
{
    size_t i;
    json_t *name;
    if (!node)
        return true;
    json_array_foreach(nodes, i, name)
    {
        if (strcmp(json_string_value(name), node) == 0)
            return true;
    }
    return json_array_append_new(nodes, json_string(node)) == 0;
}

static bool new_row(merge_t *m, json_t *entry, const char *key)
{
    if (m->n_rows == m->alloc) {
        size_t alloc = m->alloc ? m->alloc * 2 : 16;
        merge_row_t *grown = realloc(m->rows, alloc * sizeof *grown);
        if (!grown)
            return false;
        m->rows = grown;
        m->alloc = alloc;
    }
    json_t *nodes = json_array();
    if (!nodes || json_object_set_new(m->index, key, json_integer((json_int_t)m->n_rows)) != 0) {
        json_decref(nodes);
        return false;
    }
    merge_row_t *row = &m->rows[m->n_rows];
    *row = (merge_row_t){.entry = json_incref(entry),
                         .nodes = nodes,
                         .when = entry_when(m->kind, entry),
                         .seen = m->n_rows};
    m->n_rows++;
    return true;
}

static bool add_entry(merge_t *m, json_t *entry, const char *node)
{
    if (!json_is_object(entry))
        return true; /* not a model: nothing to list */
    char *key = entry_key(m->kind, entry);
    if (!key)
        return true;
    json_t *at = json_object_get(m->index, key);
    bool ok = true;
    if (!at)
        ok = new_row(m, entry, key);
    free(key);
    if (!ok)
        return false;
    merge_row_t *row = &m->rows[at ? (size_t)json_integer_value(at) : m->n_rows - 1];
    if (at && m->kind == AGPU_MERGE_PS) {
        /* the copy that stays loaded longest says when the mesh will let go of it */
        merge_when_t when = entry_when(m->kind, entry);
        if (when_compare(&when, &row->when) > 0) {
            json_decref(row->entry);
            row->entry = json_incref(entry);
            row->when = when;
        }
    }
    return add_node(row->nodes, node);
}

/* Reads one part; false only when out of memory (a part that does not parse is skipped). */
static bool add_part(merge_t *m, const agpu_merge_part_t *part, bool *parsed)
{
    if (!part->body)
        return true;
    json_t *root = json_loadb(part->body, part->len, 0, NULL);
    json_t *list = json_object_get(root, m->kind == AGPU_MERGE_OPENAI ? "data" : "models");
    if (!json_is_array(list)) {
        json_decref(root);
        return true;
    }
    if (json_array_append_new(m->roots, root) != 0)
        return false;
    *parsed = true;
    size_t i;
    json_t *entry;
    json_array_foreach(list, i, entry)
    {
        if (!add_entry(m, entry, part->node))
            return false;
    }
    return true;
}

static char *write_answer(merge_t *m, size_t *len)
{
    if (m->n_rows) /* qsort must not be given NULL, even with 0 rows */
        qsort(m->rows, m->n_rows, sizeof *m->rows, row_compare);
    json_t *list = json_array();
    json_t *answer = m->kind == AGPU_MERGE_OPENAI
                         ? json_pack("{s:s, s:o}", "object", "list", "data", list)
                         : json_pack("{s:o}", "models", list);
    if (!answer)
        return NULL;
    for (size_t i = 0; i < m->n_rows; i++) {
        merge_row_t *row = &m->rows[i];
        /* the OpenAI shape is fixed by its clients: no extra field there */
        if (m->kind != AGPU_MERGE_OPENAI && json_object_set(row->entry, "nodes", row->nodes) != 0)
            goto fail;
        if (json_array_append(list, row->entry) != 0)
            goto fail;
    }
    char *text = json_dumps(answer, JSON_COMPACT);
    json_decref(answer);
    if (text)
        *len = strlen(text);
    return text;
fail:
    json_decref(answer);
    return NULL;
}

char *agpu_merge(agpu_merge_kind_t kind, const agpu_merge_part_t *parts, size_t n_parts,
                 size_t *len)
{
    merge_t m = {.kind = kind, .index = json_object(), .roots = json_array()};
    char *text = NULL;
    bool parsed = false;
    *len = 0;
    if (!m.index || !m.roots)
        goto done;
    for (size_t i = 0; i < n_parts; i++)
        if (!add_part(&m, &parts[i], &parsed))
            goto done;
    if (parsed)
        text = write_answer(&m, len);
done:
    for (size_t i = 0; i < m.n_rows; i++) {
        json_decref(m.rows[i].entry);
        json_decref(m.rows[i].nodes);
    }
    free(m.rows);
    json_decref(m.index);
    json_decref(m.roots);
    return text;
}
