/* The gossip message codec: msgpack-c writes messages, a bounded reader of our own reads them. */
#include "agpu_msg.h"

#include "agpu_text.h"

#include <msgpack.h>

#include <assert.h>
#include <math.h>
#include <stdalign.h>
#include <stdlib.h>
#include <string.h>

/*
 * Why decoding does not use msgpack_unpack: msgpack-c allocates a container's elements as soon
 * as it reads the count, before it has seen them, so the five bytes dd 0f ff ff ff make it map
 * 8 GiB. Any peer (or anyone who can reach the gossip port) could send that. The reader below
 * checks every count against its limit and against the bytes left before it allocates, checks
 * the syntax of the whole message before it allocates at all, and recurses only into a bounded
 * depth. Encoding has no such problem, so it is msgpack-c's packer.
 */

/* ---- What each map holds: one table per struct is the whole wire format. ---- */

enum {
    T_MAGIC,   /* "m": checked by scan(), written from AGPU_MSG_MAGIC */
    T_VERSION, /* "v": likewise, from AGPU_MSG_VERSION */
    T_KIND,    /* "k": likewise, from agpu_msg_t.kind */
    T_U64,
    T_U32,
    T_BOOL,
    T_F64,   /* finite and >= 0 */
    T_TOKEN, /* printable ASCII, no spaces: ids, endpoints, digests */
    T_TEXT,  /* UTF-8 without control characters: names */
    T_ARRAY, /* of maps of another shape */
};

enum {
    REQ = 1,        /* must be present (strings: and non-empty) */
    STATE_ONLY = 2, /* belongs to STATE; in any other kind it is an unknown key */
};

typedef struct shape shape_t;

typedef struct {
    const char *key;
    unsigned char type, flags;
    size_t off;          /* of the value in its struct */
    uint64_t max;        /* longest string, largest number, most elements */
    size_t count_off;    /* T_ARRAY: of the size_t count beside the pointer */
    const shape_t *elem; /* T_ARRAY: shape of one element */
} field_t;

struct shape {
    const field_t *fields;
    size_t n;
    size_t size; /* of one struct, for arrays */
};

#define NELEMS(a) (sizeof(a) / sizeof((a)[0]))
// clang-format off
#define F(k, t, fl, o, mx) {.key = (k), .type = (t), .flags = (fl), .off = (o), .max = (mx)}
#define A(k, fl, o, co, mx, sh) \
    {.key = (k), .type = T_ARRAY, .flags = (fl), .off = (o), .max = (mx), .count_off = (co), .elem = (sh)}
// clang-format on

#define MO(f) offsetof(agpu_msg_model_t, f)
static const field_t model_fields[] = {
    F("n", T_TEXT, REQ, MO(name), AGPU_MSG_MODEL_NAME_MAX),
    F("d", T_TOKEN, 0, MO(digest), AGPU_MSG_DIGEST_MAX),
    F("sz", T_U64, 0, MO(size), UINT64_MAX),
    F("ld", T_BOOL, 0, MO(loaded), 1),
    F("vr", T_U64, 0, MO(vram), UINT64_MAX),
    F("ttl", T_U64, 0, MO(ttl_ms), UINT64_MAX),
    F("if", T_U32, 0, MO(in_flight), UINT32_MAX),
    F("q", T_U32, 0, MO(queued), UINT32_MAX),
    F("tps", T_F64, 0, MO(tokens_per_s), 0),
    F("ttft", T_U32, 0, MO(ttft_ms), UINT32_MAX),
};
static const shape_t model_shape = {model_fields, NELEMS(model_fields), sizeof(agpu_msg_model_t)};

#define GO(f) offsetof(agpu_msg_gpu_t, f)
static const field_t gpu_fields[] = {
    F("n", T_TEXT, 0, GO(name), AGPU_MSG_GPU_NAME_MAX),
    F("ut", T_U32, 0, GO(util_pct), 100),
    F("vt", T_U64, 0, GO(vram_total), UINT64_MAX),
    F("vu", T_U64, 0, GO(vram_used), UINT64_MAX),
};
static const shape_t gpu_shape = {gpu_fields, NELEMS(gpu_fields), sizeof(agpu_msg_gpu_t)};

#define ME(f) offsetof(agpu_msg_member_t, f)
static const field_t member_fields[] = {
    F("id", T_TOKEN, REQ, ME(id), AGPU_MSG_ID_MAX),
    F("ep", T_TOKEN, REQ, ME(endpoint), AGPU_MSG_ENDPOINT_MAX),
    F("inc", T_U64, REQ, ME(incarnation), UINT64_MAX),
};
static const shape_t member_shape = {member_fields, NELEMS(member_fields),
                                     sizeof(agpu_msg_member_t)};

#define MS(f) offsetof(agpu_msg_t, f)
#define ST(f) offsetof(agpu_msg_t, state.f)
static const field_t msg_fields[] = {
    F("m", T_MAGIC, REQ, 0, 0),
    F("v", T_VERSION, REQ, 0, 0),
    F("k", T_KIND, REQ, MS(kind), 0),
    F("id", T_TOKEN, REQ, MS(id), AGPU_MSG_ID_MAX),
    F("inc", T_U64, REQ, MS(incarnation), UINT64_MAX),
    F("seq", T_U64, REQ | STATE_ONLY, ST(seq), UINT64_MAX),
    F("name", T_TEXT, STATE_ONLY, ST(name), AGPU_NAME_MAX),
    F("gep", T_TOKEN, REQ | STATE_ONLY, ST(gossip_endpoint), AGPU_MSG_ENDPOINT_MAX),
    F("hep", T_TOKEN, STATE_ONLY, ST(http_endpoint), AGPU_MSG_ENDPOINT_MAX),
    F("hb", T_U32, STATE_ONLY, ST(heartbeat_ms), AGPU_MSG_HEARTBEAT_MAX_MS),
    F("oup", T_BOOL, STATE_ONLY, ST(ollama_up), 1),
    F("over", T_TEXT, STATE_ONLY, ST(ollama_version), AGPU_MSG_VERSION_MAX),
    F("slots", T_U32, STATE_ONLY, ST(slots), UINT32_MAX),
    F("drain", T_BOOL, STATE_ONLY, ST(draining), 1),
    A("mods", STATE_ONLY, ST(models), ST(n_models), AGPU_MSG_MAX_MODELS, &model_shape),
    A("gpus", STATE_ONLY, ST(gpus), ST(n_gpus), AGPU_MSG_MAX_GPUS, &gpu_shape),
    A("mem", STATE_ONLY, ST(members), ST(n_members), AGPU_MSG_MAX_MEMBERS, &member_shape),
};
static const shape_t msg_shape = {msg_fields, NELEMS(msg_fields), sizeof(agpu_msg_t)};

/* The seen/present masks of decode_map are 32 bits wide. */
_Static_assert(NELEMS(msg_fields) <= 32 && NELEMS(model_fields) <= 32, "field mask too narrow");
_Static_assert(AGPU_MSG_MAX_DEPTH >= 3, "our own messages nest 3 deep");

static bool applies(const field_t *f, bool state)
{
    return state || !(f->flags & STATE_ONLY);
}

/* Strings the rest of agpu can print, log and put in JSON as they are. */
static bool str_ok(const uint8_t *s, size_t n, bool token)
{
    return agpu_text_clean(s, n, token ? AGPU_TEXT_TOKEN : 0);
}

/* ---- The arena a decoded message owns. ---- */

struct agpu_msg_arena {
    struct agpu_msg_arena *next;
    size_t size, used;
    max_align_t data[];
};

/* A few KiB hold most messages in one malloc; a larger array gets a chunk of its own. */
#define ARENA_CHUNK 4096U

static void *arena_alloc(agpu_msg_t *msg, size_t size)
{
    size = (size + alignof(max_align_t) - 1) / alignof(max_align_t) * alignof(max_align_t);
    struct agpu_msg_arena *a = msg->arena;
    if (!a || a->size - a->used < size) {
        size_t chunk = size > ARENA_CHUNK ? size : ARENA_CHUNK;
        if (!(a = malloc(sizeof *a + chunk)))
            return NULL;
        *a = (struct agpu_msg_arena){msg->arena, chunk, 0};
        msg->arena = a;
    }
    char *p = (char *)a->data + a->used;
    a->used += size;
    memset(p, 0, size);
    return p;
}

void agpu_msg_reset(agpu_msg_t *msg)
{
    if (!msg)
        return;
    struct agpu_msg_arena *a = msg->arena;
    while (a) {
        struct agpu_msg_arena *next = a->next;
        free(a);
        a = next;
    }
    memset(msg, 0, sizeof *msg);
}

void agpu_msg_move(agpu_msg_t *dst, agpu_msg_t *src)
{
    *dst = *src;
    memset(src, 0, sizeof *src);
}

/* ---- A reader that never looks past its end. ---- */

typedef struct {
    const uint8_t *p, *end;
} rd_t;

enum { MT_NIL, MT_BOOL, MT_UINT, MT_NEG, MT_FLOAT, MT_STR, MT_BIN, MT_EXT, MT_ARRAY, MT_MAP };

/* One value's tag and the fixed-size part after it. */
typedef struct {
    int type;
    uint64_t u; /* bool, uint, the byte length of a str/bin/ext body, a container's count */
    double f;
} head_t;

static size_t rd_left(const rd_t *r)
{
    return (size_t)(r->end - r->p);
}

static int rd_bytes(rd_t *r, uint64_t n, const uint8_t **out)
{
    if (rd_left(r) < n)
        return AGPU_MSG_ETRUNCATED;
    if (out)
        *out = r->p;
    r->p += n;
    return 0;
}

static int rd_be(rd_t *r, size_t n, uint64_t *v)
{
    const uint8_t *b;
    int rc = rd_bytes(r, n, &b);
    if (rc)
        return rc;
    *v = 0;
    for (size_t i = 0; i < n; i++)
        *v = *v << 8 | b[i];
    return 0;
}

static int rd_head(rd_t *r, head_t *h)
{
    /* Tags 0xc4..0xdf that carry a big-endian number after them: its type and byte count. The
     * signed ints start as MT_NEG and become MT_UINT when >= 0 (another encoder may write a
     * count that way). The zero rows are fixext, handled before. */
    static const unsigned char tags[][2] = {
        {MT_BIN, 1},   {MT_BIN, 2},   {MT_BIN, 4},  {MT_EXT, 1},  {MT_EXT, 2},  {MT_EXT, 4},
        {MT_FLOAT, 4}, {MT_FLOAT, 8}, {MT_UINT, 1}, {MT_UINT, 2}, {MT_UINT, 4}, {MT_UINT, 8},
        {MT_NEG, 1},   {MT_NEG, 2},   {MT_NEG, 4},  {MT_NEG, 8},  {0, 0},       {0, 0},
        {0, 0},        {0, 0},        {0, 0},       {MT_STR, 1},  {MT_STR, 2},  {MT_STR, 4},
        {MT_ARRAY, 2}, {MT_ARRAY, 4}, {MT_MAP, 2},  {MT_MAP, 4},
    };
    uint64_t b, v;
    int rc = rd_be(r, 1, &b);
    if (rc)
        return rc;
    h->type = b <= 0x7f ? MT_UINT : b >= 0xe0 ? MT_NEG : MT_NIL;
    h->u = b;
    h->f = 0;
    if (b <= 0x7f || b >= 0xe0) /* positive and negative fixint */
        return 0;
    if (b <= 0xbf) { /* fixmap, fixarray, fixstr */
        h->type = b <= 0x8f ? MT_MAP : b <= 0x9f ? MT_ARRAY : MT_STR;
        h->u = b & (b <= 0x9f ? 0x0f : 0x1f);
        return 0;
    }
    if (b <= 0xc3) { /* nil, (never used), false, true */
        h->type = b == 0xc0 ? MT_NIL : MT_BOOL;
        h->u = b & 1;
        return b == 0xc1 ? AGPU_MSG_EMALFORMED : 0;
    }
    if (b >= 0xd4 && b <= 0xd8) { /* fixext 1..16: a type byte and the data */
        h->type = MT_EXT;
        h->u = 1 + ((uint64_t)1 << (b - 0xd4));
        return 0;
    }
    const unsigned char *t = tags[b - 0xc4];
    if ((rc = rd_be(r, t[1], &v)))
        return rc;
    h->type = t[0];
    h->u = v;
    if (t[0] == MT_EXT) {
        h->u += 1; /* the type byte */
    } else if (t[0] == MT_FLOAT && t[1] == 4) {
        float fl;
        uint32_t bits = (uint32_t)v;
        memcpy(&fl, &bits, sizeof fl);
        h->f = fl;
    } else if (t[0] == MT_FLOAT) {
        memcpy(&h->f, &v, sizeof h->f);
    } else if (t[0] == MT_NEG && !(v >> (8 * t[1] - 1))) {
        h->type = MT_UINT;
    }
    return 0;
}

static int rd_skip(rd_t *r, int depth);

/* Skips what follows a head already read, at the given depth of the value itself. */
static int rd_skip_rest(rd_t *r, const head_t *h, int depth)
{
    if (h->type == MT_STR || h->type == MT_BIN || h->type == MT_EXT)
        return rd_bytes(r, h->u, NULL);
    if (h->type != MT_ARRAY && h->type != MT_MAP)
        return 0;
    if (depth > AGPU_MSG_MAX_DEPTH)
        return AGPU_MSG_ELIMIT;
    /* Each item takes at least one byte: a count past that is a lie, found before looping. */
    uint64_t items = h->type == MT_MAP ? 2 * h->u : h->u;
    if (items > rd_left(r))
        return AGPU_MSG_ETRUNCATED;
    for (uint64_t i = 0; i < items; i++) {
        int rc = rd_skip(r, depth + 1);
        if (rc)
            return rc;
    }
    return 0;
}

static int rd_skip(rd_t *r, int depth)
{
    head_t h;
    int rc = rd_head(r, &h);
    return rc ? rc : rd_skip_rest(r, &h, depth);
}

/* A container's head: the type, then its count against the limit and the bytes left. */
static int rd_container(rd_t *r, int type, uint64_t max, uint64_t *count)
{
    head_t h;
    int rc = rd_head(r, &h);
    if (rc)
        return rc;
    if (h.type != type)
        return AGPU_MSG_ETYPE;
    if (h.u > max)
        return AGPU_MSG_ELIMIT;
    if ((type == MT_MAP ? 2 * h.u : h.u) > rd_left(r))
        return AGPU_MSG_ETRUNCATED;
    *count = h.u;
    return 0;
}

/* A map key: a string, or (a key no version of ours writes) NULL after skipping it. */
static int rd_key(rd_t *r, int depth, const uint8_t **key, size_t *len)
{
    head_t h;
    int rc = rd_head(r, &h);
    if (rc)
        return rc;
    *key = NULL;
    *len = 0;
    if (h.type != MT_STR)
        return rd_skip_rest(r, &h, depth);
    *len = (size_t)h.u;
    return rd_bytes(r, h.u, key);
}

static bool key_is(const uint8_t *key, size_t len, const char *name)
{
    return key && strlen(name) == len && memcmp(key, name, len) == 0;
}

static int as_uint(const head_t *h, uint64_t max)
{
    if (h->type == MT_NEG || (h->type == MT_UINT && h->u > max))
        return AGPU_MSG_EVALUE;
    return h->type == MT_UINT ? 0 : AGPU_MSG_ETYPE;
}

/* ---- Decoding. ---- */

/*
 * The first pass: the whole message must be well-formed msgpack within the nesting limit,
 * with our magic, a version we speak and a kind we know, before anything is allocated. The
 * header is judged first so that a newer node's message counts as a version or kind mismatch
 * rather than as whichever of its fields fails first.
 */
static int scan(const uint8_t *buf, size_t len, agpu_msg_kind_t *kind)
{
    rd_t r = {buf, buf + len};
    uint64_t n, version = 0, k = 0;
    unsigned seen = 0; /* m, v, k */
    head_t h;
    int rc = rd_container(&r, MT_MAP, UINT64_MAX, &n);
    if (rc)
        return rc == AGPU_MSG_ETYPE ? AGPU_MSG_EMAGIC : rc;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *key;
        size_t klen;
        if ((rc = rd_key(&r, 2, &key, &klen)))
            return rc;
        unsigned bit = key_is(key, klen, "m")   ? 1
                       : key_is(key, klen, "v") ? 2
                       : key_is(key, klen, "k") ? 4
                                                : 0;
        if (bit & seen)
            return AGPU_MSG_EDUPLICATE;
        seen |= bit;
        if (!bit) {
            if ((rc = rd_skip(&r, 2)))
                return rc;
            continue;
        }
        if ((rc = rd_head(&r, &h)))
            return rc;
        if (bit == 1) { /* the magic: our string, or not ours at all */
            const uint8_t *s = NULL;
            if (h.type == MT_STR && (rc = rd_bytes(&r, h.u, &s)))
                return rc;
            if (!key_is(s, (size_t)h.u, AGPU_MSG_MAGIC))
                return AGPU_MSG_EMAGIC;
        } else if ((rc = as_uint(&h, UINT64_MAX))) { /* a negative version is not ours either */
            return rc == AGPU_MSG_EVALUE && bit == 2 ? AGPU_MSG_EVERSION : rc;
        } else {
            *(bit == 2 ? &version : &k) = h.u;
        }
    }
    if (r.p != r.end)
        return AGPU_MSG_EMALFORMED;
    if (!(seen & 1))
        return AGPU_MSG_EMAGIC;
    if (!(seen & 2) || !(seen & 4))
        return AGPU_MSG_EMISSING;
    if (version != AGPU_MSG_VERSION)
        return AGPU_MSG_EVERSION;
    if (k != AGPU_MSG_STATE && k != AGPU_MSG_GOODBYE)
        return AGPU_MSG_EKIND;
    *kind = (agpu_msg_kind_t)k;
    return 0;
}

static int decode_map(rd_t *r, agpu_msg_t *msg, const shape_t *shape, void *obj, bool state,
                      int depth);

/* One known field's value, stored at its place in obj (a map at the given depth). */
static int decode_field(rd_t *r, agpu_msg_t *msg, const field_t *f, void *obj, int depth)
{
    char *at = (char *)obj + f->off;
    uint64_t n;
    head_t h;
    int rc;

    if (f->type == T_MAGIC || f->type == T_VERSION || f->type == T_KIND)
        return rd_skip(r, depth + 1); /* scan() judged them */
    if (f->type == T_ARRAY) {
        const shape_t *e = f->elem;
        char *items = NULL;
        if ((rc = rd_container(r, MT_ARRAY, f->max, &n)))
            return rc;
        if (n && !(items = arena_alloc(msg, (size_t)n * e->size)))
            return AGPU_MSG_ENOMEM;
        for (uint64_t i = 0; i < n; i++)
            if ((rc = decode_map(r, msg, e, items + i * e->size, false, depth + 2)))
                return rc;
        memcpy(at, &items, sizeof items); /* the field is a pointer to the element type */
        memcpy((char *)obj + f->count_off, &(size_t){(size_t)n}, sizeof(size_t));
        return 0;
    }
    if ((rc = rd_head(r, &h)))
        return rc;
    switch (f->type) {
    case T_U64:
    case T_U32:
        if ((rc = as_uint(&h, f->max)))
            return rc;
        if (f->type == T_U32)
            *(uint32_t *)at = (uint32_t)h.u;
        else
            *(uint64_t *)at = h.u;
        return 0;
    case T_BOOL:
        if (h.type != MT_BOOL)
            return AGPU_MSG_ETYPE;
        *(bool *)at = h.u != 0;
        return 0;
    case T_F64:
        if (h.type == MT_UINT)
            h.f = (double)h.u;
        else if (h.type != MT_FLOAT)
            return h.type == MT_NEG ? AGPU_MSG_EVALUE : AGPU_MSG_ETYPE;
        if (!isfinite(h.f) || h.f < 0)
            return AGPU_MSG_EVALUE;
        *(double *)at = h.f;
        return 0;
    default: { /* T_TOKEN, T_TEXT */
        const uint8_t *s;
        char *copy;
        if (h.type != MT_STR)
            return AGPU_MSG_ETYPE;
        if (h.u > f->max)
            return AGPU_MSG_ELIMIT;
        if ((rc = rd_bytes(r, h.u, &s)))
            return rc;
        if (!str_ok(s, (size_t)h.u, f->type == T_TOKEN) || ((f->flags & REQ) && h.u == 0))
            return AGPU_MSG_EVALUE;
        if (!(copy = arena_alloc(msg, (size_t)h.u + 1)))
            return AGPU_MSG_ENOMEM;
        memcpy(copy, s, (size_t)h.u);
        *(const char **)at = copy;
        return 0;
    }
    }
}

/* A map of the given shape at the given depth into obj (zeroed): unknown keys skipped, a nil
 * value read as absent, absent strings made "". */
static int decode_map(rd_t *r, agpu_msg_t *msg, const shape_t *shape, void *obj, bool state,
                      int depth)
{
    static const char empty[] = "";
    uint32_t seen = 0, present = 0;
    uint64_t n;
    int rc = rd_container(r, MT_MAP, UINT64_MAX, &n);
    if (rc)
        return rc;
    for (uint64_t i = 0; i < n; i++) {
        const uint8_t *key;
        size_t klen, j;
        if ((rc = rd_key(r, depth + 1, &key, &klen)))
            return rc;
        for (j = 0; j < shape->n; j++)
            if (applies(&shape->fields[j], state) && key_is(key, klen, shape->fields[j].key))
                break;
        if (j == shape->n) {
            rc = rd_skip(r, depth + 1);
        } else if (seen & (UINT32_C(1) << j)) {
            rc = AGPU_MSG_EDUPLICATE;
        } else if ((seen |= UINT32_C(1) << j), r->p < r->end && *r->p == 0xc0) {
            r->p++;
        } else {
            present |= UINT32_C(1) << j;
            rc = decode_field(r, msg, &shape->fields[j], obj, depth);
        }
        if (rc)
            return rc;
    }
    for (size_t j = 0; j < shape->n; j++) {
        const field_t *f = &shape->fields[j];
        if (!applies(f, state) || (present & (UINT32_C(1) << j)))
            continue;
        if (f->flags & REQ)
            return AGPU_MSG_EMISSING;
        if (f->type == T_TOKEN || f->type == T_TEXT)
            *(const char **)((char *)obj + f->off) = empty;
    }
    return 0;
}

int agpu_msg_decode(const void *buf, size_t len, agpu_msg_t *out)
{
    assert(out && (buf || len == 0));
    memset(out, 0, sizeof *out);
    if (len == 0)
        return AGPU_MSG_ETRUNCATED;
    if (len > AGPU_MSG_MAX_SIZE)
        return AGPU_MSG_ETOOBIG;
    agpu_msg_kind_t kind;
    int rc = scan(buf, len, &kind);
    if (rc)
        return rc;
    out->kind = kind;
    rd_t r = {buf, (const uint8_t *)buf + len};
    rc = decode_map(&r, out, &msg_shape, out, kind == AGPU_MSG_STATE, 1);
    if (rc)
        agpu_msg_reset(out);
    return rc;
}

/* ---- Encoding. ---- */

/* Where the packer writes: a caller's buffer, or nowhere when only measuring. */
typedef struct {
    uint8_t *buf;
    size_t size, len;
} sink_t;

static int sink_write(void *data, const char *bytes, size_t n)
{
    sink_t *s = data;
    size_t room = s->buf && s->size < AGPU_MSG_MAX_SIZE ? s->size : AGPU_MSG_MAX_SIZE;
    if (n > room - s->len)
        return -1;
    if (s->buf)
        memcpy(s->buf + s->len, bytes, n);
    s->len += n;
    return 0;
}

/* The packer fails only when the sink is full. */
static int packed(int rc)
{
    return rc ? AGPU_MSG_ETOOBIG : 0;
}

static int encode_map(msgpack_packer *pk, const shape_t *shape, const void *obj, bool state);

static int encode_field(msgpack_packer *pk, const field_t *f, const void *obj)
{
    const char *at = (const char *)obj + f->off;
    switch (f->type) {
    case T_MAGIC:
        return packed(msgpack_pack_str_with_body(pk, AGPU_MSG_MAGIC, strlen(AGPU_MSG_MAGIC)));
    case T_VERSION:
        return packed(msgpack_pack_uint32(pk, AGPU_MSG_VERSION));
    case T_KIND:
        return packed(msgpack_pack_uint32(pk, (uint32_t)((const agpu_msg_t *)obj)->kind));
    case T_U64:
        return packed(msgpack_pack_uint64(pk, *(const uint64_t *)at));
    case T_U32:
        if (*(const uint32_t *)at > f->max)
            return AGPU_MSG_EVALUE;
        return packed(msgpack_pack_uint32(pk, *(const uint32_t *)at));
    case T_BOOL:
        return packed(*(const bool *)at ? msgpack_pack_true(pk) : msgpack_pack_false(pk));
    case T_F64: {
        double d = *(const double *)at;
        if (!isfinite(d) || d < 0)
            return AGPU_MSG_EVALUE;
        return packed(msgpack_pack_double(pk, d));
    }
    case T_TOKEN:
    case T_TEXT: {
        const char *s = *(const char *const *)at ? *(const char *const *)at : "";
        size_t n = strnlen(s, (size_t)f->max + 1);
        if (n > f->max)
            return AGPU_MSG_ELIMIT;
        if ((f->flags & REQ) && n == 0)
            return AGPU_MSG_EMISSING;
        if (!str_ok((const uint8_t *)s, n, f->type == T_TOKEN))
            return AGPU_MSG_EVALUE;
        return packed(msgpack_pack_str_with_body(pk, s, n));
    }
    case T_ARRAY: {
        const shape_t *e = f->elem;
        const char *items;
        size_t n;
        int rc;
        memcpy(&items, at, sizeof items);
        memcpy(&n, (const char *)obj + f->count_off, sizeof n);
        if (n > f->max)
            return AGPU_MSG_ELIMIT;
        assert(items || n == 0);
        if ((rc = packed(msgpack_pack_array(pk, n))))
            return rc;
        for (size_t i = 0; i < n; i++)
            if ((rc = encode_map(pk, e, items + i * e->size, false)))
                return rc;
        return 0;
    }
    }
    assert(!"unknown field type");
    return AGPU_MSG_EMALFORMED;
}

/* Every field that applies, in table order, defaults included: a few bytes buy a format
 * where what is sent is always the whole record. */
static int encode_map(msgpack_packer *pk, const shape_t *shape, const void *obj, bool state)
{
    size_t n = 0;
    int rc;
    for (size_t j = 0; j < shape->n; j++)
        n += applies(&shape->fields[j], state);
    if ((rc = packed(msgpack_pack_map(pk, n))))
        return rc;
    for (size_t j = 0; j < shape->n; j++) {
        const field_t *f = &shape->fields[j];
        if (!applies(f, state))
            continue;
        if ((rc = packed(msgpack_pack_str_with_body(pk, f->key, strlen(f->key)))))
            return rc;
        if ((rc = encode_field(pk, f, obj)))
            return rc;
    }
    return 0;
}

int agpu_msg_encode(const agpu_msg_t *msg, void *buf, size_t size, size_t *len)
{
    assert(msg && len);
    *len = 0;
    if (msg->kind != AGPU_MSG_STATE && msg->kind != AGPU_MSG_GOODBYE)
        return AGPU_MSG_EKIND;
    sink_t sink = {buf, size, 0};
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sink, sink_write);
    int rc = encode_map(&pk, &msg_shape, msg, msg->kind == AGPU_MSG_STATE);
    if (rc)
        return rc;
    *len = sink.len;
    return AGPU_MSG_OK;
}

/* ---- Names. ---- */

const char *agpu_msg_error_name(int err)
{
    static const char *const names[AGPU_MSG_NERRORS] = {
        "ok",      "truncated", "malformed", "too_big", "limit", "type",  "value",
        "missing", "duplicate", "magic",     "version", "kind",  "nomem",
    };
    return err <= 0 && err > -AGPU_MSG_NERRORS ? names[-err] : "unknown";
}

const char *agpu_msg_kind_name(agpu_msg_kind_t kind)
{
    return kind == AGPU_MSG_STATE ? "state" : kind == AGPU_MSG_GOODBYE ? "goodbye" : "unknown";
}
