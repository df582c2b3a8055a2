/* Unit tests of agpu_ledger: what this node sent to each (node, model) since that node's last
 * gossiped state, as scenario tables, then the entry limit and a threaded smoke test. */
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

/* A view holding nodes ids[i], each from a STATE numbered seqs[i]. Caller unrefs it. */
static agpu_view_t *view_of(size_t n, const char *const *ids, const uint64_t *seqs)
{
    agpu_view_t *view = agpu_view_new("self");
    assert_non_null(view);
    for (size_t i = 0; i < n; i++) {
        agpu_msg_state_t st = {.seq = seqs[i], .slots = 1, .ollama_up = true};
        assert_int_equal(
            agpu_view_add(view, ids[i], "tcp://10.0.0.1:7447", false, AGPU_PEER_ALIVE, 0, &st), 0);
        assert_int_equal(agpu_view_peer(view, i)->seq, seqs[i]);
    }
    return view;
}

/* What the ledger says is pending at node for model, in a view holding it at seq. */
static int32_t pending_at(agpu_ledger_t *ledger, const char *node, uint64_t seq, const char *model)
{
    agpu_view_t *view = view_of(1, &node, &seq);
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
    uint64_t seq; /* SENT, DONE: seq of the view it happened on; PEND: seq the view holds */
    const char *model;
    int32_t want; /* PEND */
} step_t;

#define NSTEPS 12

typedef struct {
    const char *name;
    step_t steps[NSTEPS]; /* ended by the first END, or full */
} scenario_t;

// clang-format off
#define S(node, seq, model) {SENT, node, seq, model, 0}
#define D(node, seq, model) {DONE, node, seq, model, 0}
#define P(node, seq, model, want) {PEND, node, seq, model, want}

static const scenario_t scenarios[] = {
    {"nothing sent: 0 whatever the seq",
     {P("a", 0, "m", 0), P("a", 7, "m", 0), D("a", 7, "m"), P("a", 0, "m", 0)}},
    {"unknown pairs stay 0 next to known ones",
     {S("a", 1, "m"), P("b", 1, "m", 0), P("a", 1, "other", 0), P("a", 1, "m", 1)}},
    {"sent counts for that (node, model) only",
     {S("a", 1, "m1"), S("a", 1, "m1"), S("a", 1, "m2"), S("b", 1, "m1"),
      P("a", 1, "m1", 2), P("a", 1, "m2", 1), P("b", 1, "m1", 1), P("b", 1, "m2", 0),
      P("c", 1, "m1", 0)}},
    {"done frees one slot",
     {S("a", 1, "m"), S("a", 1, "m"), S("a", 1, "m"), D("a", 1, "m"), P("a", 1, "m", 2),
      D("a", 1, "m"), D("a", 1, "m"), P("a", 1, "m", 0)}},
    {"a done for another pair changes nothing",
     {S("a", 1, "m1"), D("a", 1, "m2"), D("b", 1, "m1"), P("a", 1, "m1", 1), P("a", 1, "m2", 0),
      P("b", 1, "m1", 0)}},
    {"a view of the same state keeps the count",
     {S("a", 3, "m"), S("a", 3, "m"), P("a", 3, "m", 2), P("a", 3, "m", 2)}},
    {"a view of a newer state restarts from zero",
     {S("a", 3, "m"), S("a", 3, "m"), P("a", 4, "m", 0), P("a", 4, "m", 0), S("a", 4, "m"),
      P("a", 4, "m", 1)}},
    {"a done after the reset goes negative, as documented",
     {S("a", 3, "m"), P("a", 4, "m", 0), D("a", 4, "m"), P("a", 4, "m", -1), S("a", 4, "m"),
      P("a", 4, "m", 0)}},
    {"a negative count is forgotten at the next newer state",
     {S("a", 3, "m"), P("a", 4, "m", 0), D("a", 4, "m"), P("a", 4, "m", -1), P("a", 5, "m", 0)}},
    {"the reset is per model",
     {S("a", 3, "m1"), S("a", 3, "m2"), P("a", 4, "m1", 0), P("a", 3, "m2", 1),
      P("a", 4, "m2", 0)}},
    {"the reset is per node",
     {S("a", 3, "m"), S("b", 3, "m"), P("a", 4, "m", 0), P("b", 3, "m", 1)}},
    {"a view of an older state does not reset",
     {S("a", 5, "m"), P("a", 4, "m", 1), P("a", 0, "m", 1), P("a", 5, "m", 1)}},
    {"a sent with an older seq than recorded still counts",
     {S("a", 5, "m"), S("a", 3, "m"), P("a", 5, "m", 2), S("a", 4, "m"), P("a", 5, "m", 3),
      P("a", 6, "m", 0)}},
    {"a sent with a newer seq restarts the count itself",
     {S("a", 1, "m"), S("a", 1, "m"), S("a", 2, "m"), P("a", 2, "m", 1), P("a", 1, "m", 1)}},
    {"a done seen on a newer state than its send: that state counts it, the done frees it",
     {S("a", 3, "m"), D("a", 4, "m"), P("a", 4, "m", -1), P("a", 5, "m", 0)}},
    {"seq 0 (no state yet) is a state like any other",
     {S("a", 0, "m"), S("a", 0, "m"), P("a", 0, "m", 2), D("a", 0, "m"), P("a", 0, "m", 1),
      P("a", 1, "m", 0)}},
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
                agpu_ledger_sent(ledger, st->node, st->seq, st->model);
                break;
            case DONE:
                agpu_ledger_done(ledger, st->node, st->seq, st->model);
                break;
            case PEND: {
                int32_t got = pending_at(ledger, st->node, st->seq, st->model);
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

/* pending[i] answers for the view's node i, known or not, each at its own seq. */
static void test_pending_by_view_index(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    agpu_ledger_sent(ledger, "a", 1, "m");
    agpu_ledger_sent(ledger, "a", 1, "m");
    agpu_ledger_sent(ledger, "b", 2, "m");
    agpu_ledger_sent(ledger, "c", 1, "m");
    agpu_ledger_sent(ledger, "b", 2, "other");

    static const char *const ids[] = {"b", "x", "a", "c"};
    static const uint64_t seqs[] = {2, 9, 1, 2}; /* c has told a newer state */
    agpu_view_t *view = view_of(4, ids, seqs);
    int32_t pending[4] = {-99, -99, -99, -99};
    agpu_ledger_pending(ledger, view, "m", pending);
    assert_int_equal(pending[0], 1);
    assert_int_equal(pending[1], 0);
    assert_int_equal(pending[2], 2);
    assert_int_equal(pending[3], 0);

    /* A node added without any STATE is at seq 0. */
    agpu_view_t *bare = agpu_view_new("self");
    assert_non_null(bare);
    assert_int_equal(
        agpu_view_add(bare, "d", "tcp://10.0.0.4:7447", false, AGPU_PEER_ALIVE, 0, NULL), 0);
    agpu_ledger_sent(ledger, "d", 0, "m");
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
    agpu_ledger_sent(ledger, "a", 1, "m");
    agpu_ledger_sent(ledger, "b", 1, "m"); /* freed with the ledger, outstanding or not */
    agpu_ledger_done(ledger, "b", 1, "m");
    agpu_ledger_destroy(&ledger);
    assert_null(ledger);
    agpu_ledger_destroy(&ledger); /* twice is harmless */
}

/* ---- The entry limit. ---- */

#define MAX AGPU_LEDGER_MAX_ENTRIES

static void node_name(char *buf, size_t size, size_t i)
{
    snprintf(buf, size, "node-%06zu", i);
}

/* A view of nodes node_name(first) .. node_name(first + n - 1), all at seq 1. */
static agpu_view_t *view_of_range(size_t first, size_t n, char (*names)[16])
{
    const char **ids = malloc(n * sizeof *ids);
    uint64_t *seqs = malloc(n * sizeof *seqs);
    assert_non_null(ids);
    assert_non_null(seqs);
    for (size_t i = 0; i < n; i++) {
        node_name(names[i], sizeof names[i], first + i);
        ids[i] = names[i];
        seqs[i] = 1;
    }
    agpu_view_t *view = view_of(n, ids, seqs);
    free(ids);
    free(seqs);
    return view;
}

/* Expects pending == want for every node of nodes first .. first + n - 1, model m. */
static void expect_range(agpu_ledger_t *ledger, size_t first, size_t n, int32_t want)
{
    char(*names)[16] = malloc(n * sizeof *names);
    int32_t *pending = malloc(n * sizeof *pending);
    assert_non_null(names);
    assert_non_null(pending);
    agpu_view_t *view = view_of_range(first, n, names);
    agpu_ledger_pending(ledger, view, "m", pending);
    for (size_t i = 0; i < n; i++)
        if (pending[i] != want)
            fail_msg("%s: pending %d, want %d", names[i], (int)pending[i], (int)want);
    agpu_view_unref(&view);
    free(pending);
    free(names);
}

static void sent_range(agpu_ledger_t *ledger, size_t first, size_t n, bool done)
{
    char name[16];
    for (size_t i = first; i < first + n; i++) {
        node_name(name, sizeof name, i);
        agpu_ledger_sent(ledger, name, 1, "m");
        if (done)
            agpu_ledger_done(ledger, name, 1, "m");
    }
}

/* Far more pairs than the limit, each idle once done: idle entries make room, every new
 * request is still counted. */
static void test_idle_entries_are_reused(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    sent_range(ledger, 0, 3 * MAX, true); /* 3 * MAX idle pairs came and went */
    expect_range(ledger, 0, 3 * MAX, 0);
    sent_range(ledger, 3 * MAX, MAX, false); /* a full table of busy ones, all counted */
    expect_range(ledger, 3 * MAX, MAX, 1);
    expect_range(ledger, 0, 3 * MAX, 0);
    agpu_ledger_destroy(&ledger);
}

/* Half busy, half idle: new pairs take the idle entries, never a busy one. */
static void test_busy_entries_are_kept(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
    /* Interleaved, so busy and idle entries share buckets. */
    char name[16];
    for (size_t i = 0; i < MAX; i++) {
        node_name(name, sizeof name, i);
        agpu_ledger_sent(ledger, name, 1, "m");
        if (i % 2)
            agpu_ledger_done(ledger, name, 1, "m");
    }
    sent_range(ledger, MAX, MAX / 2, false); /* exactly as many new pairs as idle entries */
    for (size_t i = 0; i < MAX; i += 2)
        expect_range(ledger, i, 1, 1); /* the old busy ones */
    expect_range(ledger, MAX, MAX / 2, 1);

    /* Now every entry is busy: a new pair goes uncounted, nothing else is lost. */
    node_name(name, sizeof name, 2 * MAX);
    agpu_ledger_sent(ledger, name, 1, "m");
    expect_range(ledger, 2 * MAX, 1, 0);
    agpu_ledger_done(ledger, name, 1, "m"); /* its done finds nothing */
    expect_range(ledger, 2 * MAX, 1, 0);
    for (size_t i = 0; i < MAX; i += 2)
        expect_range(ledger, i, 1, 1);
    expect_range(ledger, MAX, MAX / 2, 1);

    /* One finishes: the next new pair is counted again. */
    node_name(name, sizeof name, 0);
    agpu_ledger_done(ledger, name, 1, "m");
    node_name(name, sizeof name, 2 * MAX + 1);
    agpu_ledger_sent(ledger, name, 1, "m");
    expect_range(ledger, 2 * MAX + 1, 1, 1);
    for (size_t i = 2; i < MAX; i += 2)
        expect_range(ledger, i, 1, 1);
    expect_range(ledger, MAX, MAX / 2, 1);
    agpu_ledger_destroy(&ledger);
}

/* ---- Threads. ---- */

#define THREADS 4
#define ROUNDS 10000

static const char *const smoke_nodes[] = {"a", "b"};
static const char *const smoke_models[] = {"m1", "m2"};

static atomic_bool smoke_stop;
static atomic_int smoke_out_of_range;

static void *smoke_worker(void *arg)
{
    agpu_ledger_t *ledger = arg;
    for (unsigned r = 0; r < ROUNDS; r++) {
        unsigned pair = r % 4; /* every thread on the same pair at once, as much as can be */
        const char *node = smoke_nodes[pair / 2], *model = smoke_models[pair % 2];
        agpu_ledger_sent(ledger, node, 1, model);
        agpu_ledger_done(ledger, node, 1, model);
    }
    return NULL;
}

/* Reads while the workers write: each count stays within what THREADS senders can have
 * outstanding. */
static void *smoke_reader(void *arg)
{
    agpu_ledger_t *ledger = arg;
    agpu_view_t *view = agpu_view_new("self");
    for (size_t i = 0; view && i < 2; i++) {
        agpu_msg_state_t st = {.seq = 1, .slots = 1}; /* the seq every sent is made on */
        if (agpu_view_add(view, smoke_nodes[i], "tcp://10.0.0.1:7447", false, AGPU_PEER_ALIVE, 0,
                          &st) != 0)
            atomic_fetch_add(&smoke_out_of_range, 1000);
    }
    if (!view) {
        atomic_fetch_add(&smoke_out_of_range, 1000);
        return NULL;
    }
    while (!atomic_load(&smoke_stop))
        for (size_t m = 0; m < 2; m++) {
            int32_t pending[2];
            agpu_ledger_pending(ledger, view, smoke_models[m], pending);
            for (size_t i = 0; i < 2; i++)
                if (pending[i] < 0 || pending[i] > THREADS)
                    atomic_fetch_add(&smoke_out_of_range, 1);
        }
    agpu_view_unref(&view);
    return NULL;
}

static void test_threads_smoke(void **unused)
{
    agpu_ledger_t *ledger = agpu_ledger_new();
    assert_non_null(ledger);
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
    for (size_t n = 0; n < 2; n++)
        for (size_t m = 0; m < 2; m++)
            assert_int_equal(pending_at(ledger, smoke_nodes[n], 1, smoke_models[m]), 0);
    agpu_ledger_destroy(&ledger);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),
        cmocka_unit_test(test_pending_by_view_index),
        cmocka_unit_test(test_new_and_destroy),
        cmocka_unit_test(test_idle_entries_are_reused),
        cmocka_unit_test(test_busy_entries_are_kept),
        cmocka_unit_test(test_threads_smoke),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
