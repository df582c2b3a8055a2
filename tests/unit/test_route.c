/* Unit tests of agpu_route: mesh snapshots as tables, and the plan each one must give. */
#include "agpu_route.h"

#include "agpu_json.h"
#include "agpu_name.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define M "llama3:latest" /* the model every table is about, as Ollama lists it */
#define MAXN 8

/* One node of a table. Zeroed fields: alive, Ollama up, not draining, no slots (no Ollama),
 * model not installed, nothing in flight, speed not measured. */
typedef struct {
    const char *id;
    bool self;
    agpu_peer_state_t state;
    bool down, draining;
    uint32_t slots;
    const char *model; /* as listed; NULL: not installed */
    bool loaded;
    uint32_t in_flight; /* for the model */
    double tps;
    uint32_t busy_other; /* requests in flight for another model, loaded on the same node */
} node_t;

/* Field lists to start a node with; other fields may follow (not these: -Woverride-init). */
#define WARM(id_, slots_, load_)                                                                   \
    .id = id_, .slots = slots_, .model = M, .loaded = true, .in_flight = load_
#define COLD(id_, slots_) .id = id_, .slots = slots_, .model = M

static size_t count_nodes(const node_t *nodes)
{
    size_t n = 0;
    while (n < MAXN && nodes[n].id)
        n++;
    return n;
}

static agpu_view_t *build_view(const node_t *nodes, size_t n)
{
    const char *self_id = "nobody";
    for (size_t i = 0; i < n; i++)
        if (nodes[i].self)
            self_id = nodes[i].id;
    agpu_view_t *view = agpu_view_new(self_id);
    assert_non_null(view);
    for (size_t i = 0; i < n; i++) {
        const node_t *d = &nodes[i];
        agpu_msg_model_t models[2];
        size_t n_models = 0;
        if (d->model)
            models[n_models++] = (agpu_msg_model_t){.name = d->model,
                                                    .loaded = d->loaded,
                                                    .in_flight = d->in_flight,
                                                    .tokens_per_s = d->tps};
        if (d->busy_other)
            models[n_models++] = (agpu_msg_model_t){
                .name = "other:latest", .loaded = true, .in_flight = d->busy_other};
        char name[64], http[64], gossip[64];
        snprintf(name, sizeof name, "node-%s", d->id);
        snprintf(http, sizeof http, "http://%s:11435", d->id);
        snprintf(gossip, sizeof gossip, "tcp://%s:11436", d->id);
        agpu_msg_state_t st = {.seq = 1,
                               .name = name,
                               .gossip_endpoint = gossip,
                               .http_endpoint = http,
                               .ollama_up = !d->down,
                               .slots = d->slots,
                               .draining = d->draining,
                               .n_models = n_models,
                               .models = models};
        assert_int_equal(agpu_view_add(view, d->id, gossip, d->self, d->state, 0, &st), 0);
    }
    return view;
}

static void key_of(const char *model, char *key, size_t size)
{
    assert_int_equal(agpu_name_key(model, key, size), 0);
}

static const char *id_at(const agpu_view_t *view, const agpu_route_candidate_t *out, size_t i)
{
    return agpu_view_peer(view, out[i].node)->id;
}

/* ---- the tables ---- */

#define GO AGPU_ROUTE_GO
#define WAIT AGPU_ROUTE_WAIT
#define NONE AGPU_ROUTE_NONE
#define HOLDER AGPU_ROUTE_HOLDER

typedef struct {
    const char *name;
    node_t nodes[MAXN]; /* ended by the first without an id */
    const char *ask;    /* the model the request names; NULL: "llama3" */
    agpu_route_kind_t kind;
    bool allow_cold;
    int32_t pending[MAXN];
    agpu_route_verdict_t verdict;
    const char *usable[MAXN]; /* "id tier", in the plan's order */
    const char *out[MAXN];    /* "id: why", the TIER_OUT nodes in view order */
} route_case_t;

// clang-format off
static const route_case_t cases[] = {
    /* who has it at all */
    {"an empty mesh has nobody", {{0}}, .verdict = NONE},
    {"nobody has it installed",
     {{.id = "a", .slots = 1, .busy_other = 1}, {.id = "b", .slots = 1, .self = true}},
     .verdict = NONE, .out = {"a: model not installed", "b: model not installed"}},
    {"only a dead node has it",
     {{WARM("a", 1, 0), .state = AGPU_PEER_DEAD}, {.id = "b", .slots = 1}},
     .verdict = NONE, .out = {"a: dead", "b: model not installed"}},
    {"only a node that left has it",
     {{WARM("a", 1, 0), .state = AGPU_PEER_LEFT}}, .verdict = NONE, .out = {"a: left"}},
    {"only a suspect node has it: wait for it",
     {{WARM("a", 1, 0), .state = AGPU_PEER_SUSPECT}, {.id = "b", .slots = 1}},
     .verdict = WAIT, .out = {"a: suspect", "b: model not installed"}},
    {"only a draining node has it: wait",
     {{WARM("a", 1, 0), .draining = true}}, .verdict = WAIT, .out = {"a: draining"}},
    {"only a node whose Ollama is down has it: wait",
     {{WARM("a", 1, 0), .down = true}}, .verdict = WAIT, .out = {"a: ollama down"}},

    /* exclusions */
    {"draining, Ollama down and no Ollama are out, each with its reason",
     {{WARM("a", 1, 0), .draining = true}, {WARM("b", 1, 0), .down = true},
      {WARM("c", 0, 0)}, {WARM("d", 1, 0)}, {WARM("e", 1, 0), .state = AGPU_PEER_DEAD}},
     .verdict = GO, .usable = {"d warm-free"},
     .out = {"a: draining", "b: ollama down", "c: no ollama", "e: dead"}},

    /* tiers */
    {"warm and free beats cold and free",
     {{COLD("a", 1), .self = true}, {WARM("b", 1, 0)}},
     .verdict = GO, .usable = {"b warm-free", "a cold-free"}},
    {"warm and free beats warm and busy, whatever their speeds",
     {{WARM("a", 1, 1), .self = true, .tps = 100}, {WARM("b", 1, 0), .tps = 1}},
     .verdict = GO, .usable = {"b warm-free", "a warm-busy"}},
    {"cold and free goes when no replica is loaded",
     {{COLD("a", 2)}, {COLD("b", 2), .self = true}},
     .verdict = GO, .usable = {"b cold-free", "a cold-free"}},
    {"no cold load while a warm replica is only busy",
     {{WARM("a", 1, 1)}, {COLD("b", 1)}},
     .verdict = WAIT, .usable = {"b cold-free", "a warm-busy"}},
    {"allow_cold loads it cold though a warm replica is busy",
     {{WARM("a", 1, 1)}, {COLD("b", 1)}}, .allow_cold = true,
     .verdict = GO, .usable = {"b cold-free", "a warm-busy"}},
    {"all busy: wait, with every candidate in failover order",
     {{WARM("a", 1, 3)}, {WARM("b", 2, 2)}, {COLD("c", 1), .busy_other = 1}},
     .verdict = WAIT, .usable = {"b warm-busy", "a warm-busy", "c cold-busy"}},
    {"with a replica loaded, a cold load goes only to an idle node",
     {{WARM("a", 1, 1)}, {COLD("b", 2), .busy_other = 1}, {COLD("c", 1)}}, .allow_cold = true,
     .verdict = GO, .usable = {"c cold-free", "a warm-busy", "b cold-busy"}},
    {"with a replica loaded and no node idle, it waits even when allowed cold",
     {{WARM("a", 1, 1)}, {COLD("b", 2), .busy_other = 1}}, .allow_cold = true,
     .verdict = WAIT, .usable = {"a warm-busy", "b cold-busy"}},
    {"a node loading the model counts as a busy replica: no second cold load",
     {{COLD("a", 2), .in_flight = 1}, {COLD("b", 2)}},
     .verdict = WAIT, .usable = {"b cold-free", "a warm-busy"}},
    {"... and allowed cold, the load goes to another idle node only",
     {{COLD("a", 2), .in_flight = 1}, {COLD("b", 2)}}, .allow_cold = true,
     .verdict = GO, .usable = {"b cold-free", "a warm-busy"}},
    {"a loaded model's load is its own; a cold node's is the whole node's",
     {{WARM("a", 2, 1), .busy_other = 5}, {COLD("b", 2), .busy_other = 2}},
     .verdict = GO, .usable = {"a warm-free", "b cold-busy"}},

    /* scores */
    {"an 8x faster node comes first at equal load",
     {{WARM("a", 1, 0), .self = true, .tps = 10}, {WARM("b", 1, 0), .tps = 80}},
     .verdict = GO, .usable = {"b warm-free", "a warm-free"}},
    {"a 2x node at load 1 ties a 1x node at load 0: self wins",
     {{WARM("a", 2, 0), .self = true, .tps = 10}, {WARM("b", 2, 1), .tps = 20}},
     .verdict = GO, .usable = {"a warm-free", "b warm-free"}},
    {"the same tie, self the 2x node",
     {{WARM("a", 2, 0), .tps = 10}, {WARM("b", 2, 1), .self = true, .tps = 20}},
     .verdict = GO, .usable = {"b warm-free", "a warm-free"}},
    {"the same tie, neither self: the lower id",
     {{WARM("b", 2, 1), .tps = 20}, {WARM("a", 2, 0), .tps = 10}},
     .verdict = GO, .usable = {"a warm-free", "b warm-free"}},
    {"an unmeasured node counts at the mesh's mean speed for the model",
     {{WARM("a", 1, 0)}, {WARM("b", 1, 0), .tps = 40}, {WARM("c", 1, 0), .tps = 20}},
     .verdict = GO, .usable = {"b warm-free", "a warm-free", "c warm-free"}},
    {"nothing measured: load relative to slots decides",
     {{WARM("a", 2, 1), .self = true}, {WARM("b", 4, 1)}},
     .verdict = GO, .usable = {"b warm-free", "a warm-free"}},
    {"self wins ties",
     {{WARM("a", 1, 0)}, {WARM("b", 1, 0)}, {WARM("c", 1, 0), .self = true}},
     .verdict = GO, .usable = {"c warm-free", "a warm-free", "b warm-free"}},

    /* pending: what this node sent or saw finish since the last state */
    {"requests sent since the last state shift the choice",
     {{WARM("a", 4, 0), .self = true}, {WARM("b", 4, 0)}}, .pending = {2, 0},
     .verdict = GO, .usable = {"b warm-free", "a warm-free"}},
    {"requests seen finishing count too",
     {{WARM("a", 4, 1), .self = true}, {WARM("b", 4, 3)}}, .pending = {0, -3},
     .verdict = GO, .usable = {"b warm-free", "a warm-free"}},
    {"pending never takes a load below zero",
     {{WARM("a", 4, 0), .self = true}, {WARM("b", 4, 1)}}, .pending = {0, -5},
     .verdict = GO, .usable = {"a warm-free", "b warm-free"}},
    {"pending can fill the last warm slot: then no cold load",
     {{WARM("a", 1, 0), .self = true}, {COLD("b", 1)}}, .pending = {1, 0},
     .verdict = WAIT, .usable = {"b cold-free", "a warm-busy"}},

    /* Ollama's name rules, through the keys */
    {"\"llama3\" is \"llama3:latest\"", {{WARM("a", 1, 0)}}, .ask = "llama3",
     .verdict = GO, .usable = {"a warm-free"}},
    {"names match whatever their case", {{WARM("a", 1, 0)}}, .ask = "LLaMA3:Latest",
     .verdict = GO, .usable = {"a warm-free"}},
    {"the default registry and namespace are implied",
     {{.id = "a", .slots = 1, .model = "library/Llama3", .loaded = true}},
     .ask = "registry.ollama.ai/library/llama3:latest",
     .verdict = GO, .usable = {"a warm-free"}},
    {"another tag is another model", {{WARM("a", 1, 0)}}, .ask = "llama3:8b",
     .verdict = NONE, .out = {"a: model not installed"}},

    /* HOLDER: any node with the model answers, slots aside */
    {"holder: self first, then loaded, then score; busy does not matter",
     {{COLD("a", 1)}, {WARM("b", 1, 5)}, {COLD("c", 1), .self = true, .busy_other = 1},
      {WARM("d", 2, 0)}, {WARM("e", 1, 0), .state = AGPU_PEER_DEAD}}, .kind = HOLDER,
     .verdict = GO, .usable = {"c cold-busy", "d warm-free", "b warm-busy", "a cold-free"},
     .out = {"e: dead"}},
    {"holder: draining and suspect holders are a last resort",
     {{WARM("a", 1, 0), .self = true, .draining = true},
      {WARM("b", 1, 0), .state = AGPU_PEER_SUSPECT}, {COLD("c", 1)}}, .kind = HOLDER,
     .verdict = GO, .usable = {"c cold-free", "a warm-free", "b warm-free"}},
    {"holder: a suspect holder alone still answers",
     {{WARM("a", 1, 0), .state = AGPU_PEER_SUSPECT}}, .kind = HOLDER,
     .verdict = GO, .usable = {"a warm-free"}},
    {"holder: no Ollama up with the model is none, never wait",
     {{WARM("a", 1, 0), .down = true}, {WARM("b", 1, 0), .state = AGPU_PEER_LEFT}},
     .kind = HOLDER, .verdict = NONE, .out = {"a: ollama down", "b: left"}},
    {"holder: nobody has it", {{.id = "a", .slots = 1}}, .kind = HOLDER,
     .verdict = NONE, .out = {"a: model not installed"}},
};
// clang-format on

static size_t count_strings(const char *const *list)
{
    size_t n = 0;
    while (n < MAXN && list[n])
        n++;
    return n;
}

/* Says which table row failed before cmocka stops the test. */
static void check_string(const route_case_t *c, const char *got, const char *want)
{
    if (strcmp(got, want) != 0)
        print_error("case \"%s\": got \"%s\", want \"%s\"\n", c->name, got, want);
    assert_string_equal(got, want);
}

static void check_int(const route_case_t *c, const char *what, long got, long want)
{
    if (got != want)
        print_error("case \"%s\": %s is %ld, want %ld\n", c->name, what, got, want);
    assert_int_equal(got, want);
}

static void test_tables(void **unused)
{
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const route_case_t *c = &cases[k];
        size_t n = count_nodes(c->nodes);
        agpu_view_t *view = build_view(c->nodes, n);
        char key[AGPU_NAME_KEY_MAX];
        key_of(c->ask ? c->ask : "llama3", key, sizeof key);
        agpu_route_input_t in = {.model_key = key,
                                 .kind = c->kind,
                                 .allow_cold = c->allow_cold,
                                 .pending = c->pending,
                                 .random = 0}; /* both draws: the first in sorted order */
        agpu_route_candidate_t out[MAXN];
        agpu_route_plan_t plan;
        agpu_route_plan(view, &in, out, &plan);

        check_string(c, agpu_route_verdict_name(plan.verdict), agpu_route_verdict_name(c->verdict));
        check_int(c, "count", (long)plan.count, (long)n);
        size_t n_usable = count_strings(c->usable), n_out = count_strings(c->out);
        check_int(c, "n_usable", (long)plan.n_usable, (long)n_usable);
        check_int(c, "usable + out", (long)(n_usable + n_out), (long)n);
        for (size_t i = 0; i < plan.count; i++) {
            char got[128];
            if (i < plan.n_usable)
                snprintf(got, sizeof got, "%s %s", id_at(view, out, i),
                         agpu_route_tier_name(out[i].tier));
            else
                snprintf(got, sizeof got, "%s: %s", id_at(view, out, i), out[i].why);
            check_string(c, got, i < n_usable ? c->usable[i] : c->out[i - n_usable]);
            if (i >= plan.n_usable)
                check_int(c, "tier of an out node", out[i].tier, AGPU_TIER_OUT);
        }
        agpu_view_unref(&view);
    }
}

/* ---- the numbers behind a candidate ---- */

static const agpu_route_candidate_t *
find_node(const agpu_view_t *view, const agpu_route_candidate_t *out, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(id_at(view, out, i), id) == 0)
            return &out[i];
    fail_msg("node %s is not in the plan", id);
    return NULL;
}

static void test_candidate_fields(void **unused)
{
    const node_t nodes[] = {
        {WARM("a", 2, 1)},                          /* unmeasured: the mean of b and c, 30 */
        {WARM("b", 4, 3), .tps = 40},               /* pending -1: load 2 */
        {COLD("c", 3), .tps = 20, .busy_other = 2}, /* cold: the whole node's load */
        {WARM("d", 1, 0), .state = AGPU_PEER_DEAD}, /* out, but still scored for the CLI */
        {.id = "e"},                                /* no Ollama: no slots, no score */
    };
    agpu_view_t *view = build_view(nodes, 5);
    const int32_t pending[] = {0, -1, 0, 0, 0};
    agpu_route_input_t in = {.model_key = M, .pending = pending};
    agpu_route_candidate_t out[5];
    agpu_route_plan_t plan;
    agpu_route_plan(view, &in, out, &plan);
    assert_int_equal(plan.verdict, AGPU_ROUTE_GO);
    assert_int_equal(plan.n_usable, 3);

    const agpu_route_candidate_t *a = find_node(view, out, 5, "a");
    assert_int_equal(a->node, 0);
    assert_int_equal(a->tier, AGPU_TIER_WARM_FREE);
    assert_int_equal(a->load, 1);
    assert_int_equal(a->capacity, 2);
    assert_false(a->measured);
    assert_true(a->speed == 30.0);
    assert_true(a->score == 2.0 / 60.0);
    assert_string_equal(a->why, "loaded, free slot");

    const agpu_route_candidate_t *b = find_node(view, out, 5, "b");
    assert_int_equal(b->load, 2);
    assert_true(b->measured);
    assert_true(b->speed == 40.0);
    assert_true(b->score == 3.0 / 160.0);

    const agpu_route_candidate_t *c = find_node(view, out, 5, "c");
    assert_int_equal(c->tier, AGPU_TIER_COLD_BUSY); /* a replica is loaded: idle nodes only */
    assert_int_equal(c->load, 2);
    assert_true(c->measured);
    assert_true(c->score == 3.0 / 60.0);
    assert_string_equal(c->why, "installed, node busy");

    const agpu_route_candidate_t *d = find_node(view, out, 5, "d");
    assert_int_equal(d->tier, AGPU_TIER_OUT);
    assert_string_equal(d->why, "dead");
    assert_true(d->speed == 30.0);
    assert_true(d->score == 1.0 / 30.0);

    const agpu_route_candidate_t *e = find_node(view, out, 5, "e");
    assert_int_equal(e->capacity, 0);
    assert_true(e->score == 0);
    assert_string_equal(e->why, "no ollama");
    agpu_view_unref(&view);
}

/* A peer may claim any speed: scores and draw weights stay finite and positive. */
static void test_extreme_speeds_stay_finite(void **unused)
{
    const node_t nodes[] = {
        {WARM("a", 1, 0), .tps = 1e300},
        {WARM("b", 1, 0), .tps = 1e-300},
        {WARM("c", UINT32_MAX, UINT32_MAX - 1), .tps = 1e300},
    };
    agpu_view_t *view = build_view(nodes, 3);
    const int32_t pending[] = {INT32_MAX, INT32_MIN, INT32_MAX};
    agpu_route_candidate_t out[3];
    agpu_route_plan_t plan;
    for (uint64_t r = 0; r < 64; r++) {
        agpu_route_input_t in = {
            .model_key = M, .pending = pending, .random = r * 0x0123456789abcdefULL};
        agpu_route_plan(view, &in, out, &plan);
        assert_int_equal(plan.n_usable, 3);
        for (size_t i = 0; i < 3; i++) {
            assert_true(out[i].speed >= 0.001 && out[i].speed <= 1e6);
            assert_true(out[i].score > 0 && out[i].score < 1e20);
        }
    }
    assert_int_equal(find_node(view, out, 3, "a")->load, INT32_MAX);
    assert_int_equal(find_node(view, out, 3, "b")->load, 0);
    assert_int_equal(find_node(view, out, 3, "c")->load, UINT32_MAX);
    agpu_view_unref(&view);
}

/* ---- the two random choices ---- */

/* splitmix64: well-spread seeds from a counter */
static uint64_t seed(uint64_t i)
{
    uint64_t z = i * 0x9e3779b97f4a7c15ULL + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

#define TRIALS 10000

/* How often each node comes first over TRIALS random seeds. */
static void first_choices(const node_t *nodes, size_t n, unsigned *chosen)
{
    agpu_view_t *view = build_view(nodes, n);
    agpu_route_candidate_t out[MAXN];
    agpu_route_plan_t plan;
    memset(chosen, 0, n * sizeof *chosen);
    for (uint64_t i = 0; i < TRIALS; i++) {
        agpu_route_input_t in = {.model_key = M, .random = seed(i)};
        agpu_route_plan(view, &in, out, &plan);
        assert_int_equal(plan.verdict, AGPU_ROUTE_GO);
        chosen[out[0].node]++;
    }
    agpu_view_unref(&view);
}

static void assert_between(unsigned got, unsigned lo, unsigned hi)
{
    if (got < lo || got > hi)
        fail_msg("%u is not within [%u, %u]", got, lo, hi);
}

static void test_two_equal_nodes_share_fairly(void **unused)
{
    const node_t nodes[] = {{WARM("a", 1, 0)}, {WARM("b", 1, 0)}};
    unsigned chosen[2];
    first_choices(nodes, 2, chosen);
    assert_between(chosen[0], 4500, 5500); /* a tie goes to the first drawn: 1/2 each */
}

static void test_self_wins_ties(void **unused)
{
    unsigned chosen[2];
    const node_t tie[] = {{WARM("a", 1, 0)}, {WARM("b", 1, 0), .self = true}};
    first_choices(tie, 2, chosen);
    assert_int_equal(chosen[1], 10000); /* whatever the draws */

    /* self a little worse: no privilege, it goes only when both draws are it, 1/4 */
    const node_t worse[] = {{WARM("a", 2, 0)}, {WARM("b", 2, 1), .self = true}};
    first_choices(worse, 2, chosen);
    assert_between(chosen[1], 2000, 3000);
}

static void test_fast_node_most_but_not_all(void **unused)
{
    unsigned chosen[2];
    /* equal load: the slow one only when drawn twice, (1/9)^2 = 1.2% */
    const node_t idle[] = {{WARM("a", 1, 0), .tps = 10}, {WARM("b", 1, 0), .tps = 80}};
    first_choices(idle, 2, chosen);
    assert_between(chosen[0], 30, 300);

    /* equal scores: the first drawn, the fast one 8 times in 9 */
    const node_t even[] = {{WARM("a", 8, 0), .tps = 10}, {WARM("b", 8, 7), .tps = 80}};
    first_choices(even, 2, chosen);
    assert_between(chosen[1], 8500, 9300);

    /* the fast one (7x) a little worse, 8/560 to 1/80: the slow one whenever drawn,
     * 1 - (7/8)^2 = 23% */
    const node_t worse[] = {{WARM("a", 8, 0), .tps = 10}, {WARM("b", 8, 7), .tps = 70}};
    first_choices(worse, 2, chosen);
    assert_between(chosen[0], 1900, 2800);
}

static void test_draws_stay_in_the_best_tier_and_keep_the_rest_in_order(void **unused)
{
    const node_t nodes[] = {
        {WARM("a", 4, 3)}, {WARM("b", 4, 0)}, {WARM("c", 4, 1)},
        {COLD("d", 1)},    {WARM("e", 1, 1)}, {WARM("f", 1, 0), .state = AGPU_PEER_DEAD},
    };
    agpu_view_t *view = build_view(nodes, 6);
    agpu_route_candidate_t sorted[6], out[6];
    agpu_route_plan_t plan;
    agpu_route_plan(view, &(agpu_route_input_t){.model_key = M}, sorted, &plan);
    const char *want[] = {"b", "c", "a", "d", "e", "f"};
    for (size_t i = 0; i < 6; i++)
        assert_string_equal(id_at(view, sorted, i), want[i]);

    unsigned chosen[6] = {0};
    for (uint64_t t = 0; t < TRIALS; t++) {
        agpu_route_plan(view, &(agpu_route_input_t){.model_key = M, .random = seed(t)}, out, &plan);
        assert_int_equal(plan.n_usable, 5);
        chosen[out[0].node]++;
        for (size_t i = 1, j = 0; i < 6; i++, j++) { /* the others, in sorted order */
            if (sorted[j].node == out[0].node)
                j++;
            assert_int_equal(out[i].node, sorted[j].node);
        }
    }
    assert_true(chosen[0] > 0 && chosen[1] > chosen[2] && chosen[2] > chosen[0]);
    assert_int_equal(chosen[3] + chosen[4] + chosen[5], 0);
    agpu_view_unref(&view);
}

static void test_no_draw_unless_go(void **unused)
{
    const node_t nodes[] = {{WARM("a", 1, 1)}, {WARM("b", 1, 1)}, {COLD("c", 1)}};
    agpu_view_t *view = build_view(nodes, 3);
    for (int kind = AGPU_ROUTE_SLOT; kind <= AGPU_ROUTE_HOLDER; kind++) {
        agpu_route_candidate_t first[3], out[3];
        agpu_route_plan_t plan;
        agpu_route_input_t in = {.model_key = M, .kind = (agpu_route_kind_t)kind};
        agpu_route_plan(view, &in, first, &plan);
        assert_int_equal(plan.verdict, kind == AGPU_ROUTE_SLOT ? AGPU_ROUTE_WAIT : AGPU_ROUTE_GO);
        for (uint64_t t = 0; t < 200; t++) {
            in.random = seed(t);
            agpu_route_plan(view, &in, out, &plan);
            for (size_t i = 0; i < 3; i++)
                assert_int_equal(out[i].node, first[i].node);
        }
    }
    agpu_view_unref(&view);
}

/* ---- JSON ---- */

static json_t *route_json(const agpu_view_t *view, const char *model, agpu_route_candidate_t *out)
{
    char key[AGPU_NAME_KEY_MAX];
    key_of(model, key, sizeof key);
    agpu_route_plan_t plan;
    agpu_route_plan(view, &(agpu_route_input_t){.model_key = key}, out, &plan);
    char *text = agpu_json_route(view, model, key, out, &plan);
    assert_non_null(text);
    json_error_t error;
    json_t *root = json_loads(text, 0, &error);
    free(text);
    assert_non_null(root);
    return root;
}

static const char *str_field(const json_t *object, const char *name)
{
    const char *value = json_string_value(json_object_get(object, name));
    assert_non_null(value);
    return value;
}

static void test_json(void **unused)
{
    const node_t nodes[] = {
        {WARM("a", 1, 0), .state = AGPU_PEER_DEAD},
        {COLD("b", 1)},
        {WARM("c", 2, 1), .self = true, .tps = 30},
    };
    agpu_view_t *view = build_view(nodes, 3);
    agpu_route_candidate_t out[3];
    json_t *root = route_json(view, "LLaMA3", out);
    assert_string_equal(str_field(root, "model"), "LLaMA3");
    assert_string_equal(str_field(root, "key"), M);
    assert_string_equal(str_field(root, "verdict"), "go");
    assert_string_equal(str_field(root, "choice"), "node-c");
    json_t *list = json_object_get(root, "candidates");
    assert_int_equal(json_array_size(list), 3);

    json_t *c = json_array_get(list, 0);
    assert_string_equal(str_field(c, "id"), "c");
    assert_string_equal(str_field(c, "name"), "node-c");
    assert_true(json_is_true(json_object_get(c, "self")));
    assert_string_equal(str_field(c, "state"), "alive");
    assert_string_equal(str_field(c, "http"), "http://c:11435");
    assert_string_equal(str_field(c, "tier"), "warm-free");
    assert_true(json_is_true(json_object_get(c, "usable")));
    assert_true(json_is_true(json_object_get(c, "loaded")));
    assert_int_equal(json_integer_value(json_object_get(c, "load")), 1);
    assert_int_equal(json_integer_value(json_object_get(c, "capacity")), 2);
    assert_true(json_number_value(json_object_get(c, "speed")) == 30.0);
    assert_true(json_is_true(json_object_get(c, "measured")));
    assert_true(json_number_value(json_object_get(c, "score")) == 2.0 / 60.0);
    assert_string_equal(str_field(c, "why"), "loaded, free slot");

    json_t *b = json_array_get(list, 1);
    assert_string_equal(str_field(b, "id"), "b");
    assert_string_equal(str_field(b, "tier"), "cold-free");
    assert_true(json_is_true(json_object_get(b, "usable")));
    assert_true(json_is_false(json_object_get(b, "loaded")));
    assert_true(json_is_false(json_object_get(b, "self")));
    assert_true(json_is_false(json_object_get(b, "measured")));
    assert_true(json_number_value(json_object_get(b, "speed")) == 30.0);

    json_t *a = json_array_get(list, 2);
    assert_string_equal(str_field(a, "id"), "a");
    assert_string_equal(str_field(a, "state"), "dead");
    assert_string_equal(str_field(a, "tier"), "out");
    assert_true(json_is_false(json_object_get(a, "usable")));
    assert_true(json_is_true(json_object_get(a, "loaded"))); /* out, but loaded there */
    assert_string_equal(str_field(a, "why"), "dead");
    json_decref(root);
    agpu_view_unref(&view);
}

static void test_json_has_no_choice_unless_go(void **unused)
{
    const node_t busy[] = {{WARM("a", 1, 1)}};
    agpu_view_t *view = build_view(busy, 1);
    agpu_route_candidate_t out[1];
    json_t *root = route_json(view, "llama3", out);
    assert_string_equal(str_field(root, "verdict"), "wait");
    assert_true(json_is_null(json_object_get(root, "choice")));
    assert_int_equal(json_array_size(json_object_get(root, "candidates")), 1);
    json_decref(root);

    root = route_json(view, "mistral", out);
    assert_string_equal(str_field(root, "verdict"), "none");
    assert_string_equal(str_field(root, "key"), "mistral:latest");
    assert_true(json_is_null(json_object_get(root, "choice")));
    json_t *a = json_array_get(json_object_get(root, "candidates"), 0);
    assert_string_equal(str_field(a, "why"), "model not installed");
    assert_true(json_is_false(json_object_get(a, "loaded")));
    json_decref(root);
    agpu_view_unref(&view);

    view = agpu_view_new("me");
    root = route_json(view, "llama3", NULL);
    assert_string_equal(str_field(root, "verdict"), "none");
    assert_int_equal(json_array_size(json_object_get(root, "candidates")), 0);
    json_decref(root);
    agpu_view_unref(&view);
}

static void test_names(void **unused)
{
    assert_string_equal(agpu_route_tier_name(AGPU_TIER_WARM_FREE), "warm-free");
    assert_string_equal(agpu_route_tier_name(AGPU_TIER_COLD_FREE), "cold-free");
    assert_string_equal(agpu_route_tier_name(AGPU_TIER_WARM_BUSY), "warm-busy");
    assert_string_equal(agpu_route_tier_name(AGPU_TIER_COLD_BUSY), "cold-busy");
    assert_string_equal(agpu_route_tier_name(AGPU_TIER_OUT), "out");
    assert_string_equal(agpu_route_tier_name((agpu_route_tier_t)99), "unknown");
    assert_string_equal(agpu_route_verdict_name(AGPU_ROUTE_GO), "go");
    assert_string_equal(agpu_route_verdict_name(AGPU_ROUTE_WAIT), "wait");
    assert_string_equal(agpu_route_verdict_name(AGPU_ROUTE_NONE), "none");
    assert_string_equal(agpu_route_verdict_name((agpu_route_verdict_t)99), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tables),
        cmocka_unit_test(test_candidate_fields),
        cmocka_unit_test(test_extreme_speeds_stay_finite),
        cmocka_unit_test(test_two_equal_nodes_share_fairly),
        cmocka_unit_test(test_self_wins_ties),
        cmocka_unit_test(test_fast_node_most_but_not_all),
        cmocka_unit_test(test_draws_stay_in_the_best_tier_and_keep_the_rest_in_order),
        cmocka_unit_test(test_no_draw_unless_go),
        cmocka_unit_test(test_json),
        cmocka_unit_test(test_json_has_no_choice_unless_go),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
