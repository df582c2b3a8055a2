/* The ledger: a small chained hash of (node, model) -> requests sent and finished since the
 * node's state numbered seq. Entries are made on first use and reused once idle. */
#include "agpu_ledger.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define LEDGER_BUCKETS 1024

typedef struct entry {
    struct entry *next;
    uint64_t seq;
    int32_t sent, done;
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

/* An entry with nothing outstanding: its counts say nothing the next state would not. */
static entry_t *take_idle(agpu_ledger_t *self)
{
    for (size_t b = 0; b < LEDGER_BUCKETS; b++)
        for (entry_t **link = &self->buckets[b]; *link; link = &(*link)->next)
            if ((*link)->sent <= (*link)->done) {
                entry_t *e = *link;
                *link = e->next;
                self->count--;
                return e;
            }
    return NULL;
}

static entry_t *find_or_make(agpu_ledger_t *self, const char *node, const char *model)
{
    entry_t *e = find(self, node, model);
    if (e)
        return e;
    if (self->count >= AGPU_LEDGER_MAX_ENTRIES) {
        e = take_idle(self);
        if (!e)
            return NULL; /* every entry busy: this request goes uncounted */
        free(e->node);
        free(e->model);
    } else {
        e = malloc(sizeof *e);
        if (!e)
            return NULL;
    }
    *e = (entry_t){.node = strdup(node), .model = strdup(model)};
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

/* The node has told a newer state: it counts what was sent before it. */
static void catch_up(entry_t *e, uint64_t seq)
{
    if (seq > e->seq) {
        e->seq = seq;
        e->sent = e->done = 0;
    }
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
        if (e)
            catch_up(e, p->seq);
        pending[i] = e ? e->sent - e->done : 0;
    }
    pthread_mutex_unlock(&self->lock);
}

void agpu_ledger_sent(agpu_ledger_t *self, const char *node_id, uint64_t seq,
                      const char *model_key)
{
    pthread_mutex_lock(&self->lock);
    entry_t *e = find_or_make(self, node_id, model_key);
    if (e) {
        catch_up(e, seq);
        e->sent++;
    }
    pthread_mutex_unlock(&self->lock);
}

void agpu_ledger_done(agpu_ledger_t *self, const char *node_id, uint64_t seq,
                      const char *model_key)
{
    pthread_mutex_lock(&self->lock);
    entry_t *e = find(self, node_id, model_key);
    if (e) {
        catch_up(e, seq);
        e->done++;
    }
    pthread_mutex_unlock(&self->lock);
}
