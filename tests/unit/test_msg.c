/* Unit tests of the gossip codec: round trips, every truncation, limits, types, garbage. */
#include "agpu_msg.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- A msgpack writer of the tests' own, to build what our encoder never would. ---- */

typedef struct {
    uint8_t *b;
    size_t n, cap;
} tb_t;

static void tb_raw(tb_t *t, const void *p, size_t n)
{
    if (t->cap - t->n < n) {
        t->cap = (t->n + n) * 2;
        t->b = realloc(t->b, t->cap);
        assert_non_null(t->b);
    }
    memcpy(t->b + t->n, p, n);
    t->n += n;
}

static void tb_byte(tb_t *t, uint8_t c)
{
    tb_raw(t, &c, 1);
}

static void tb_be(tb_t *t, uint8_t tag, uint64_t v, int bytes)
{
    tb_byte(t, tag);
    for (int i = bytes - 1; i >= 0; i--)
        tb_byte(t, (uint8_t)(v >> (8 * i)));
}

/* Smallest form of a container or string header, as any encoder would write it. */
static void tb_head(tb_t *t, uint8_t fix, uint64_t fixmax, uint8_t tag8, uint8_t tag16, uint64_t n)
{
    if (n <= fixmax)
        tb_byte(t, (uint8_t)(fix | n));
    else if (tag8 && n <= 0xff)
        tb_be(t, tag8, n, 1);
    else if (n <= 0xffff)
        tb_be(t, tag16, n, 2);
    else
        tb_be(t, tag16 + 1, n, 4);
}

static void tb_map(tb_t *t, uint64_t n)
{
    tb_head(t, 0x80, 15, 0, 0xde, n);
}

static void tb_arr(tb_t *t, uint64_t n)
{
    tb_head(t, 0x90, 15, 0, 0xdc, n);
}

static void tb_strn(tb_t *t, const char *s, size_t n)
{
    tb_head(t, 0xa0, 31, 0xd9, 0xda, n);
    tb_raw(t, s, n);
}

static void tb_str(tb_t *t, const char *s)
{
    tb_strn(t, s, strlen(s));
}

static void tb_rep(tb_t *t, char c, size_t n)
{
    tb_head(t, 0xa0, 31, 0xd9, 0xda, n);
    for (size_t i = 0; i < n; i++)
        tb_byte(t, (uint8_t)c);
}

static void tb_uint(tb_t *t, uint64_t v)
{
    if (v < 128)
        tb_byte(t, (uint8_t)v);
    else
        tb_be(t, 0xcf, v, 8); /* not minimal on purpose: any width must be read */
}

static void tb_f64(tb_t *t, double d)
{
    uint64_t bits;
    memcpy(&bits, &d, sizeof bits);
    tb_be(t, 0xcb, bits, 8);
}

static void tb_kstr(tb_t *t, const char *k, const char *v)
{
    tb_str(t, k);
    tb_str(t, v);
}

static void tb_kuint(tb_t *t, const char *k, uint64_t v)
{
    tb_str(t, k);
    tb_uint(t, v);
}

/* A map of a STATE's 7 required fields and `more` pairs the caller writes after them. */
static void tb_state(tb_t *t, size_t more)
{
    tb_map(t, 7 + more);
    tb_kstr(t, "m", "agpu"), tb_kuint(t, "v", 1), tb_kuint(t, "k", 1);
    tb_kstr(t, "id", "a"), tb_kuint(t, "inc", 1), tb_kuint(t, "seq", 1);
    tb_kstr(t, "gep", "tcp://a:1");
}

/* Decodes t from a heap copy of exactly its size, so ASan and valgrind see any over-read. */
static int decode_tb(const uint8_t *bytes, size_t n, agpu_msg_t *out)
{
    uint8_t *copy = malloc(n ? n : 1);
    assert_non_null(copy);
    memcpy(copy, bytes, n);
    agpu_msg_t scratch;
    int rc = agpu_msg_decode(n ? copy : NULL, n, out ? out : &scratch);
    free(copy);
    if (rc != AGPU_MSG_OK) {
        agpu_msg_t zero;
        memset(&zero, 0, sizeof zero);
        assert_memory_equal(out ? out : &scratch, &zero, sizeof zero); /* nothing to free */
    }
    if (!out)
        agpu_msg_reset(&scratch);
    return rc;
}

/* ---- Messages to round-trip. ---- */

// clang-format off
static const agpu_msg_model_t full_models[] = {
    {.name = "llama3:8b", .digest = "sha256:365c0bd3c000", .size = 4661224676ULL, .loaded = true,
     .vram = 5368709120ULL, .ttl_ms = 299000, .in_flight = 2, .queued = 7, .tokens_per_s = 41.5,
     .ttft_ms = 180},
    {.name = "hf.co/bartowski/Qwen2.5-7B:Q4_K_M", .digest = "", .size = 1, .ttl_ms = 0},
    {.name = "modèle-été:latest", .loaded = true, .ttl_ms = AGPU_MSG_TTL_FOREVER,
     .tokens_per_s = 1e-3, .in_flight = UINT32_MAX},
};
static const agpu_msg_gpu_t full_gpus[] = {
    {.name = "NVIDIA GeForce RTX 4090", .util_pct = 100, .vram_total = 25757220864ULL,
     .vram_used = 1},
    {.name = "", .util_pct = 0},
};
static const agpu_msg_member_t full_members[] = {
    {.id = "b7d1c0a2", .endpoint = "tcp://10.0.0.2:7447", .incarnation = 1},
    {.id = "c9", .endpoint = "tcp://[fe80::1]:7447", .incarnation = UINT64_MAX},
    {.id = "d0", .endpoint = "tcp://host.lan:1", .incarnation = 0},
};

static agpu_msg_t full_state(void)
{
    agpu_msg_t m = {.kind = AGPU_MSG_STATE, .id = "a1f4e2", .incarnation = 1732838400123ULL};
    m.state = (agpu_msg_state_t){
        .seq = 42, .name = "gpu-box-1", .gossip_endpoint = "tcp://10.0.0.1:7447",
        .http_endpoint = "http://10.0.0.1:11435", .heartbeat_ms = 1000, .ollama_up = true,
        .ollama_version = "0.5.7", .slots = 4, .draining = true,
        .n_models = 3, .models = full_models, .n_gpus = 2, .gpus = full_gpus,
        .n_members = 3, .members = full_members};
    return m;
}
// clang-format on

static agpu_msg_t empty_state(void)
{
    agpu_msg_t m = {.kind = AGPU_MSG_STATE, .id = "x", .incarnation = 0};
    m.state.gossip_endpoint = "tcp://h:1";
    return m;
}

static agpu_msg_t goodbye(void)
{
    return (agpu_msg_t){.kind = AGPU_MSG_GOODBYE, .id = "a1f4e2", .incarnation = 77};
}

static void assert_str(const char *got, const char *want)
{
    assert_string_equal(got, want ? want : "");
}

static void assert_msg_equal(const agpu_msg_t *a, const agpu_msg_t *b)
{
    assert_int_equal(a->kind, b->kind);
    assert_str(a->id, b->id);
    assert_int_equal(a->incarnation, b->incarnation);
    if (b->kind != AGPU_MSG_STATE)
        return;
    const agpu_msg_state_t *x = &a->state, *y = &b->state;
    assert_int_equal(x->seq, y->seq);
    assert_str(x->name, y->name);
    assert_str(x->gossip_endpoint, y->gossip_endpoint);
    assert_str(x->http_endpoint, y->http_endpoint);
    assert_int_equal(x->heartbeat_ms, y->heartbeat_ms);
    assert_int_equal(x->ollama_up, y->ollama_up);
    assert_str(x->ollama_version, y->ollama_version);
    assert_int_equal(x->slots, y->slots);
    assert_int_equal(x->draining, y->draining);
    assert_int_equal(x->n_models, y->n_models);
    for (size_t i = 0; i < y->n_models; i++) {
        const agpu_msg_model_t *p = &x->models[i], *q = &y->models[i];
        assert_str(p->name, q->name);
        assert_str(p->digest, q->digest);
        assert_int_equal(p->size, q->size);
        assert_int_equal(p->loaded, q->loaded);
        assert_int_equal(p->vram, q->vram);
        assert_int_equal(p->ttl_ms, q->ttl_ms);
        assert_int_equal(p->in_flight, q->in_flight);
        assert_int_equal(p->queued, q->queued);
        assert_true(p->tokens_per_s == q->tokens_per_s);
        assert_int_equal(p->ttft_ms, q->ttft_ms);
    }
    assert_int_equal(x->n_gpus, y->n_gpus);
    for (size_t i = 0; i < y->n_gpus; i++) {
        assert_str(x->gpus[i].name, y->gpus[i].name);
        assert_int_equal(x->gpus[i].util_pct, y->gpus[i].util_pct);
        assert_int_equal(x->gpus[i].vram_total, y->gpus[i].vram_total);
        assert_int_equal(x->gpus[i].vram_used, y->gpus[i].vram_used);
    }
    assert_int_equal(x->n_members, y->n_members);
    for (size_t i = 0; i < y->n_members; i++) {
        assert_str(x->members[i].id, y->members[i].id);
        assert_str(x->members[i].endpoint, y->members[i].endpoint);
        assert_int_equal(x->members[i].incarnation, y->members[i].incarnation);
    }
}

/* Encodes into a heap buffer of exactly the measured size. Caller frees. */
static uint8_t *encode(const agpu_msg_t *m, size_t *len)
{
    assert_int_equal(agpu_msg_encode(m, NULL, 0, len), AGPU_MSG_OK);
    uint8_t *buf = malloc(*len);
    size_t written;
    assert_non_null(buf);
    assert_int_equal(agpu_msg_encode(m, buf, *len, &written), AGPU_MSG_OK);
    assert_int_equal(written, *len);
    return buf;
}

static void round_trip(const agpu_msg_t *m)
{
    size_t len, len2;
    uint8_t *buf = encode(m, &len);
    agpu_msg_t out;
    assert_int_equal(decode_tb(buf, len, &out), AGPU_MSG_OK);
    assert_msg_equal(&out, m);
    if (out.kind == AGPU_MSG_STATE) /* decoded strings are never NULL */
        assert_true(out.id && out.state.name && out.state.http_endpoint &&
                    out.state.ollama_version);
    uint8_t *again = encode(&out, &len2); /* the encoding is canonical */
    assert_int_equal(len, len2);
    assert_memory_equal(buf, again, len);
    agpu_msg_reset(&out);
    free(again);
    free(buf);
}

static void test_round_trip_state_full(void **unused)
{
    agpu_msg_t m = full_state();
    round_trip(&m);
}

static void test_round_trip_state_empty(void **unused)
{
    agpu_msg_t m = empty_state();
    round_trip(&m);
}

static void test_round_trip_goodbye(void **unused)
{
    agpu_msg_t m = goodbye(), with_state = goodbye();
    round_trip(&m);
    with_state.state = full_state().state; /* a goodbye carries no state, whatever it holds */
    size_t len, len2;
    free(encode(&m, &len));
    free(encode(&with_state, &len2));
    assert_int_equal(len, len2);
}

/* The wire format of version 1 does not drift unnoticed. */
static void test_golden_goodbye(void **unused)
{
    static const uint8_t want[] = {0x85, 0xa1, 'm',  0xa4, 'a', 'g',  'p',  'u',
                                   0xa1, 'v',  0x01, 0xa1, 'k', 0x02, 0xa2, 'i',
                                   'd',  0xa1, 'a',  0xa3, 'i', 'n',  'c',  0x01};
    agpu_msg_t m = {.kind = AGPU_MSG_GOODBYE, .id = "a", .incarnation = 1};
    uint8_t buf[64];
    size_t len;
    assert_int_equal(agpu_msg_encode(&m, buf, sizeof buf, &len), AGPU_MSG_OK);
    assert_int_equal(len, sizeof want);
    assert_memory_equal(buf, want, sizeof want);
}

/* Every limit at once, every string as long as it may be, every number at its largest. */
static char *repeat(char c, size_t n)
{
    char *s = malloc(n + 1);
    assert_non_null(s);
    memset(s, c, n);
    s[n] = 0;
    return s;
}

static void test_largest_message_fits(void **unused)
{
    static agpu_msg_model_t models[AGPU_MSG_MAX_MODELS];
    static agpu_msg_gpu_t gpus[AGPU_MSG_MAX_GPUS];
    static agpu_msg_member_t members[AGPU_MSG_MAX_MEMBERS];
    char *name = repeat('n', AGPU_NAME_MAX), *id = repeat('i', AGPU_MSG_ID_MAX);
    char *ep = repeat('e', AGPU_MSG_ENDPOINT_MAX), *model = repeat('m', AGPU_MSG_MODEL_NAME_MAX);
    char *digest = repeat('d', AGPU_MSG_DIGEST_MAX), *ver = repeat('v', AGPU_MSG_VERSION_MAX);
    char *gpu = repeat('g', AGPU_MSG_GPU_NAME_MAX);
    for (size_t i = 0; i < AGPU_MSG_MAX_MODELS; i++)
        models[i] = (agpu_msg_model_t){model,      digest,     UINT64_MAX, true,  UINT64_MAX,
                                       UINT64_MAX, UINT32_MAX, UINT32_MAX, 1e300, UINT32_MAX};
    for (size_t i = 0; i < AGPU_MSG_MAX_GPUS; i++)
        gpus[i] = (agpu_msg_gpu_t){gpu, 100, UINT64_MAX, UINT64_MAX};
    for (size_t i = 0; i < AGPU_MSG_MAX_MEMBERS; i++)
        members[i] = (agpu_msg_member_t){id, ep, UINT64_MAX};
    agpu_msg_t m = {.kind = AGPU_MSG_STATE, .id = id, .incarnation = UINT64_MAX};
    m.state = (agpu_msg_state_t){UINT64_MAX,
                                 name,
                                 ep,
                                 ep,
                                 AGPU_MSG_HEARTBEAT_MAX_MS,
                                 true,
                                 ver,
                                 UINT32_MAX,
                                 true,
                                 AGPU_MSG_MAX_MODELS,
                                 models,
                                 AGPU_MSG_MAX_GPUS,
                                 gpus,
                                 AGPU_MSG_MAX_MEMBERS,
                                 members};
    size_t len;
    uint8_t *buf = encode(&m, &len);
    print_message("largest message: %zu bytes of %u\n", len, AGPU_MSG_MAX_SIZE);
    assert_true(len <= AGPU_MSG_MAX_SIZE);
    round_trip(&m);
    /* Every truncated length of this one would take minutes: every 997th, and both ends. */
    for (size_t n = 0; n < len; n += (n < 300 || n > len - 300) ? 1 : 997)
        assert_int_equal(decode_tb(buf, n, NULL), AGPU_MSG_ETRUNCATED);
    /* One more of anything is refused by both sides. */
    m.state.n_members = AGPU_MSG_MAX_MEMBERS + 1;
    assert_int_equal(agpu_msg_encode(&m, NULL, 0, &len), AGPU_MSG_ELIMIT);
    free(buf);
    free(name), free(id), free(ep), free(model), free(digest), free(ver), free(gpu);
}

/* Messages another encoder could write: widest forms, other key order, nil, unknown keys. */
static tb_t foreign_state(void)
{
    tb_t t = {0};
    tb_be(&t, 0xdf, 11, 4); /* map32 */
    tb_str(&t, "x-future");
    tb_map(&t, 2), tb_kuint(&t, "a", 1), tb_str(&t, "b"), tb_arr(&t, 2), tb_byte(&t, 0xc0),
        tb_f64(&t, 1.5);
    tb_str(&t, "id"), tb_be(&t, 0xdb, 2, 4), tb_raw(&t, "n2", 2); /* str32 */
    tb_str(&t, "inc"), tb_be(&t, 0xd3, 9, 8);                     /* int64, positive */
    tb_str(&t, "seq"), tb_be(&t, 0xcd, 3, 2);                     /* uint16 */
    tb_kstr(&t, "gep", "tcp://n2:7447");
    tb_str(&t, "name"), tb_byte(&t, 0xc0);      /* nil: absent */
    tb_str(&t, "slots"), tb_be(&t, 0xd0, 2, 1); /* int8 */
    tb_str(&t, "mods"), tb_be(&t, 0xdd, 1, 4);  /* array32 */
    tb_map(&t, 5), tb_kstr(&t, "n", "phi3"), tb_str(&t, "tps"), tb_be(&t, 0xca, 0x41200000, 4);
    tb_str(&t, "bin"), tb_be(&t, 0xc4, 2, 1), tb_byte(&t, 0), tb_byte(&t, 1);
    tb_be(&t, 0xd3, 5, 8), tb_be(&t, 0xd7, 0x01, 1), tb_raw(&t, "12345678", 8); /* int key */
    tb_str(&t, "x-ext"), tb_be(&t, 0xc7, 3, 1), tb_byte(&t, 9), tb_raw(&t, "abc", 3);
    tb_kuint(&t, "k", 1); /* the header last */
    tb_kuint(&t, "v", 1);
    tb_kstr(&t, "m", "agpu");
    return t;
}

static void test_foreign_encoding(void **unused)
{
    tb_t t = foreign_state();
    agpu_msg_t m;
    assert_int_equal(decode_tb(t.b, t.n, &m), AGPU_MSG_OK);
    assert_string_equal(m.id, "n2");
    assert_int_equal(m.incarnation, 9);
    assert_int_equal(m.state.seq, 3);
    assert_string_equal(m.state.name, "");
    assert_int_equal(m.state.slots, 2);
    assert_int_equal(m.state.n_models, 1);
    assert_string_equal(m.state.models[0].name, "phi3");
    assert_true(m.state.models[0].tokens_per_s == 10.0);
    assert_string_equal(m.state.models[0].digest, "");
    agpu_msg_reset(&m);
    agpu_msg_reset(&m); /* twice is harmless, as is NULL */
    agpu_msg_reset(NULL);
    free(t.b);
}

/* Every prefix of every valid message is truncated: not accepted, not read past. */
static void test_every_truncation(void **unused)
{
    agpu_msg_t msgs[] = {full_state(), empty_state(), goodbye()};
    for (size_t k = 0; k < sizeof msgs / sizeof msgs[0]; k++) {
        size_t len;
        uint8_t *buf = encode(&msgs[k], &len);
        for (size_t n = 0; n < len; n++)
            assert_int_equal(decode_tb(buf, n, NULL), AGPU_MSG_ETRUNCATED);
        assert_int_equal(decode_tb(buf, len, NULL), AGPU_MSG_OK);
        free(buf);
    }
    tb_t t = foreign_state();
    for (size_t n = 0; n < t.n; n++)
        assert_int_equal(decode_tb(t.b, n, NULL), AGPU_MSG_ETRUNCATED);
    free(t.b);
}

/* Every buffer too small by any amount is refused, and written only within its size. */
static void test_encode_buffer_too_small(void **unused)
{
    agpu_msg_t m = full_state();
    size_t len, got;
    free(encode(&m, &len));
    for (size_t size = 0; size < len; size++) {
        uint8_t *buf = malloc(size ? size : 1);
        assert_int_equal(agpu_msg_encode(&m, buf, size, &got), AGPU_MSG_ETOOBIG);
        assert_int_equal(got, 0);
        free(buf);
    }
}

static void test_oversized_and_trailing(void **unused)
{
    uint8_t *big = calloc(AGPU_MSG_MAX_SIZE + 1, 1);
    agpu_msg_t m = goodbye(), out;
    size_t len;
    assert_int_equal(agpu_msg_encode(&m, big, AGPU_MSG_MAX_SIZE + 1, &len), AGPU_MSG_OK);
    assert_int_equal(agpu_msg_decode(big, AGPU_MSG_MAX_SIZE + 1, &out), AGPU_MSG_ETOOBIG);
    assert_int_equal(decode_tb(big, len + 1, NULL), AGPU_MSG_EMALFORMED); /* a stray 0 byte */
    assert_int_equal(decode_tb(big, len, NULL), AGPU_MSG_OK);
    free(big);
}

/* ---- One field at a time: wrong type, over the limit, out of range, absent, nil. ---- */

enum { TOP, MODEL, GPU, MEMBER };
enum { V_OMIT, V_STR, V_REP, V_UINT, V_NEG, V_TRUE, V_NIL, V_F64, V_MAP, V_ARR, V_BIN };

typedef struct {
    int where;
    const char *key;
    int v;
    const char *s; /* V_STR */
    uint64_t n;    /* V_REP length, V_UINT value */
    double f;      /* V_F64 */
    int rc;
} fcase_t;

static void put_value(tb_t *t, const fcase_t *c)
{
    // clang-format off
    switch (c->v) {
    case V_STR: tb_str(t, c->s); break;
    case V_REP: tb_rep(t, 'x', c->n); break;
    case V_UINT: tb_uint(t, c->n); break;
    case V_NEG: tb_byte(t, 0xff); break;
    case V_TRUE: tb_byte(t, 0xc3); break;
    case V_NIL: tb_byte(t, 0xc0); break;
    case V_F64: tb_f64(t, c->f); break;
    case V_MAP: tb_map(t, 0); break;
    case V_ARR: tb_arr(t, 0); break;
    case V_BIN: tb_be(t, 0xc4, 1, 1), tb_byte(t, 'x'); break;
    }
    // clang-format on
}

/* Writes the given pairs (NULL-terminated, as key, kind of default) but the case's key. */
static void put_map(tb_t *t, const fcase_t *c, bool here, const char *const *defaults,
                    void (*nested)(tb_t *, const fcase_t *))
{
    size_t n = 0, extra = here && c->v != V_OMIT;
    for (const char *const *d = defaults; *d; d += 2)
        n += !(here && strcmp(*d, c->key) == 0);
    tb_map(t, n + extra + (nested != NULL));
    for (const char *const *d = defaults; *d; d += 2) {
        if (here && strcmp(*d, c->key) == 0)
            continue;
        tb_str(t, d[0]);
        if (d[1][0] == '#')
            tb_uint(t, strtoull(d[1] + 1, NULL, 10));
        else
            tb_str(t, d[1]);
    }
    if (extra)
        tb_str(t, c->key), put_value(t, c);
    if (nested)
        nested(t, c);
}

static void put_lists(tb_t *t, const fcase_t *c)
{
    static const char *const model[] = {"n", "llama3", NULL};
    static const char *const gpu[] = {NULL};
    static const char *const member[] = {"id", "n2", "ep", "tcp://n2:1", "inc", "#3", NULL};
    const char *key = c->where == MODEL ? "mods" : c->where == GPU ? "gpus" : "mem";
    tb_str(t, key);
    tb_arr(t, 1);
    put_map(t, c, true, c->where == MODEL ? model : c->where == GPU ? gpu : member, NULL);
}

static int decode_case(const fcase_t *c)
{
    static const char *const top[] = {"m",  "agpu", "v",  "#1",  "k",  "#1",  "id",
                                      "n1", "inc",  "#5", "seq", "#9", "gep", "tcp://n1:7447",
                                      NULL};
    tb_t t = {0};
    put_map(&t, c, c->where == TOP, top, c->where == TOP ? NULL : put_lists);
    int rc = decode_tb(t.b, t.n, NULL);
    free(t.b);
    return rc;
}

#define OK AGPU_MSG_OK
#define TYPE AGPU_MSG_ETYPE
#define LIMIT AGPU_MSG_ELIMIT
#define VALUE AGPU_MSG_EVALUE
#define MISSING AGPU_MSG_EMISSING
static const fcase_t fcases[] = {
    /* The header. */
    {TOP, "m", V_OMIT, .rc = AGPU_MSG_EMAGIC},
    {TOP, "m", V_STR, "agpv", .rc = AGPU_MSG_EMAGIC},
    {TOP, "m", V_UINT, .rc = AGPU_MSG_EMAGIC},
    {TOP, "v", V_OMIT, .rc = MISSING},
    {TOP, "v", V_UINT, .n = 2, .rc = AGPU_MSG_EVERSION},
    {TOP, "v", V_UINT, .n = 0, .rc = AGPU_MSG_EVERSION},
    {TOP, "v", V_NEG, .rc = AGPU_MSG_EVERSION},
    {TOP, "v", V_STR, "1", .rc = TYPE},
    {TOP, "k", V_OMIT, .rc = MISSING},
    {TOP, "k", V_UINT, .n = 3, .rc = AGPU_MSG_EKIND},
    {TOP, "k", V_UINT, .n = 0, .rc = AGPU_MSG_EKIND},
    {TOP, "k", V_UINT, .n = 2, .rc = OK}, /* a goodbye: STATE keys are then unknown keys */
    {TOP, "k", V_TRUE, .rc = TYPE},
    /* Required fields of a STATE. */
    {TOP, "id", V_OMIT, .rc = MISSING},
    {TOP, "id", V_NIL, .rc = MISSING},
    {TOP, "id", V_STR, "", .rc = VALUE},
    {TOP, "id", V_STR, "a b", .rc = VALUE},
    {TOP, "id", V_STR, "\xc3\xa9", .rc = VALUE}, /* a token is ASCII */
    {TOP, "id", V_REP, .n = AGPU_MSG_ID_MAX, .rc = OK},
    {TOP, "id", V_REP, .n = AGPU_MSG_ID_MAX + 1, .rc = LIMIT},
    {TOP, "id", V_UINT, .n = 1, .rc = TYPE},
    {TOP, "id", V_BIN, .rc = TYPE},
    {TOP, "inc", V_OMIT, .rc = MISSING},
    {TOP, "inc", V_STR, "1", .rc = TYPE},
    {TOP, "inc", V_NEG, .rc = VALUE},
    {TOP, "inc", V_F64, .f = 1.0, .rc = TYPE},
    {TOP, "inc", V_UINT, .n = UINT64_MAX, .rc = OK},
    {TOP, "seq", V_OMIT, .rc = MISSING},
    {TOP, "seq", V_TRUE, .rc = TYPE},
    {TOP, "gep", V_OMIT, .rc = MISSING},
    {TOP, "gep", V_STR, "", .rc = VALUE},
    {TOP, "gep", V_ARR, .rc = TYPE},
    {TOP, "gep", V_REP, .n = AGPU_MSG_ENDPOINT_MAX, .rc = OK},
    {TOP, "gep", V_REP, .n = AGPU_MSG_ENDPOINT_MAX + 1, .rc = LIMIT},
    /* Optional fields of a STATE. */
    {TOP, "name", V_STR, "", .rc = OK},
    {TOP, "name", V_STR, "caf\xc3\xa9 b\xc3\xa4r", .rc = OK},
    {TOP, "name", V_STR, "tab\there", .rc = VALUE},
    {TOP, "name", V_STR, "del\x7f", .rc = VALUE},
    {TOP, "name", V_STR, "\xc3", .rc = VALUE},             /* cut short */
    {TOP, "name", V_STR, "\xc0\xaf", .rc = VALUE},         /* overlong */
    {TOP, "name", V_STR, "\xe2\x82\x28", .rc = VALUE},     /* bad third byte */
    {TOP, "name", V_STR, "\xed\xa0\x80", .rc = VALUE},     /* surrogate */
    {TOP, "name", V_STR, "\xf4\x90\x80\x80", .rc = VALUE}, /* past U+10FFFF */
    {TOP, "name", V_STR, "\xf0\x9f\x98\x80", .rc = OK},    /* an emoji */
    {TOP, "name", V_REP, .n = AGPU_NAME_MAX, .rc = OK},
    {TOP, "name", V_REP, .n = AGPU_NAME_MAX + 1, .rc = LIMIT},
    {TOP, "name", V_UINT, .n = 1, .rc = TYPE},
    {TOP, "name", V_NIL, .rc = OK},
    {TOP, "hep", V_MAP, .rc = TYPE},
    {TOP, "hep", V_REP, .n = AGPU_MSG_ENDPOINT_MAX + 1, .rc = LIMIT},
    {TOP, "hb", V_STR, "1000", .rc = TYPE},
    {TOP, "hb", V_UINT, .n = AGPU_MSG_HEARTBEAT_MAX_MS, .rc = OK},
    {TOP, "hb", V_UINT, .n = AGPU_MSG_HEARTBEAT_MAX_MS + 1, .rc = VALUE},
    {TOP, "oup", V_UINT, .n = 1, .rc = TYPE},
    {TOP, "oup", V_TRUE, .rc = OK},
    {TOP, "over", V_BIN, .rc = TYPE},
    {TOP, "over", V_REP, .n = AGPU_MSG_VERSION_MAX + 1, .rc = LIMIT},
    {TOP, "slots", V_F64, .f = 2.0, .rc = TYPE},
    {TOP, "slots", V_UINT, .n = UINT32_MAX, .rc = OK},
    {TOP, "slots", V_UINT, .n = (uint64_t)UINT32_MAX + 1, .rc = VALUE},
    {TOP, "drain", V_STR, "yes", .rc = TYPE},
    {TOP, "drain", V_NIL, .rc = OK},
    {TOP, "mods", V_MAP, .rc = TYPE},
    {TOP, "mods", V_ARR, .rc = OK},
    {TOP, "gpus", V_STR, "x", .rc = TYPE},
    {TOP, "mem", V_UINT, .n = 1, .rc = TYPE},
    {TOP, "x-later", V_MAP, .rc = OK},
    /* A model. */
    {MODEL, "n", V_OMIT, .rc = MISSING},
    {MODEL, "n", V_STR, "", .rc = VALUE},
    {MODEL, "n", V_UINT, .n = 1, .rc = TYPE},
    {MODEL, "n", V_REP, .n = AGPU_MSG_MODEL_NAME_MAX, .rc = OK},
    {MODEL, "n", V_REP, .n = AGPU_MSG_MODEL_NAME_MAX + 1, .rc = LIMIT},
    {MODEL, "d", V_STR, "sha256:ab cd", .rc = VALUE},
    {MODEL, "d", V_REP, .n = AGPU_MSG_DIGEST_MAX + 1, .rc = LIMIT},
    {MODEL, "d", V_TRUE, .rc = TYPE},
    {MODEL, "sz", V_STR, "1", .rc = TYPE},
    {MODEL, "sz", V_NEG, .rc = VALUE},
    {MODEL, "ld", V_UINT, .n = 0, .rc = TYPE},
    {MODEL, "vr", V_MAP, .rc = TYPE},
    {MODEL, "ttl", V_UINT, .n = UINT64_MAX, .rc = OK},
    {MODEL, "ttl", V_F64, .f = 1, .rc = TYPE},
    {MODEL, "if", V_UINT, .n = (uint64_t)UINT32_MAX + 1, .rc = VALUE},
    {MODEL, "if", V_STR, "", .rc = TYPE},
    {MODEL, "q", V_NEG, .rc = VALUE},
    {MODEL, "tps", V_STR, "1", .rc = TYPE},
    {MODEL, "tps", V_F64, .f = -1, .rc = VALUE},
    {MODEL, "tps", V_F64, .f = NAN, .rc = VALUE},
    {MODEL, "tps", V_F64, .f = INFINITY, .rc = VALUE},
    {MODEL, "tps", V_UINT, .n = 40, .rc = OK},
    {MODEL, "tps", V_NEG, .rc = VALUE},
    {MODEL, "ttft", V_TRUE, .rc = TYPE},
    {MODEL, "x-later", V_ARR, .rc = OK},
    /* A GPU. */
    {GPU, "n", V_UINT, .n = 0, .rc = TYPE},
    {GPU, "n", V_REP, .n = AGPU_MSG_GPU_NAME_MAX + 1, .rc = LIMIT},
    {GPU, "ut", V_UINT, .n = 100, .rc = OK},
    {GPU, "ut", V_UINT, .n = 101, .rc = VALUE},
    {GPU, "vt", V_STR, "8G", .rc = TYPE},
    {GPU, "vu", V_NEG, .rc = VALUE},
    /* A member of the digest. */
    {MEMBER, "id", V_OMIT, .rc = MISSING},
    {MEMBER, "id", V_STR, "", .rc = VALUE},
    {MEMBER, "id", V_REP, .n = AGPU_MSG_ID_MAX + 1, .rc = LIMIT},
    {MEMBER, "ep", V_OMIT, .rc = MISSING},
    {MEMBER, "ep", V_NIL, .rc = MISSING},
    {MEMBER, "ep", V_STR, "tcp://a b:1", .rc = VALUE},
    {MEMBER, "inc", V_OMIT, .rc = MISSING},
    {MEMBER, "inc", V_STR, "3", .rc = TYPE},
    {MEMBER, "x-later", V_TRUE, .rc = OK},
};

static void test_field_table(void **unused)
{
    for (size_t i = 0; i < sizeof fcases / sizeof fcases[0]; i++) {
        int rc = decode_case(&fcases[i]);
        if (rc != fcases[i].rc)
            fail_msg("case %zu (%d %s): got %s, want %s", i, fcases[i].where, fcases[i].key,
                     agpu_msg_error_name(rc), agpu_msg_error_name(fcases[i].rc));
    }
}

/* A newer node's message is judged by its version and kind, not by its fields. */
static void test_header_judged_first(void **unused)
{
    tb_t t = {0};
    tb_map(&t, 5);
    tb_kstr(&t, "id", "");   /* empty: would be a value error */
    tb_kuint(&t, "mods", 1); /* wrong type */
    tb_kstr(&t, "m", "agpu");
    tb_kuint(&t, "k", 1);
    tb_kuint(&t, "v", 2);
    assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_EVERSION);
    t.b[t.n - 1] = 1;
    assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_EVALUE);
    t.b[t.n - 1] = 1, t.b[t.n - 4] = 9; /* k = 9 */
    assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_EKIND);
    free(t.b);
}

static void test_duplicate_keys(void **unused)
{
    static const char *const keys[] = {"m", "v", "k", "id", "seq"};
    for (size_t i = 0; i < 5; i++) {
        tb_t t = {0};
        tb_map(&t, 8);
        tb_kstr(&t, "m", "agpu"), tb_kuint(&t, "v", 1), tb_kuint(&t, "k", 1);
        tb_kstr(&t, "id", "a"), tb_kuint(&t, "inc", 1), tb_kuint(&t, "seq", 1);
        tb_kstr(&t, "gep", "tcp://a:1");
        if (i == 0)
            tb_kstr(&t, "m", "agpu");
        else if (i == 3)
            tb_kstr(&t, "id", "b");
        else
            tb_kuint(&t, keys[i], 1);
        assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_EDUPLICATE);
        free(t.b);
    }
    tb_t t = {0}; /* an unknown key twice is still unknown */
    tb_map(&t, 9);
    tb_kstr(&t, "m", "agpu"), tb_kuint(&t, "v", 1), tb_kuint(&t, "k", 2);
    tb_kstr(&t, "id", "a"), tb_kuint(&t, "inc", 1), tb_kuint(&t, "zz", 1), tb_kuint(&t, "zz", 2);
    tb_kuint(&t, "seq", 1), tb_kuint(&t, "seq", 2); /* in a goodbye, seq is unknown */
    assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_OK);
    free(t.b);
}

/* Unknown values may nest, within AGPU_MSG_MAX_DEPTH in all: the message map is depth 1. */
static int decode_nested(bool in_model, int arrays)
{
    tb_t t = {0};
    tb_state(&t, 1); /* the deep value is in the model map, or here */
    if (in_model)
        tb_str(&t, "mods"), tb_arr(&t, 1), tb_map(&t, 2), tb_kstr(&t, "n", "m");
    tb_str(&t, "deep");
    for (int i = 0; i < arrays; i++)
        tb_arr(&t, i + 1 < arrays ? 1 : 0);
    int rc = decode_tb(t.b, t.n, NULL);
    free(t.b);
    return rc;
}

static void test_nesting_limit(void **unused)
{
    assert_int_equal(decode_nested(false, AGPU_MSG_MAX_DEPTH - 1), AGPU_MSG_OK);
    assert_int_equal(decode_nested(false, AGPU_MSG_MAX_DEPTH), AGPU_MSG_ELIMIT);
    assert_int_equal(decode_nested(true, AGPU_MSG_MAX_DEPTH - 3), AGPU_MSG_OK);
    assert_int_equal(decode_nested(true, AGPU_MSG_MAX_DEPTH - 2), AGPU_MSG_ELIMIT);
    assert_int_equal(decode_nested(false, 100000), AGPU_MSG_ELIMIT); /* no deep recursion */
}

/* A count may not promise more than the bytes left, nor more than its limit. */
static void test_lying_counts(void **unused)
{
    static const uint8_t five[][5] = {
        {0xdd, 0x0f, 0xff, 0xff, 0xff}, {0xdf, 0xff, 0xff, 0xff, 0xff},
        {0xdb, 0xff, 0xff, 0xff, 0xff}, {0xc6, 0xff, 0xff, 0xff, 0xff},
        {0xc9, 0xff, 0xff, 0xff, 0xff}, {0x81, 0xa1, 'x', 0xdd, 0xff},
    };
    for (size_t i = 0; i < sizeof five / sizeof five[0]; i++)
        assert_int_not_equal(decode_tb(five[i], 5, NULL), AGPU_MSG_OK);
    assert_int_equal(decode_tb(five[1], 5, NULL), AGPU_MSG_ETRUNCATED);
    assert_int_equal(decode_tb(five[0], 5, NULL), AGPU_MSG_EMAGIC);
    tb_t t = {0};
    tb_state(&t, 1);
    tb_str(&t, "mods"), tb_arr(&t, AGPU_MSG_MAX_MODELS + 1);
    for (int i = 0; i <= AGPU_MSG_MAX_MODELS; i++)
        tb_map(&t, 1), tb_kstr(&t, "n", "m");
    assert_int_equal(decode_tb(t.b, t.n, NULL), AGPU_MSG_ELIMIT);
    /* Cut short as well: the syntax pass finds the missing bytes before any limit is judged. */
    assert_int_equal(decode_tb(t.b, t.n - 4, NULL), AGPU_MSG_ETRUNCATED);
    free(t.b);
    tb_t u = {0};
    tb_map(&u, 1), tb_str(&u, "x"), tb_be(&u, 0xc1, 0, 0); /* the one byte msgpack never uses */
    assert_int_equal(decode_tb(u.b, u.n, NULL), AGPU_MSG_EMALFORMED);
    free(u.b);
}

static void test_encode_rejects(void **unused)
{
    agpu_msg_t m = full_state();
    agpu_msg_model_t bad_model = full_models[0];
    agpu_msg_gpu_t bad_gpu = full_gpus[0];
    size_t len;
#define ENC(field, value, want)                                                                    \
    do {                                                                                           \
        agpu_msg_t c = m;                                                                          \
        c.field = value;                                                                           \
        assert_int_equal(agpu_msg_encode(&c, NULL, 0, &len), want);                                \
    } while (0)
    ENC(kind, 0, AGPU_MSG_EKIND);
    ENC(kind, (agpu_msg_kind_t)3, AGPU_MSG_EKIND);
    ENC(id, NULL, AGPU_MSG_EMISSING);
    ENC(id, "", AGPU_MSG_EMISSING);
    ENC(id, "a b", AGPU_MSG_EVALUE);
    ENC(state.gossip_endpoint, NULL, AGPU_MSG_EMISSING);
    ENC(state.name, "line\nbreak", AGPU_MSG_EVALUE);
    ENC(state.name, NULL, AGPU_MSG_OK);
    ENC(state.heartbeat_ms, AGPU_MSG_HEARTBEAT_MAX_MS + 1, AGPU_MSG_EVALUE);
    ENC(state.n_models, AGPU_MSG_MAX_MODELS + 1, AGPU_MSG_ELIMIT);
    ENC(state.n_gpus, AGPU_MSG_MAX_GPUS + 1, AGPU_MSG_ELIMIT);
    char *long_id = repeat('i', AGPU_MSG_ID_MAX + 1);
    ENC(id, long_id, AGPU_MSG_ELIMIT);
    free(long_id);
    m.state.n_models = 1, m.state.models = &bad_model;
    bad_model.tokens_per_s = NAN;
    assert_int_equal(agpu_msg_encode(&m, NULL, 0, &len), AGPU_MSG_EVALUE);
    bad_model.tokens_per_s = -0.5;
    assert_int_equal(agpu_msg_encode(&m, NULL, 0, &len), AGPU_MSG_EVALUE);
    bad_model.tokens_per_s = 1, bad_model.name = "";
    assert_int_equal(agpu_msg_encode(&m, NULL, 0, &len), AGPU_MSG_EMISSING);
    m.state.n_gpus = 1, m.state.gpus = &bad_gpu, bad_model.name = "ok";
    bad_gpu.util_pct = 101;
    assert_int_equal(agpu_msg_encode(&m, NULL, 0, &len), AGPU_MSG_EVALUE);
#undef ENC
}

/* ---- Garbage never crashes, and whatever decodes, encodes again. ---- */

static uint64_t rng = 0x9e3779b97f4a7c15ULL; /* fixed seed: failures reproduce */

static uint64_t next_random(void)
{
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return rng;
}

static void check_garbage(const uint8_t *buf, size_t n, size_t *accepted)
{
    agpu_msg_t m;
    int rc = decode_tb(buf, n, &m);
    assert_true(rc <= 0 && rc > -AGPU_MSG_NERRORS);
    if (rc != AGPU_MSG_OK)
        return;
    ++*accepted;
    size_t len, len2;
    uint8_t *again = encode(&m, &len);
    agpu_msg_t m2;
    assert_int_equal(decode_tb(again, len, &m2), AGPU_MSG_OK);
    assert_msg_equal(&m2, &m);
    uint8_t *third = encode(&m2, &len2);
    assert_memory_equal(again, third, len);
    free(again), free(third);
    agpu_msg_reset(&m), agpu_msg_reset(&m2);
}

static void test_random_garbage(void **unused)
{
    uint8_t buf[512];
    size_t accepted = 0;
    for (int i = 0; i < 4000; i++) {
        size_t n = next_random() % sizeof buf;
        for (size_t j = 0; j < n; j++)
            buf[j] = (uint8_t)next_random();
        if (n && i % 2) /* half of them at least start like a message */
            buf[0] = (uint8_t)(0x80 | (next_random() % 16));
        check_garbage(buf, n, &accepted);
    }
    assert_int_equal(accepted, 0); /* random bytes are never a message */
}

static void test_mutated_messages(void **unused)
{
    static const uint8_t specials[] = {0x00, 0x7f, 0x80, 0x8f, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc3,
                                       0xca, 0xcb, 0xcf, 0xd3, 0xdb, 0xdd, 0xdf, 0xe0, 0xff};
    agpu_msg_t msgs[] = {full_state(), empty_state(), goodbye()};
    size_t accepted = 0;
    for (size_t k = 0; k < 3; k++) {
        size_t len;
        uint8_t *orig = encode(&msgs[k], &len);
        uint8_t *buf = malloc(len + 8);
        for (int i = 0; i < 3000; i++) {
            size_t n = len, at = next_random() % len;
            memcpy(buf, orig, len);
            switch (next_random() % 4) {
            case 0:
                buf[at] ^= (uint8_t)(1u << (next_random() % 8));
                break;
            case 1:
                buf[at] = specials[next_random() % sizeof specials];
                break;
            case 2:
                memmove(buf + at, buf + at + 1, len - at - 1), n--;
                break;
            case 3:
                memmove(buf + at + 1, buf + at, len - at), n++;
                buf[at] = (uint8_t)next_random();
                break;
            }
            check_garbage(buf, n, &accepted);
        }
        free(buf), free(orig);
    }
    print_message("%zu of 9000 mutants were still messages\n", accepted);
}

static void test_names(void **unused)
{
    for (int i = 0; i < AGPU_MSG_NERRORS; i++) {
        assert_string_not_equal(agpu_msg_error_name(-i), "unknown");
        for (int j = 0; j < i; j++)
            assert_string_not_equal(agpu_msg_error_name(-i), agpu_msg_error_name(-j));
    }
    assert_string_equal(agpu_msg_error_name(AGPU_MSG_ETRUNCATED), "truncated");
    assert_string_equal(agpu_msg_error_name(-AGPU_MSG_NERRORS), "unknown");
    assert_string_equal(agpu_msg_error_name(1), "unknown");
    assert_string_equal(agpu_msg_kind_name(AGPU_MSG_STATE), "state");
    assert_string_equal(agpu_msg_kind_name(AGPU_MSG_GOODBYE), "goodbye");
    assert_string_equal(agpu_msg_kind_name((agpu_msg_kind_t)0), "unknown");
}

static void test_move(void **unused)
{
    agpu_msg_t m = full_state(), a, b;
    size_t len;
    uint8_t *buf = encode(&m, &len);
    assert_int_equal(decode_tb(buf, len, &a), AGPU_MSG_OK);
    agpu_msg_move(&b, &a);
    assert_null(a.arena);
    assert_null(a.id);
    assert_msg_equal(&b, &m);
    agpu_msg_reset(&a);
    agpu_msg_reset(&b);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_state_full),
        cmocka_unit_test(test_round_trip_state_empty),
        cmocka_unit_test(test_round_trip_goodbye),
        cmocka_unit_test(test_golden_goodbye),
        cmocka_unit_test(test_largest_message_fits),
        cmocka_unit_test(test_foreign_encoding),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_encode_buffer_too_small),
        cmocka_unit_test(test_oversized_and_trailing),
        cmocka_unit_test(test_field_table),
        cmocka_unit_test(test_header_judged_first),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_nesting_limit),
        cmocka_unit_test(test_lying_counts),
        cmocka_unit_test(test_encode_rejects),
        cmocka_unit_test(test_random_garbage),
        cmocka_unit_test(test_mutated_messages),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_move),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
