/* Unit tests of agpu_ledger: what this node sent to each (node, model), and saw finish there,
 * that the node's last gossiped state (received at its last_seen_ms) cannot count yet, as
 * scenario tables, then the event ring, the entry limit and a threaded smoke test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>

#include "agpu_ledger.h"
#include "agpu_msg.h"
#include "agpu_view.h"

#define TRANSIT AGPU_LEDGER_TRANSIT_MS

/* A view holding nodes ids[i], each from a STATE received at seen_ms[i]. Caller unrefs it. */
static agpu_view_t *view_of(size_t n, const char *const *ids, const int64_t *seen_ms)
{
    agpu_view_t *view = agpu_view_new("self");
    assert_non_null(view);
    for (size_t i = 0; i < n; i++) {
        agpu_msg_state_t st = {.seq = 1, .slots = 1, .ollama_up = true};
        assert_int_equal(agpu_view_add(view, ids[i], "tcp://10.0.0.1:7447", false,
                                       AGPU_PEER_ALIVE, seen_ms[i], &st),
                         0);
        assert_int_equal(agpu_view_peer(view, i)->last_seen_ms, seen_ms[i]);
    }
    return view;
}

/* What the ledger says is pending at node for model, in a view holding its state received
 * at state_ms. */
static int32_t pending_at(agpu_ledger_t *ledger, const char *node, int64_t state_ms,
                          const char *model)
{
    agpu_view_t *view = view_of(1, &node, &state_ms);
    int32_t pending = INT32_MIN;
    agpu_ledger_pending(ledger, view, model, &pending);
    agpu_view_unref(&view);
    return pending;
}

/* ---- Scenarios: a fresh ledger, then steps. ---- */

enum { END, SENT, DONE, PEND };

typedef struct {
    int op;
    const char *node;
    int64_t ms; /* SENT, DONE: when it happened; PEND: when the view's state was received */
    const char *model;
    int32_t want; /* PEND */
} step_t;

#define NSTEPS 14

typedef struct {
    const char *name;
    step_t steps[NSTEPS]; /* ended by the first END, or full */
} scenario_t;

// clang-format off
#define S(node, ms, model) {SENT, node, ms, model, 0}
#define D(node, ms, model) {DONE, node, ms, model, 0}
#define P(node, ms, model, want) {PEND, node, ms, model, want}

static const scenario_t scenarios[] = {
    {"nothing sent: 0 whatever the state time",
     {P("a", 0, "m", 0), P("a", 10000, "m", 0), P("a", 10000000, "m", 0)}},
    {"unknown pairs stay 0 next to known ones",
     {S("a", 10000, "m"), P("b", 10000, "m", 0), P("a", 10000, "other", 0), P("a", 10000, "m", 1),
      P("b", 0, "m", 0), P("a", 0, "other", 0)}},
    {"sent counts for that (node, model) only",
     {S("a", 10000, "m1"), S("a", 10000, "m1"), S("a", 10000, "m2"), S("b", 10000, "m1"),
      P("a", 10000, "m1", 2), P("a", 10000, "m2", 1), P("b", 10000, "m1", 1), P("b", 10000, "m2", 0),
      P("c", 10000, "m1", 0)}},
    {"a state older than the sent does not count it",
     {S("a", 10000, "m"), P("a", 0, "m", 1), P("a", 9990, "m", 1), P("a", 10000, "m", 1)}},
    {"a state received after sent + TRANSIT counts it: the ledger no longer does",
     {S("a", 10000, "m"), P("a", 10000 + TRANSIT + 1, "m", 0), P("a", 20000, "m", 0),
      P("a", 10000000, "m", 0), P("a", 10000, "m", 1)}},
    {"a sent within TRANSIT before the state is counted here too (twice, on purpose)",
     {S("a", 10000, "m"), P("a", 10010, "m", 1), P("a", 10000 + TRANSIT - 1, "m", 1),
      P("a", 10000 + TRANSIT, "m", 1), P("a", 10000 + TRANSIT + 1, "m", 0)}},
    {"a done before the state is counted by it",
     {S("a", 10000, "m"), D("a", 15000, "m"), P("a", 15010, "m", 0), P("a", 50000, "m", 0)}},
    {"a done after the state frees one slot: -1",
     {S("a", 10000, "m"), S("a", 10000, "m"), P("a", 12000, "m", 0), D("a", 13000, "m"),
      P("a", 12000, "m", -1), P("a", 13000, "m", -1), P("a", 13010, "m", 0), D("a", 14000, "m"),
      P("a", 12000, "m", -2), P("a", 13500, "m", -1)}},
    {"sent and done both after the state: net 0",
     {S("a", 10000, "m"), D("a", 10500, "m"), P("a", 9000, "m", 0), P("a", 10000, "m", 0),
      S("a", 11000, "m"), S("a", 11000, "m"), D("a", 12000, "m"), P("a", 9000, "m", 1),
      P("a", 11000, "m", 1), P("a", 11500, "m", -1), P("a", 12010, "m", 0)}},
    {"a sent within TRANSIT before the state, done after it: net 0",
     {S("a", 10000, "m"), P("a", 10000 + TRANSIT, "m", 1), D("a", 10000 + TRANSIT + 5, "m"),
      P("a", 10000 + TRANSIT, "m", 0), P("a", 10000 + TRANSIT + 6, "m", 0)}},
    {"a done counts for its own pair only",
     {S("a", 10000, "m1"), D("a", 10000, "m2"), D("b", 10000, "m1"), P("a", 10000, "m1", 1),
      P("a", 10000, "m2", -1), P("b", 10000, "m1", -1), P("b", 10000, "m2", 0),
      P("c", 10000, "m1", 0)}},
    {"per model: a newer state of one model's pair leaves the other's alone",
     {S("a", 10000, "m1"), S("a", 20000, "m2"), P("a", 15000, "m1", 0), P("a", 15000, "m2", 1),
      P("a", 25000, "m2", 0), P("a", 9000, "m1", 1)}},
    {"per node: a newer state of one node leaves the other's alone",
     {S("a", 10000, "m"), S("b", 20000, "m"), P("a", 15000, "m", 0), P("b", 15000, "m", 1),
      P("b", 25000, "m", 0), P("a", 9000, "m", 1)}},
    {"old events stay counted by every later state",
     {S("a", 0, "m"), S("a", 1000, "m"), D("a", 2000, "m"), S("a", 50000, "m"),
      P("a", 50000, "m", 1), P("a", 200000, "m", 0), S("a", 200000, "m"), P("a", 200050, "m", 1)}},
    {"time 0 is a state time like any other",
     {S("a", 0, "m"), S("a", 0, "m"), P("a", 0, "m", 2), D("a", 0, "m"), P("a", 0, "m", 1),
      P("a", TRANSIT + 1, "m", 0)}},
    {"sents recorded a few ms out of order still count",
     {S("a", 10050, "m"), S("a", 10030, "m"), S("a", 10040, "m"), P("a", 10030 + TRANSIT, "m", 3),
      P("a", 10040 + TRANSIT, "m", 2), P("a", 10050 + TRANSIT, "m", 1),
      P("a", 10060 + TRANSIT, "m", 0)}},
    {"dones recorded a few ms out of order still count",
     {S("a", 10000, "m"), S("a", 10000, "m"), D("a", 10300, "m"), D("a", 10270, "m"),
      P("a", 10270, "m", -2), P("a", 10280, "m", -1), P("a", 10300, "m", -1), P("a", 10310, "m", 0)}},
    {"a late-recorded event just before the state behind an older one still counts",
     {S("a", 0, "m"), S("a", 20000, "m"), S("a", 19995, "m"), D("a", 20000 + TRANSIT + 10, "m"),
      D("a", 20000 + TRANSIT + 6, "m"), P("a", 19995 + TRANSIT, "m", 0),
      P("a", 19995 + TRANSIT + 1, "m", -1), P("a", 20000 + TRANSIT + 11, "m", 0)}},
};

#undef S
#undef D
#undef P
// clang-format on

static void test_scenarios(void **unused)
{
    for (size_t s = 0; s < sizeof scenarios / sizeof scenarios[0]; s++) {
        const scenario_t *sc = &scenarios[s];
        agpu_ledger_t *ledger = agpu_ledger_new();
        assert_non_null(ledger);
        for (size_t i = 0; i < NSTEPS && sc->steps[i].op != END; i++) {
            const step_t *st = &sc->steps[i];
            switch (st->op) {
            case SENT:
                agpu_ledger_sent(ledger, st->node, st->model, st->ms);
                break;
            case DONE:
                agpu_ledger_done(ledger, st->node, st->model, st->ms);
                break;
            case PEND: {
                int32_t got = pending_at(ledger, st->node, st->ms, st->model);
                if (got != st->want)
                    fail_msg("%s, step %zu: pending %d, want %d", sc->name, i, (int)got,
                             (int)st->want);
                break;
            }
            }
        }
        agpu_ledger_destroy(&ledger);
        assert_null(ledger);
    }
}

/* pending[i] answers for the view's node i, known or not, each at its own state time. */
static void test_pending_by_view_index(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    agpu_ledger_sent(ledger, "a", "m", 1000);
    agpu_ledger_sent(ledger, "a", "m", 1000);
    agpu_ledger_sent(ledger, "b", "m", 2000);
    agpu_ledger_sent(ledger, "c", "m", 1000);
    agpu_ledger_sent(ledger, "b", "other", 2000);
    agpu_ledger_sent(ledger, "d", "m", 1000);
    agpu_ledger_done(ledger, "d", "m", 3000);

    static const char *const ids[] = {"b", "x", "a", "c", "d"};
    /* c has told a state since its request; d's request finished after its state */
    static const int64_t seen[] = {1500, 0, 1000 + TRANSIT, 5000, 2000};
    agpu_view_t *view = view_of(5, ids, seen);
    int32_t pending[5] = {-99, -99, -99, -99, -99};
    agpu_ledger_pending(ledger, view, "m", pending);
    assert_int_equal(pending[0], 1);
    assert_int_equal(pending[1], 0);
    assert_int_equal(pending[2], 2);
    assert_int_equal(pending[3], 0);
    assert_int_equal(pending[4], -1);

    agpu_ledger_pending(ledger, view, "other", pending);
    assert_int_equal(pending[0], 1);
    for (size_t i = 1; i < 5; i++)
        assert_int_equal(pending[i], 0);

    /* A node added without any STATE: its last_seen_ms is the state time all the same. */
    agpu_view_t *bare = agpu_view_new("self");
    assert_non_null(bare);
    assert_int_equal(
        agpu_view_add(bare, "e", "tcp://10.0.0.4:7447", false, AGPU_PEER_ALIVE, 0, NULL), 0);
    agpu_ledger_sent(ledger, "e", "m", 10);
    int32_t one = -99;
    agpu_ledger_pending(ledger, bare, "m", &one);
    assert_int_equal(one, 1);

    /* An empty view writes nothing. */
    agpu_view_t *empty = agpu_view_new("self");
    assert_non_null(empty);
    int32_t untouched = -99;
    agpu_ledger_pending(ledger, empty, "m", &untouched);
    assert_int_equal(untouched, -99);

    agpu_view_unref(&empty);
    agpu_view_unref(&bare);
    agpu_view_unref(&view);
    agpu_ledger_destroy(&ledger);
}

static void test_new_and_destroy(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    agpu_ledger_sent(ledger, "a", "m", 1000);
    agpu_ledger_sent(ledger, "b", "m", 1000); /* freed with the ledger, outstanding or not */
    agpu_ledger_done(ledger, "b", "m", 1001);
    agpu_ledger_destroy(&ledger);
    assert_null(ledger);
    agpu_ledger_destroy(&ledger); /* twice is harmless */
}

/* ---- The event ring. ---- */

#define EVENTS AGPU_LEDGER_EVENTS

/* More sents than the ring holds: the oldest go (a state older than them all sees only the
 * newest EVENTS), the newest still count as usual. */
static void test_ring_overflow(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    const int64_t n = EVENTS + 72, first = 1000, last = first + n - 1;
    for (int64_t i = 0; i < n; i++)
        agpu_ledger_sent(ledger, "a", "m", first + i);
    assert_int_equal(pending_at(ledger, "a", 0, "m"), EVENTS);
    assert_int_equal(pending_at(ledger, "a", first, "m"), EVENTS);
    assert_int_equal(pending_at(ledger, "a", last, "m"), TRANSIT + 1);
    assert_int_equal(pending_at(ledger, "a", last + TRANSIT, "m"), 1);
    assert_int_equal(pending_at(ledger, "a", last + TRANSIT + 1, "m"), 0);

    /* Many times round the ring with sent/done pairs, then two sents: the ring holds whole
     * pairs and those two. */
    for (int64_t i = 0; i < 3 * EVENTS; i++) {
        agpu_ledger_sent(ledger, "a", "m", 2000 + 2 * i);
        agpu_ledger_done(ledger, "a", "m", 2000 + 2 * i + 1);
    }
    const int64_t late = 2000 + 6 * EVENTS;
    assert_int_equal(pending_at(ledger, "a", 0, "m"), 0);
    agpu_ledger_sent(ledger, "a", "m", late);
    agpu_ledger_sent(ledger, "a", "m", late);
    assert_int_equal(pending_at(ledger, "a", 0, "m"), 2);
    assert_int_equal(pending_at(ledger, "a", late + TRANSIT, "m"), 2);
    assert_int_equal(pending_at(ledger, "a", late + TRANSIT + 1, "m"), 0);
    agpu_ledger_done(ledger, "a", "m", late + 100);
    assert_int_equal(pending_at(ledger, "a", late + TRANSIT + 1, "m"), -1);
    assert_int_equal(pending_at(ledger, "a", late + TRANSIT, "m"), 1);

    /* Another pair is untouched by all this. */
    agpu_ledger_sent(ledger, "b", "m", late);
    assert_int_equal(pending_at(ledger, "b", 0, "m"), 1);
    assert_int_equal(pending_at(ledger, "a", 0, "other"), 0);
    agpu_ledger_destroy(&ledger);
}

/* ---- The entry limit. ---- */

#define MAX AGPU_LEDGER_MAX_ENTRIES
#define FORGET_MS 10000 /* a pair whose newest event is older makes room */

static void node_name(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "node-%06zu", i);
}

/* A view of nodes node_name(first) .. node_name(first + n - 1), all with a state received at
 * state_ms. */
static agpu_view_t *view_of_range(size_t first, size_t n, int64_t state_ms, char (*names)[16])
{
    const char **ids = malloc(n * sizeof *ids);
    int64_t *seen = malloc(n * sizeof *seen);
    assert_non_null(ids);
    assert_non_null(seen);
    for (size_t i = 0; i < n; i++) {
        node_name(names[i], sizeof names[i], first + i);
        ids[i] = names[i];
        seen[i] = state_ms;
    }
    agpu_view_t *view = view_of(n, ids, seen);
    free(ids);
    free(seen);
    return view;
}

/* Expects pending == want for every node of first .. first + n - 1, model m, in a view of
 * states received at state_ms. */
static void expect_range(agpu_ledger_t *ledger, size_t first, size_t n, int64_t state_ms,
                         int32_t want)
{
    char(*names)[16] = malloc(n * sizeof *names);
    int32_t *pending = malloc(n * sizeof *pending);
    assert_non_null(names);
    assert_non_null(pending);
    agpu_view_t *view = view_of_range(first, n, state_ms, names);
    agpu_ledger_pending(ledger, view, "m", pending);
    for (size_t i = 0; i < n; i++)
        if (pending[i] != want)
            fail_msg("%s at %lld: pending %d, want %d", names[i], (long long)state_ms,
                     (int)pending[i], (int)want);
    agpu_view_unref(&view);
    free(pending);
    free(names);
}

/* One request sent to each of nodes first .. first + n - 1 (every step-th), model m, at ms. */
static void sent_range(agpu_ledger_t *ledger, size_t first, size_t n, size_t step, int64_t ms)
{
    char name[16];
    for (size_t i = first; i < first + n; i += step) {
        node_name(name, sizeof name, i);
        agpu_ledger_sent(ledger, name, "m", ms);
    }
}

/* Far more pairs than the limit, one table after another, each table's events over 10 s old
 * when the next comes: the old entries make room, every new request is counted, and the old
 * pairs are forgotten (a state older than their events no longer sees them). */
static void test_old_entries_are_reused(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    for (size_t round = 0; round < 3; round++) {
        int64_t t = 1000 + (int64_t)round * 2 * FORGET_MS;
        sent_range(ledger, round * MAX, MAX, 1, t);
        expect_range(ledger, round * MAX, MAX, 0, 1); /* every one counted */
        expect_range(ledger, round * MAX, MAX, t + TRANSIT + 1, 0);
        if (round > 0)
            expect_range(ledger, (round - 1) * MAX, MAX, 0, 0); /* forgotten */
    }
    agpu_ledger_destroy(&ledger);
}

/* Half the table recent, half old: new pairs take the old entries, never a recent one; once
 * every entry is recent, a new pair goes uncounted and nothing else is lost. */
static void test_recent_entries_are_kept(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    /* Interleaved, so recent and old entries share buckets: the odd nodes old (at 1000), the
     * even ones recent (at 15000), but node 0 a little older than the other even ones. */
    sent_range(ledger, 1, MAX - 1, 2, 1000);
    sent_range(ledger, 0, 1, 1, 14000);
    sent_range(ledger, 2, MAX - 2, 2, 15000);
    expect_range(ledger, 0, MAX, 0, 1);

    /* At 20000 (the odd ones 19 s old, the even ones at most 6 s): exactly as many new pairs
     * as old entries. */
    sent_range(ledger, MAX, MAX / 2, 1, 20000);
    expect_range(ledger, MAX, MAX / 2, 0, 1);
    for (size_t i = 0; i < MAX; i += 2)
        expect_range(ledger, i, 1, 0, 1); /* the recent ones, all kept */
    for (size_t i = 1; i < MAX; i += 2)
        expect_range(ledger, i, 1, 0, 0); /* the old ones, reused */

    /* Now every entry is recent: a new pair goes uncounted, nothing else is lost. Node 0 is
     * just under 10 s old. */
    char name[16];
    node_name(name, sizeof name, 2 * MAX);
    agpu_ledger_sent(ledger, name, "m", 14000 + FORGET_MS - 1);
    expect_range(ledger, 2 * MAX, 1, 0, 0);
    agpu_ledger_done(ledger, name, "m", 14000 + FORGET_MS - 1); /* its done finds nothing */
    expect_range(ledger, 2 * MAX, 1, 0, 0);
    expect_range(ledger, 0, 1, 0, 1);
    for (size_t i = 2; i < MAX; i += 2)
        expect_range(ledger, i, 1, 0, 1);
    expect_range(ledger, MAX, MAX / 2, 0, 1);

    /* Node 0 just over 10 s old, the others not yet: the next new pair takes node 0's entry. */
    node_name(name, sizeof name, 2 * MAX + 1);
    agpu_ledger_sent(ledger, name, "m", 14000 + FORGET_MS + 1);
    expect_range(ledger, 2 * MAX + 1, 1, 0, 1);
    expect_range(ledger, 0, 1, 0, 0);
    for (size_t i = 2; i < MAX; i += 2)
        expect_range(ledger, i, 1, 0, 1);
    expect_range(ledger, MAX, MAX / 2, 0, 1);
    expect_range(ledger, 2 * MAX, 1, 0, 0);

    /* A known pair keeps recording however full the table. */
    node_name(name, sizeof name, 2);
    agpu_ledger_sent(ledger, name, "m", 24002);
    agpu_ledger_sent(ledger, name, "m", 24002);
    agpu_ledger_done(ledger, name, "m", 24003);
    expect_range(ledger, 2, 1, 0, 2);
    expect_range(ledger, 2, 1, 24003, 1);
    agpu_ledger_destroy(&ledger);
}

/* ---- Threads. ---- */

#define THREADS 4
#define SMOKE_NODES 256
#define SMOKE_MODELS 4
#define SMOKE_PAIRS (SMOKE_NODES * SMOKE_MODELS)
#define ROUNDS (10 * SMOKE_PAIRS)

/* Every pair keeps all its events, so a state older than them all counts each one. */
_Static_assert(THREADS * 2 * (ROUNDS / SMOKE_PAIRS) <= AGPU_LEDGER_EVENTS,
               "the smoke test must fit a pair's events in its ring");
_Static_assert(SMOKE_PAIRS <= AGPU_LEDGER_MAX_ENTRIES, "the smoke test must fit the table");

static char smoke_nodes[SMOKE_NODES][16];
static const char *const smoke_models[SMOKE_MODELS] = {"m0", "m1", "m2", "m3"};

#define SMOKE_START_MS 1000
static atomic_llong smoke_clock; /* every event a ms later than the one before */
static atomic_bool smoke_stop;
static atomic_int smoke_out_of_range;

static void *smoke_worker(void *arg)
{
    agpu_ledger_t *ledger = arg;
    for (unsigned r = 0; r < ROUNDS; r++) {
        unsigned pair = r % SMOKE_PAIRS; /* every thread on the same pair at once, if it can */
        const char *node = smoke_nodes[pair / SMOKE_MODELS];
        const char *model = smoke_models[pair % SMOKE_MODELS];
        agpu_ledger_sent(ledger, node, model, atomic_fetch_add(&smoke_clock, 1));
        agpu_ledger_done(ledger, node, model, atomic_fetch_add(&smoke_clock, 1));
    }
    return NULL;
}

/* A view of every smoke node, each with a state received at state_ms. */
static agpu_view_t *smoke_view(int64_t state_ms)
{
    agpu_view_t *view = agpu_view_new("self");
    for (size_t i = 0; view && i < SMOKE_NODES; i++) {
        agpu_msg_state_t st = {.seq = 1, .slots = 1};
        if (agpu_view_add(view, smoke_nodes[i], "tcp://10.0.0.1:7447", false, AGPU_PEER_ALIVE,
                          state_ms, &st) != 0)
            agpu_view_unref(&view);
    }
    return view;
}

/* Reads while the workers write, with states older than every event: each count stays within
 * what THREADS senders can have outstanding. */
static void *smoke_reader(void *arg)
{
    agpu_ledger_t *ledger = arg;
    agpu_view_t *view = smoke_view(0);
    if (!view) {
        atomic_fetch_add(&smoke_out_of_range, 1000);
        return NULL;
    }
    int32_t pending[SMOKE_NODES];
    while (!atomic_load(&smoke_stop))
        for (size_t m = 0; m < SMOKE_MODELS; m++) {
            agpu_ledger_pending(ledger, view, smoke_models[m], pending);
            for (size_t i = 0; i < SMOKE_NODES; i++)
                if (pending[i] < 0 || pending[i] > THREADS)
                    atomic_fetch_add(&smoke_out_of_range, 1);
        }
    agpu_view_unref(&view);
    return NULL;
}

static void test_threads_smoke(void **unused)
{
    for (size_t i = 0; i < SMOKE_NODES; i++)
        node_name(smoke_nodes[i], sizeof smoke_nodes[i], i);
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    atomic_store(&smoke_clock, SMOKE_START_MS);
    atomic_store(&smoke_stop, false);
    atomic_store(&smoke_out_of_range, 0);
    pthread_t reader, threads[THREADS];
    assert_int_equal(pthread_create(&reader, NULL, smoke_reader, ledger), 0);
    for (unsigned t = 0; t < THREADS; t++)
        assert_int_equal(pthread_create(&threads[t], NULL, smoke_worker, ledger), 0);
    for (unsigned t = 0; t < THREADS; t++)
        assert_int_equal(pthread_join(threads[t], NULL), 0);
    atomic_store(&smoke_stop, true);
    assert_int_equal(pthread_join(reader, NULL), 0);
    assert_int_equal(atomic_load(&smoke_out_of_range), 0);
    assert_int_equal(atomic_load(&smoke_clock), SMOKE_START_MS + 2LL * THREADS * ROUNDS);

    /* Every request finished: a state older than them all, or newer, has nothing pending. */
    const int64_t states[] = {0, SMOKE_START_MS - 1, atomic_load(&smoke_clock) + TRANSIT};
    int32_t pending[SMOKE_NODES];
    for (size_t s = 0; s < sizeof states / sizeof states[0]; s++) {
        agpu_view_t *view = smoke_view(states[s]);
        assert_non_null(view);
        for (size_t m = 0; m < SMOKE_MODELS; m++) {
            agpu_ledger_pending(ledger, view, smoke_models[m], pending);
            for (size_t i = 0; i < SMOKE_NODES; i++)
                if (pending[i] != 0)
                    fail_msg("%s %s at %lld: pending %d, want 0", smoke_nodes[i],
                             smoke_models[m], (long long)states[s], (int)pending[i]);
        }
        agpu_view_unref(&view);
    }
    agpu_ledger_destroy(&ledger);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_pending_by_view_index),
        cmocka_unit_test(test_new_and_destroy),
        cmocka_unit_test(test_ring_overflow),
        cmocka_unit_test(test_old_entries_are_reused),
        cmocka_unit_test(test_recent_entries_are_kept),
        cmocka_unit_test(test_threads_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
