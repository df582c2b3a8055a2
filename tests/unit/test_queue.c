/* Unit tests of agpu_queue: the bounded per-model FIFOs of requests waiting for a free slot,
 * and who is woken when. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agpu_queue.h"

/* The wake function of most tests: arg is the owner's own counter. */
static void count_wake(void *arg)
{
    (*(int *)arg)++;
}

static void expect_wakes(const int *wakes, const int *want, size_t n, const char *when)
{
    for (size_t i = 0; i < n; i++)
        if (wakes[i] != want[i])
            fail_msg("%s: entry %zu woken %d times, want %d", when, i, wakes[i], want[i]);
}

/* ---- Bounds. ---- */

static void test_bound_is_per_model(void **unused)
{
    static const unsigned bounds[] = {1, 2, 3, 8};
    for (size_t b = 0; b < sizeof bounds / sizeof bounds[0]; b++) {
        unsigned bound = bounds[b];
        agpu_queue_t *q = agpu_queue_new(bound);
        assert_non_null(q);
        int wakes[2] = {0};
        agpu_queue_entry_t *first = NULL;
        for (unsigned i = 0; i < bound; i++) {
            agpu_queue_entry_t *e = agpu_queue_push(q, "m1", count_wake, &wakes[0]);
            if (!e)
                fail_msg("bound %u: push %u refused", bound, i);
            if (i == 0)
                first = e;
            assert_int_equal(agpu_queue_length(q, "m1"), i + 1);
        }
        assert_null(agpu_queue_push(q, "m1", count_wake, &wakes[0]));
        assert_null(agpu_queue_push(q, "m1", count_wake, &wakes[0]));
        assert_int_equal(agpu_queue_length(q, "m1"), bound);

        /* Another model has its own bound. */
        for (unsigned i = 0; i < bound; i++)
            assert_non_null(agpu_queue_push(q, "m2", count_wake, &wakes[1]));
        assert_null(agpu_queue_push(q, "m2", count_wake, &wakes[1]));
        assert_int_equal(agpu_queue_length(q, "m2"), bound);
        assert_int_equal(agpu_queue_length(q, "m1"), bound);

        /* One leaves: room for one more, no more. */
        agpu_queue_remove(q, &first);
        assert_null(first);
        assert_int_equal(agpu_queue_length(q, "m1"), bound - 1);
        assert_non_null(agpu_queue_push(q, "m1", count_wake, &wakes[0]));
        assert_null(agpu_queue_push(q, "m1", count_wake, &wakes[0]));
        assert_int_equal(agpu_queue_length(q, "m1"), bound);
        assert_int_equal(wakes[1], 0);

        agpu_queue_destroy(&q); /* with everything still queued */
        assert_null(q);
    }
}

static void test_bound_zero_refuses_everything(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(0);
    assert_non_null(q);
    int wakes = 0;
    static const char *const models[] = {"m1", "m2", ""};
    for (size_t i = 0; i < sizeof models / sizeof models[0]; i++) {
        assert_null(agpu_queue_push(q, models[i], count_wake, &wakes));
        assert_int_equal(agpu_queue_length(q, models[i]), 0);
        agpu_queue_kick(q, models[i]);
    }
    assert_int_equal(wakes, 0);
    agpu_queue_destroy(&q);
}

/* ---- Order and wake-ups. ---- */

#define N 4

/* Pushes N entries for model "m"; owner i counts into wakes[i]. */
static void push_n(agpu_queue_t *q, agpu_queue_entry_t **e, int *wakes)
{
    for (size_t i = 0; i < N; i++) {
        wakes[i] = 0;
        e[i] = agpu_queue_push(q, "m", count_wake, &wakes[i]);
        assert_non_null(e[i]);
    }
}

static void test_fifo_order(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(N);
    assert_non_null(q);
    agpu_queue_entry_t *e[N];
    int wakes[N], want[N] = {0};
    push_n(q, e, wakes);
    expect_wakes(wakes, want, N, "pushing");
    for (size_t gone = 0; gone < N; gone++) {
        for (size_t i = gone; i < N; i++)
            if (agpu_queue_is_head(q, e[i]) != (i == gone))
                fail_msg("after %zu removed: entry %zu is_head wrong", gone, i);
        assert_int_equal(agpu_queue_length(q, "m"), N - gone);
        agpu_queue_remove(q, &e[gone]);
        assert_null(e[gone]);
        if (gone + 1 < N)
            want[gone + 1]++; /* the new head, once */
        expect_wakes(wakes, want, N, "removing the head");
    }
    assert_int_equal(agpu_queue_length(q, "m"), 0);
    agpu_queue_destroy(&q);
}

/* Every order of taking N entries out: FIFO order among those left, and only the departure of
 * the head wakes anyone: the new head, once. */
static void check_removal_order(const size_t *order)
{
    agpu_queue_t *q = agpu_queue_new(N);
    assert_non_null(q);
    agpu_queue_entry_t *e[N];
    int wakes[N], want[N] = {0};
    bool left[N];
    push_n(q, e, wakes);
    for (size_t i = 0; i < N; i++)
        left[i] = true;
    for (size_t step = 0; step < N; step++) {
        size_t head = 0;
        while (!left[head])
            head++;
        size_t k = order[step];
        agpu_queue_remove(q, &e[k]);
        left[k] = false;
        if (k == head) {
            size_t next = head + 1;
            while (next < N && !left[next])
                next++;
            if (next < N)
                want[next]++;
        }
        expect_wakes(wakes, want, N, "removing");
        size_t count = 0;
        bool seen_head = false;
        for (size_t i = 0; i < N; i++) {
            if (!left[i])
                continue;
            count++;
            if (agpu_queue_is_head(q, e[i]) != !seen_head)
                fail_msg("order %zu%zu%zu%zu, step %zu: entry %zu is_head wrong", order[0],
                         order[1], order[2], order[3], step, i);
            seen_head = true;
        }
        assert_int_equal(agpu_queue_length(q, "m"), count);
        /* A newcomer goes to the end of what is left (the tail is kept right). */
        if (count > 0 && count < N) {
            int late = 0;
            agpu_queue_entry_t *x = agpu_queue_push(q, "m", count_wake, &late);
            assert_non_null(x);
            assert_false(agpu_queue_is_head(q, x));
            agpu_queue_remove(q, &x);
            assert_int_equal(late, 0);
            expect_wakes(wakes, want, N, "a newcomer leaving");
        }
    }
    assert_int_equal(agpu_queue_length(q, "m"), 0);
    agpu_queue_destroy(&q);
}

static void permute(size_t *order, size_t k, unsigned *tried)
{
    if (k == N) {
        check_removal_order(order);
        (*tried)++;
        return;
    }
    for (size_t i = k; i < N; i++) {
        size_t t = order[k];
        order[k] = order[i];
        order[i] = t;
        permute(order, k + 1, tried);
        order[i] = order[k];
        order[k] = t;
    }
}

static void test_every_removal_order(void **unused)
{
    size_t order[N];
    for (size_t i = 0; i < N; i++)
        order[i] = i;
    unsigned tried = 0;
    permute(order, 0, &tried);
    assert_int_equal(tried, 24);
}

static void test_remove_non_head_does_not_wake(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(N);
    assert_non_null(q);
    agpu_queue_entry_t *e[N];
    int wakes[N], want[N] = {0};
    push_n(q, e, wakes);
    agpu_queue_remove(q, &e[2]); /* the middle */
    expect_wakes(wakes, want, N, "removing the middle");
    agpu_queue_remove(q, &e[3]); /* the tail */
    expect_wakes(wakes, want, N, "removing the tail");
    assert_int_equal(agpu_queue_length(q, "m"), 2);
    assert_true(agpu_queue_is_head(q, e[0]));
    assert_false(agpu_queue_is_head(q, e[1]));

    /* Pushed after the old tail left: it follows e[1], and is woken in its turn. */
    int late = 0;
    agpu_queue_entry_t *x = agpu_queue_push(q, "m", count_wake, &late);
    assert_non_null(x);
    agpu_queue_remove(q, &e[0]);
    want[1] = 1;
    expect_wakes(wakes, want, N, "removing the head");
    assert_int_equal(late, 0);
    agpu_queue_remove(q, &e[1]);
    assert_int_equal(late, 1);
    assert_true(agpu_queue_is_head(q, x));

    agpu_queue_entry_t *none = NULL;
    agpu_queue_remove(q, &none); /* NULL is harmless */
    assert_int_equal(agpu_queue_length(q, "m"), 1);
    agpu_queue_remove(q, &x);
    assert_int_equal(late, 1); /* the last one leaving wakes no one */
    expect_wakes(wakes, want, N, "the last one leaving");
    agpu_queue_destroy(&q);
}

static void test_kick_wakes_only_that_head(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(N);
    assert_non_null(q);
    enum { A0, A1, B0, B1, C0, NW };
    int wakes[NW] = {0}, want[NW] = {0};
    agpu_queue_entry_t *e[NW];
    e[A0] = agpu_queue_push(q, "a", count_wake, &wakes[A0]);
    e[B0] = agpu_queue_push(q, "b", count_wake, &wakes[B0]);
    e[A1] = agpu_queue_push(q, "a", count_wake, &wakes[A1]);
    e[B1] = agpu_queue_push(q, "b", count_wake, &wakes[B1]);
    e[C0] = agpu_queue_push(q, "c", count_wake, &wakes[C0]);
    for (size_t i = 0; i < NW; i++)
        assert_non_null(e[i]);

    agpu_queue_kick(q, "a");
    want[A0] = 1;
    expect_wakes(wakes, want, NW, "kick a");
    agpu_queue_kick(q, "a");
    agpu_queue_kick(q, "b");
    want[A0] = 2;
    want[B0] = 1;
    expect_wakes(wakes, want, NW, "kick a, b");
    agpu_queue_kick(q, "unknown");
    agpu_queue_kick(q, "");
    agpu_queue_kick(q, "A"); /* model keys are matched exactly */
    expect_wakes(wakes, want, NW, "kick unknown models");

    agpu_queue_remove(q, &e[A0]);
    want[A1] = 1;
    expect_wakes(wakes, want, NW, "a's head leaving");
    agpu_queue_kick(q, "a");
    want[A1] = 2;
    expect_wakes(wakes, want, NW, "kick a again");

    agpu_queue_remove(q, &e[A1]);
    agpu_queue_kick(q, "a"); /* its FIFO is gone */
    expect_wakes(wakes, want, NW, "kick an emptied model");
    agpu_queue_kick(q, "c");
    want[C0] = 1;
    expect_wakes(wakes, want, NW, "kick c");
    agpu_queue_destroy(&q);
}

/* ---- Lengths and lifetimes. ---- */

static void test_length_per_model(void **unused)
{
    static const struct {
        const char *model;
        unsigned pushes;
    } table[] = {{"llama3:latest", 3}, {"mistral:7b", 1}, {"qwen2:0.5b", 5}, {"phi3:mini", 0}};
    agpu_queue_t *q = agpu_queue_new(5);
    assert_non_null(q);
    int wakes = 0;
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++)
        for (unsigned i = 0; i < table[t].pushes; i++)
            assert_non_null(agpu_queue_push(q, table[t].model, count_wake, &wakes));
    for (size_t t = 0; t < sizeof table / sizeof table[0]; t++)
        assert_int_equal(agpu_queue_length(q, table[t].model), table[t].pushes);
    assert_int_equal(agpu_queue_length(q, "unknown"), 0);
    assert_int_equal(agpu_queue_length(q, "llama3"), 0); /* exact keys only */
    assert_int_equal(wakes, 0);
    agpu_queue_destroy(&q);
}

static void test_last_removal_frees_the_fifo(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(2);
    assert_non_null(q);
    int wakes[4] = {0};
    for (int round = 0; round < 3; round++) {
        agpu_queue_entry_t *a = agpu_queue_push(q, "m", count_wake, &wakes[0]);
        agpu_queue_entry_t *b = agpu_queue_push(q, "m", count_wake, &wakes[1]);
        assert_non_null(a);
        assert_non_null(b);
        assert_null(agpu_queue_push(q, "m", count_wake, &wakes[2]));
        assert_true(agpu_queue_is_head(q, a));
        assert_false(agpu_queue_is_head(q, b));
        agpu_queue_remove(q, &b);
        agpu_queue_remove(q, &a);
        assert_int_equal(agpu_queue_length(q, "m"), 0);
        agpu_queue_kick(q, "m"); /* nobody left to wake */
    }
    assert_int_equal(wakes[0], 0);
    assert_int_equal(wakes[1], 0);
    assert_int_equal(wakes[2], 0);

    /* A fresh FIFO: a new head, alone, not woken by its own arrival. */
    agpu_queue_entry_t *c = agpu_queue_push(q, "m", count_wake, &wakes[3]);
    assert_non_null(c);
    assert_true(agpu_queue_is_head(q, c));
    assert_int_equal(agpu_queue_length(q, "m"), 1);
    assert_int_equal(wakes[3], 0);
    agpu_queue_remove(q, &c);
    assert_int_equal(wakes[3], 0);
    agpu_queue_destroy(&q); /* empty again: valgrind finds no FIFO left over */
}

static void test_destroy_with_entries_queued(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(3);
    assert_non_null(q);
    int wakes = 0;
    static const char *const models[] = {"a", "b", "c", "d"};
    for (size_t m = 0; m < 4; m++)
        for (size_t i = 0; i <= m && i < 3; i++)
            assert_non_null(agpu_queue_push(q, models[m], count_wake, &wakes));
    agpu_queue_entry_t *gone = agpu_queue_push(q, "e", count_wake, &wakes);
    agpu_queue_remove(q, &gone); /* one emptied FIFO among the full ones */
    agpu_queue_destroy(&q);
    assert_null(q);
    assert_int_equal(wakes, 0); /* destroy wakes no one */
    agpu_queue_destroy(&q);     /* twice is harmless */
}

/* ---- Wake-ups under the lock. ---- */

/* The wake function of an owner under test: notes the wake-up, as the header asks. The first
 * time, it also lets its probe thread ask the queue something while the wake function runs:
 * that call must wait for the lock, so it cannot have finished when the wake function returns.
 */
typedef struct {
    agpu_queue_t *q;
    atomic_int woken;
    atomic_bool probe_go, probe_done, probe_done_during_wake;
} flag_owner_t;

static void flag_wake(void *arg)
{
    flag_owner_t *o = arg;
    if (atomic_fetch_add(&o->woken, 1) == 0) {
        atomic_store(&o->probe_go, true);
        struct timespec nap = {.tv_nsec = 50 * 1000 * 1000};
        nanosleep(&nap, NULL);
        atomic_store(&o->probe_done_during_wake, atomic_load(&o->probe_done));
    }
}

static void *probe(void *arg)
{
    flag_owner_t *o = arg;
    while (!atomic_load(&o->probe_go)) {
        struct timespec nap = {.tv_nsec = 1000 * 1000};
        nanosleep(&nap, NULL);
    }
    (void)agpu_queue_length(o->q, "m"); /* blocks while the wake function holds the lock */
    atomic_store(&o->probe_done, true);
    return NULL;
}

typedef struct {
    flag_owner_t owners[2];
    pthread_mutex_t lock;
    pthread_cond_t cond;
    bool finished, ok;
} wake_run_t;

/* Push, kick, remove the head (waking the next), remove the rest. */
static void *wake_scenario(void *arg)
{
    wake_run_t *run = arg;
    agpu_queue_t *q = run->owners[0].q;
    agpu_queue_entry_t *a = agpu_queue_push(q, "m", flag_wake, &run->owners[0]);
    agpu_queue_entry_t *b = agpu_queue_push(q, "m", flag_wake, &run->owners[1]);
    bool ok = a && b;
    if (!ok)
        for (size_t i = 0; i < 2; i++) /* no wake-up coming: free the probes */
            atomic_store(&run->owners[i].probe_go, true);
    agpu_queue_kick(q, "m");  /* wakes a, whose wake function probes the lock */
    agpu_queue_remove(q, &a); /* wakes b, whose wake function probes the lock */
    agpu_queue_kick(q, "m");  /* wakes b */
    agpu_queue_remove(q, &b); /* wakes no one */
    agpu_queue_kick(q, "m");  /* wakes no one */
    pthread_mutex_lock(&run->lock);
    run->finished = true;
    run->ok = ok;
    pthread_cond_signal(&run->cond);
    pthread_mutex_unlock(&run->lock);
    return NULL;
}

static void test_wake_under_lock_does_not_deadlock(void **unused)
{
    static wake_run_t run; /* static: a deadlocked thread would outlive this frame */
    memset(&run, 0, sizeof run);
    agpu_queue_t *q = agpu_queue_new(4);
    assert_non_null(q);
    for (size_t i = 0; i < 2; i++)
        run.owners[i].q = q;
    pthread_mutex_init(&run.lock, NULL);
    pthread_cond_init(&run.cond, NULL);

    pthread_t probers[2], worker;
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&probers[i], NULL, probe, &run.owners[i]), 0);
    assert_int_equal(pthread_create(&worker, NULL, wake_scenario, &run), 0);

    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += 30; /* generous: valgrind on a loaded machine */
    pthread_mutex_lock(&run.lock);
    int rc = 0;
    while (!run.finished && rc != ETIMEDOUT)
        rc = pthread_cond_timedwait(&run.cond, &run.lock, &deadline);
    bool finished = run.finished;
    pthread_mutex_unlock(&run.lock);
    if (!finished)
        fail_msg("the queue deadlocked calling a wake function");

    assert_int_equal(pthread_join(worker, NULL), 0);
    for (size_t i = 0; i < 2; i++)
        assert_int_equal(pthread_join(probers[i], NULL), 0);
    assert_true(run.ok);
    assert_int_equal(atomic_load(&run.owners[0].woken), 1);
    assert_int_equal(atomic_load(&run.owners[1].woken), 2);
    /* Each probe waited for the wake function: kick and remove call it with the lock held. */
    for (size_t i = 0; i < 2; i++) {
        assert_false(atomic_load(&run.owners[i].probe_done_during_wake));
        assert_true(atomic_load(&run.owners[i].probe_done));
    }
    assert_int_equal(agpu_queue_length(q, "m"), 0);
    agpu_queue_destroy(&q);
    pthread_cond_destroy(&run.cond);
    pthread_mutex_destroy(&run.lock);
}

/* ---- Closing. ---- */

static void test_close_wakes_every_entry_and_refuses_more(void **unused)
{
    agpu_queue_t *q = agpu_queue_new(8);
    assert_non_null(q);
    int wakes[3] = {0};
    agpu_queue_entry_t *e[3] = {
        agpu_queue_push(q, "m1", count_wake, &wakes[0]),
        agpu_queue_push(q, "m1", count_wake, &wakes[1]),
        agpu_queue_push(q, "m2", count_wake, &wakes[2]),
    };
    for (size_t i = 0; i < 3; i++)
        assert_non_null(e[i]);
    assert_false(agpu_queue_closed(q));
    agpu_queue_close(q);
    assert_true(agpu_queue_closed(q));
    expect_wakes(wakes, (const int[]){1, 1, 1}, 3, "close: every owner, heads or not");
    int late = 0;
    assert_null(agpu_queue_push(q, "m1", count_wake, &late));
    assert_null(agpu_queue_push(q, "m3", count_wake, &late));
    for (size_t i = 0; i < 3; i++)
        agpu_queue_remove(q, &e[i]); /* the owners take their entries out */
    assert_int_equal(agpu_queue_length(q, "m1"), 0);
    assert_int_equal(late, 0);
    agpu_queue_destroy(&q);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_bound_is_per_model),
        cmocka_unit_test(test_close_wakes_every_entry_and_refuses_more),
        cmocka_unit_test(test_bound_zero_refuses_everything),
        cmocka_unit_test(test_fifo_order),
        cmocka_unit_test(test_every_removal_order),
        cmocka_unit_test(test_remove_non_head_does_not_wake),
        cmocka_unit_test(test_kick_wakes_only_that_head),
        cmocka_unit_test(test_length_per_model),
        cmocka_unit_test(test_last_removal_frees_the_fifo),
        cmocka_unit_test(test_destroy_with_entries_queued),
        cmocka_unit_test(test_wake_under_lock_does_not_deadlock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
