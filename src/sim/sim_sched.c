/* sim_sched: Ollama's scheduler simulated: slots, wait queue, loads, eviction, keep_alive. */
#include "sim_sched.h"

#include "sim_config.h"
#include "sim_log.h"

#include <stdatomic.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

/* KV cache a loaded model adds per context token and slot, per unit of embedding width
 * (fp16 keys and values over a typical layer count): only shown by /api/ps. */
#define KV_BYTES_PER_TOKEN_PER_DIM 32

typedef enum { R_LOADING, R_READY } rstate_t;

struct sim_runner {
    const sim_model_t *model; /* the name that loaded it; copies share the weights */
    int num_ctx;
    int parallel;
    rstate_t state;
    int busy; /* slots held */
    int refs; /* granted waiters, with or without a slot */
    sim_waiter_t *wait_head, *wait_tail;
    int64_t session_ns; /* keep_alive in force; INT64_MAX = forever */
    bool expires_set;
    struct timespec expires; /* wall clock, as /api/ps shows it */
    sim_timer_t timer;       /* load completion, then keep_alive expiry */
    int64_t expiry;          /* mono ns the idle model unloads at; 0 = not idle */
    int64_t last_used;
    bool draining; /* unload when idle: eviction, or reload with another num_ctx */
    bool drain_is_eviction;
    sim_runner_t *next;
};

static struct {
    sim_runner_t *runners;
    int nrunners;
    sim_waiter_t *pend_head, *pend_tail; /* waiting for their model to be loaded */
    bool loading;                        /* one load at a time, as Ollama does */
    sim_waiter_t *acquiring;             /* grant() does not call back into acquire's caller */
    int active, queued;
    uint64_t completed, canceled, loads, evictions;
} S;

/* Bumped from every HTTP thread: atomics, not the lock. */
static atomic_uint_fast64_t n_requests, n_tokens;

static void kick(void);

/* ---- lists ---- */

static void list_push(sim_waiter_t **head, sim_waiter_t **tail, sim_waiter_t *w)
{
    w->next = NULL;
    w->prev = *tail;
    if (*tail)
        (*tail)->next = w;
    else
        *head = w;
    *tail = w;
}

static void list_remove(sim_waiter_t **head, sim_waiter_t **tail, sim_waiter_t *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        *head = w->next;
    if (w->next)
        w->next->prev = w->prev;
    else
        *tail = w->prev;
    w->prev = w->next = NULL;
}

static sim_runner_t *find_runner(const sim_model_t *m)
{
    for (sim_runner_t *r = S.runners; r; r = r->next)
        if (strcmp(r->model->blob, m->blob) == 0)
            return r;
    return NULL;
}

static bool runner_idle(const sim_runner_t *r)
{
    return r->state == R_READY && r->refs == 0 && !r->wait_head;
}

static bool runner_fits(const sim_runner_t *r, const sim_waiter_t *w)
{
    return !r->draining && r->num_ctx == w->num_ctx;
}

/* ---- load and unload ---- */

static void unload(sim_runner_t *r, const char *why)
{
    if (sim_verbose)
        sim_log("unloading %s (%s)", r->model->shortest, why);
    sim_timer_cancel(&r->timer);
    for (sim_runner_t **p = &S.runners; *p; p = &(*p)->next) {
        if (*p == r) {
            *p = r->next;
            break;
        }
    }
    S.nrunners--;
    free(r);
}

/* The expiry timer is armed lazily: using a model does not disarm it (that would cost two
 * timerfd syscalls a request); when it fires early it re-arms for the current expiry. */
static void expire_fired(sim_timer_t *t)
{
    sim_runner_t *r = (sim_runner_t *)((char *)t - offsetof(sim_runner_t, timer));
    if (!runner_idle(r) || !r->expiry)
        return; /* busy again: went_idle arms it anew */
    if (r->expiry > sim_mono_ns()) {
        sim_timer_arm(&r->timer, r->expiry);
        return;
    }
    unload(r, "keep_alive expired");
    kick();
}

/* The last user left: unload now, or start the keep_alive clock. */
static void went_idle(sim_runner_t *r)
{
    if (r->draining) {
        if (r->drain_is_eviction)
            S.evictions++;
        unload(r, r->drain_is_eviction ? "evicted" : "reloading with another num_ctx");
        return;
    }
    if (r->session_ns == 0) {
        unload(r, "keep_alive 0");
        return;
    }
    struct timespec now;
    sim_wall(&now);
    r->expires.tv_sec = now.tv_sec + r->session_ns / SIM_NS_PER_SEC;
    r->expires.tv_nsec = now.tv_nsec + r->session_ns % SIM_NS_PER_SEC;
    if (r->expires.tv_nsec >= SIM_NS_PER_SEC) {
        r->expires.tv_sec++;
        r->expires.tv_nsec -= SIM_NS_PER_SEC;
    }
    r->expires_set = true;
    int64_t mono = sim_mono_ns();
    if (r->session_ns >= INT64_MAX - mono) {
        r->expiry = 0; /* forever */
        return;
    }
    r->expiry = mono + r->session_ns;
    r->timer.fn = expire_fired;
    if (!r->timer.slot || r->timer.due > r->expiry)
        sim_timer_arm(&r->timer, r->expiry);
}

static void grant(sim_waiter_t *w, sim_runner_t *r)
{
    int64_t now = sim_mono_ns();
    if (w->state == SIM_W_QUEUED) {
        list_remove(&r->wait_head, &r->wait_tail, w);
        S.queued--;
    }
    w->state = SIM_W_GRANTED;
    w->runner = r;
    w->t_slot = now;
    if (!w->t_ready)
        w->t_ready = now;
    r->refs++;
    if (w->need_slot) {
        r->busy++;
        S.active++;
    }
    r->expiry = 0; /* in use: no expiry (the timer, if armed, finds it busy) */
    if (w->has_keep_alive)
        r->session_ns = w->keep_alive_ns;
    r->last_used = now;
    if (w != S.acquiring && w->granted)
        w->granted(w);
}

static void grant_waiters(sim_runner_t *r)
{
    if (r->state != R_READY)
        return;
    sim_waiter_t *w = r->wait_head;
    while (w) {
        sim_waiter_t *next = w->next;
        if (!w->need_slot || r->busy < r->parallel)
            grant(w, r);
        w = next;
    }
}

/* Every pending request for r's model (and context size) now waits on r. */
static void move_pending_to(sim_runner_t *r)
{
    sim_waiter_t *w = S.pend_head;
    while (w) {
        sim_waiter_t *next = w->next;
        if (strcmp(w->model->blob, r->model->blob) == 0 && w->num_ctx == r->num_ctx) {
            list_remove(&S.pend_head, &S.pend_tail, w);
            list_push(&r->wait_head, &r->wait_tail, w);
            w->runner = r;
            if (r->state == R_READY)
                w->t_ready = sim_mono_ns(); /* its model is loaded: only a slot to wait for */
        }
        w = next;
    }
}

static void load_done(sim_runner_t *r)
{
    int64_t now = sim_mono_ns();
    r->state = R_READY;
    r->last_used = now;
    S.loading = false;
    for (sim_waiter_t *w = r->wait_head; w; w = w->next)
        w->t_ready = now;
    grant_waiters(r);
    if (runner_idle(r))
        went_idle(r);
}

static void load_fired(sim_timer_t *t)
{
    load_done((sim_runner_t *)((char *)t - offsetof(sim_runner_t, timer)));
    kick();
}

/* A model picked to make room but not yet idle is spared once room was found elsewhere. */
static void spare_victims(void)
{
    for (sim_runner_t *r = S.runners; r; r = r->next) {
        if (r->draining && r->drain_is_eviction) {
            r->draining = false;
            r->drain_is_eviction = false;
        }
    }
}

static void start_load(sim_waiter_t *w)
{
    spare_victims();
    sim_runner_t *r = calloc(1, sizeof *r);
    if (!r)
        sim_die("out of memory (runner)");
    r->model = w->model;
    r->num_ctx = w->num_ctx;
    /* embedding models always run one request at a time in Ollama */
    r->parallel = (w->model->caps & SIM_CAP_EMBEDDING) ? 1 : sim_cfg.parallel;
    r->state = R_LOADING;
    r->session_ns = w->has_keep_alive ? w->keep_alive_ns : sim_cfg.keep_alive_ns;
    r->next = S.runners;
    S.runners = r;
    S.nrunners++;
    S.loads++;
    if (sim_verbose)
        sim_log("loading %s (num_ctx %d, %d slots)", r->model->shortest, r->num_ctx, r->parallel);
    move_pending_to(r);
    if (sim_cfg.load_ns == 0) {
        load_done(r);
        return;
    }
    S.loading = true;
    r->timer.fn = load_fired;
    sim_timer_arm(&r->timer, sim_mono_ns() + sim_cfg.load_ns);
}

static sim_runner_t *lru(bool idle_only)
{
    sim_runner_t *best = NULL;
    for (sim_runner_t *r = S.runners; r; r = r->next) {
        if (r->state != R_READY || (idle_only && !runner_idle(r)))
            continue;
        if (!best || r->last_used < best->last_used)
            best = r;
    }
    return best;
}

/* Serve the head of the pending queue if anything lets us: its model came back, there is
 * room to load it, or an idle model can be evicted. Otherwise mark a victim to drain. */
static void kick(void)
{
    while (!S.loading && S.pend_head) {
        sim_waiter_t *w = S.pend_head;
        sim_runner_t *r = find_runner(w->model);
        if (r) {
            if (runner_fits(r, w)) {
                move_pending_to(r);
                grant_waiters(r);
                continue;
            }
            if (!r->draining) {
                r->draining = true; /* a different num_ctx: reload, as Ollama does */
                r->drain_is_eviction = false;
            }
            if (runner_idle(r)) {
                unload(r, "reloading with another num_ctx");
                continue;
            }
            return;
        }
        if (S.nrunners < sim_cfg.max_loaded) {
            start_load(w);
            continue;
        }
        sim_runner_t *victim = lru(true);
        if (victim) {
            S.evictions++;
            unload(victim, "evicted");
            continue;
        }
        for (sim_runner_t *d = S.runners; d; d = d->next)
            if (d->draining)
                return; /* already waiting for one to drain */
        victim = lru(false);
        if (victim) {
            victim->draining = true;
            victim->drain_is_eviction = true;
        }
        return;
    }
}

/* ---- the interface ---- */

sim_acq_t sim_sched_acquire(sim_waiter_t *w)
{
    w->t_enqueued = sim_mono_ns();
    w->t_ready = 0;
    sim_runner_t *r = find_runner(w->model);
    if (r && runner_fits(r, w) && r->state == R_READY && (!w->need_slot || r->busy < r->parallel)) {
        w->t_ready = w->t_enqueued;
        grant(w, r);
        return SIM_ACQ_GRANTED;
    }
    if (S.queued >= sim_cfg.max_queue)
        return SIM_ACQ_BUSY;
    w->state = SIM_W_QUEUED;
    S.queued++;
    if (r && runner_fits(r, w)) {
        list_push(&r->wait_head, &r->wait_tail, w);
        w->runner = r;
        if (r->state == R_READY)
            w->t_ready = w->t_enqueued;
        return SIM_ACQ_QUEUED;
    }
    w->runner = NULL;
    list_push(&S.pend_head, &S.pend_tail, w);
    S.acquiring = w;
    kick();
    S.acquiring = NULL;
    return w->state == SIM_W_GRANTED ? SIM_ACQ_GRANTED : SIM_ACQ_QUEUED;
}

static void release(sim_waiter_t *w)
{
    sim_runner_t *r = w->runner;
    r->refs--;
    if (w->need_slot) {
        r->busy--;
        S.active--;
    }
    r->last_used = sim_mono_ns();
    w->runner = NULL;
    grant_waiters(r);
    if (runner_idle(r))
        went_idle(r);
    kick();
}

void sim_sched_finish(sim_waiter_t *w)
{
    if (w->state != SIM_W_GRANTED)
        return;
    w->state = SIM_W_DONE;
    S.completed++;
    release(w);
}

void sim_sched_cancel(sim_waiter_t *w)
{
    if (w->state == SIM_W_QUEUED) {
        sim_runner_t *r = w->runner;
        if (r)
            list_remove(&r->wait_head, &r->wait_tail, w);
        else
            list_remove(&S.pend_head, &S.pend_tail, w);
        w->runner = NULL;
        w->state = SIM_W_CANCELED;
        S.queued--;
        S.canceled++;
        if (r && runner_idle(r))
            went_idle(r);
        kick();
    } else if (w->state == SIM_W_GRANTED) {
        w->state = SIM_W_CANCELED;
        S.canceled++;
        release(w);
    }
}

void sim_sched_unload_model(const sim_model_t *m)
{
    sim_runner_t *r = find_runner(m);
    if (!r)
        return;
    r->session_ns = 0;
    sim_wall(&r->expires);
    r->expires_set = true;
    if (r->state == R_LOADING)
        return; /* the load goes on; with no keep_alive left it unloads once idle */
    sim_timer_cancel(&r->timer);
    if (runner_idle(r)) {
        unload(r, "unload requested");
        kick();
    }
}

void sim_sched_init(void)
{
    memset(&S, 0, sizeof S);
    atomic_store(&n_requests, 0);
    atomic_store(&n_tokens, 0);
}

void sim_sched_shutdown(void)
{
    while (S.runners)
        unload(S.runners, "shutdown");
}

void sim_sched_count_request(void)
{
    atomic_fetch_add_explicit(&n_requests, 1, memory_order_relaxed);
}

void sim_sched_count_tokens(int64_t n)
{
    atomic_fetch_add_explicit(&n_tokens, (uint_fast64_t)n, memory_order_relaxed);
}

void sim_sched_stats_json(sim_buf_t *b)
{
    sim_lock();
    sim_buf_fmt(b,
                "{\"requests\":%llu,\"active\":%d,\"queued\":%d,\"completed\":%llu,"
                "\"canceled\":%llu,\"tokens\":%llu,\"loads\":%llu,\"evictions\":%llu}",
                (unsigned long long)atomic_load(&n_requests), S.active, S.queued,
                (unsigned long long)S.completed, (unsigned long long)S.canceled,
                (unsigned long long)atomic_load(&n_tokens), (unsigned long long)S.loads,
                (unsigned long long)S.evictions);
    sim_unlock();
}

typedef struct {
    const sim_model_t *model;
    int num_ctx, parallel;
    struct timespec expires;
} ps_row_t;

static int by_expiry_desc(const void *a, const void *b)
{
    const ps_row_t *x = a, *y = b;
    if (x->expires.tv_sec != y->expires.tv_sec)
        return x->expires.tv_sec < y->expires.tv_sec ? 1 : -1;
    return 0; /* Ollama compares whole seconds, stably */
}

void sim_sched_ps_json(sim_buf_t *b)
{
    ps_row_t rows[256];
    int n = 0;
    struct timespec now;
    sim_wall(&now);
    sim_lock();
    for (sim_runner_t *r = S.runners; r && n < 256; r = r->next) {
        rows[n].model = r->model;
        rows[n].num_ctx = r->num_ctx;
        rows[n].parallel = r->parallel;
        if (r->expires_set) {
            rows[n].expires = r->expires;
        } else {
            rows[n].expires.tv_sec = now.tv_sec + r->session_ns / SIM_NS_PER_SEC;
            rows[n].expires.tv_nsec = now.tv_nsec + r->session_ns % SIM_NS_PER_SEC;
            if (rows[n].expires.tv_nsec >= SIM_NS_PER_SEC) {
                rows[n].expires.tv_sec++;
                rows[n].expires.tv_nsec -= SIM_NS_PER_SEC;
            }
        }
        n++;
    }
    sim_unlock();
    qsort(rows, (size_t)n, sizeof rows[0], by_expiry_desc);
    sim_buf_str(b, "{\"models\":[");
    for (int i = 0; i < n; i++) {
        const sim_model_t *m = rows[i].model;
        int64_t size = m->size + (int64_t)rows[i].num_ctx * rows[i].parallel * m->embedding_length *
                                     KV_BYTES_PER_TOKEN_PER_DIM;
        if (i)
            sim_buf_add(b, ",", 1);
        sim_buf_str(b, "{\"name\":");
        sim_buf_jcstr(b, m->shortest);
        sim_buf_str(b, ",\"model\":");
        sim_buf_jcstr(b, m->shortest);
        sim_buf_fmt(b, ",\"size\":%lld,\"digest\":\"%s\",\"details\":", (long long)size, m->digest);
        sim_catalog_details(b, m, false);
        sim_buf_str(b, ",\"expires_at\":");
        sim_buf_time(b, rows[i].expires.tv_sec, rows[i].expires.tv_nsec, false);
        sim_buf_fmt(b, ",\"size_vram\":%lld,\"context_length\":%d}", (long long)size,
                    rows[i].num_ctx);
    }
    sim_buf_str(b, "]}");
}
