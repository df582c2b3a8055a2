/* The ledger: a small chained hash of (node, model) -> a ring of the latest events (a request
 * sent, +1, or finished, -1) with their times. Entries are made on first use and reused once
 * their events are old. */
#include "agpu_ledger.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LEDGER_BUCKETS 1024

/* Events older than this are counted by any state a node has sent since (one a second). */
#define LEDGER_FORGET_MS 10000

typedef struct {
    int64_t ms;
    int32_t delta; /* +1 sent, -1 finished */
} event_t;

typedef struct entry {
    struct entry *next;
    event_t events[AGPU_LEDGER_EVENTS]; /* a ring: the newest at (first + count - 1) */
    size_t first, count;
    char *node, *model;
} entry_t;

struct agpu_ledger {
    pthread_mutex_t lock;
    entry_t *buckets[LEDGER_BUCKETS];
    size_t count;
};

static size_t bucket_of(const char *node, const char *model)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (const char *p = node; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    h = (h ^ '\n') * 1099511628211ULL;
    for (const char *p = model; *p; p++)
        h = (h ^ (uint8_t)*p) * 1099511628211ULL;
    return (size_t)(h % LEDGER_BUCKETS);
}

static entry_t *find(agpu_ledger_t *self, const char *node, const char *model)
{
    for (entry_t *e = self->buckets[bucket_of(node, model)]; e; e = e->next)
        if (strcmp(e->node, node) == 0 && strcmp(e->model, model) == 0)
            return e;
    return NULL;
}

static int64_t newest(const entry_t *e)
{
    return e->count ? e->events[(e->first + e->count - 1) % AGPU_LEDGER_EVENTS].ms : INT64_MIN;
}

/* An entry whose events every state has counted by now. */
static entry_t *take_idle(agpu_ledger_t *self, int64_t now_ms)
{
    for (size_t b = 0; b < LEDGER_BUCKETS; b++)
        for (entry_t **link = &self->buckets[b]; *link; link = &(*link)->next)
            if (newest(*link) < now_ms - LEDGER_FORGET_MS) {
                entry_t *e = *link;
                *link = e->next;
                self->count--;
                return e;
            }
    return NULL;
}

static entry_t *find_or_make(agpu_ledger_t *self, const char *node, const char *model,
                            int64_t now_ms)
{
    entry_t *e = find(self, node, model);
    if (e)
        return e;
    if (self->count >= AGPU_LEDGER_MAX_ENTRIES) {
        e = take_idle(self, now_ms);
        if (!e)
            return NULL; /* every entry busy: this request goes uncounted */
        free(e->node);
        free(e->model);
    } else {
        e = malloc(sizeof *e);
        if (!e)
            return NULL;
    }
    e->next = NULL;
    e->first = e->count = 0;
    e->node = strdup(node);
    e->model = strdup(model);
    if (!e->node || !e->model) {
        free(e->node);
        free(e->model);
        free(e);
        return NULL;
    }
    size_t b = bucket_of(node, model);
    e->next = self->buckets[b];
    self->buckets[b] = e;
    self->count++;
    return e;
}

static void record(entry_t *e, int64_t ms, int32_t delta)
{
    if (e->count == AGPU_LEDGER_EVENTS) { /* the oldest goes: long since counted by a state */
        e->first = (e->first + 1) % AGPU_LEDGER_EVENTS;
        e->count--;
    }
    e->events[(e->first + e->count++) % AGPU_LEDGER_EVENTS] = (event_t){ms, delta};
}

/* Callers take the time before the lock, so events may be recorded a little out of order;
 * the newest-first scan stops this far before the state. */
#define LEDGER_DISORDER_MS 1000

/* What a state received at state_ms does not count yet: the newest events, scanned from the
 * newest back to those the state surely counts. */
static int32_t uncounted(const entry_t *e, int64_t state_ms)
{
    int32_t sum = 0;
    for (size_t i = e->count; i-- > 0;) {
        const event_t *ev = &e->events[(e->first + i) % AGPU_LEDGER_EVENTS];
        if (ev->ms < state_ms - AGPU_LEDGER_TRANSIT_MS - LEDGER_DISORDER_MS)
            break;
        int64_t counted_before = ev->delta > 0 ? state_ms - AGPU_LEDGER_TRANSIT_MS : state_ms;
        if (ev->ms >= counted_before)
            sum += ev->delta;
    }
    return sum;
}

agpu_ledger_t *agpu_ledger_new(void)
{
    agpu_ledger_t *self = calloc(1, sizeof *self);
    if (self)
        pthread_mutex_init(&self->lock, NULL);
    return self;
}

void agpu_ledger_destroy(agpu_ledger_t **self_p)
{
    agpu_ledger_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t b = 0; b < LEDGER_BUCKETS; b++)
        while (self->buckets[b]) {
            entry_t *e = self->buckets[b];
            self->buckets[b] = e->next;
            free(e->node);
            free(e->model);
            free(e);
        }
    pthread_mutex_destroy(&self->lock);
    free(self);
}

void agpu_ledger_pending(agpu_ledger_t *self, const agpu_view_t *view, const char *model_key,
                         int32_t *pending)
{
    size_t n = agpu_view_count(view);
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < n; i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        entry_t *e = self->count ? find(self, p->id, model_key) : NULL;
        pending[i] = e ? uncounted(e, p->last_seen_ms) : 0;
    }
    pthread_mutex_unlock(&self->lock);
}

static void note(agpu_ledger_t *self, const char *node_id, const char *model_key,
                 int64_t now_ms, int32_t delta)
{
    pthread_mutex_lock(&self->lock);
    entry_t *e = find_or_make(self, node_id, model_key, now_ms);
    if (e)
        record(e, now_ms, delta);
    pthread_mutex_unlock(&self->lock);
}

void agpu_ledger_sent(agpu_ledger_t *self, const char *node_id, const char *model_key,
                      int64_t now_ms)
{
    note(self, node_id, model_key, now_ms, +1);
}

void agpu_ledger_done(agpu_ledger_t *self, const char *node_id, const char *model_key,
                      int64_t now_ms)
{
    note(self, node_id, model_key, now_ms, -1);
}
