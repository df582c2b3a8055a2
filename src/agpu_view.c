/* A snapshot of the mesh: copies of each node's last state, freed with the last reference. */
#include "agpu_view.h"

#include "agpu_name.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

/* Every string and array of one view, freed together. */
typedef struct block {
    struct block *next;
    max_align_t align[];
} block_t;

struct agpu_view {
    atomic_int refs;
    char *self_id;
    agpu_view_peer_t *peers;
    size_t count, alloc;
    block_t *blocks;
};

static void *view_alloc(agpu_view_t *self, size_t size)
{
    block_t *block = calloc(1, sizeof *block + size);
    if (!block)
        return NULL;
    block->next = self->blocks;
    self->blocks = block;
    return block->align;
}

static const char *view_strdup(agpu_view_t *self, const char *s)
{
    if (!s)
        s = "";
    size_t len = strlen(s);
    char *copy = view_alloc(self, len + 1);
    if (copy)
        memcpy(copy, s, len + 1);
    return copy;
}

agpu_view_t *agpu_view_new(const char *self_id)
{
    agpu_view_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    atomic_init(&self->refs, 1);
    self->self_id = strdup(self_id);
    if (!self->self_id) {
        free(self);
        return NULL;
    }
    return self;
}

int agpu_view_add(agpu_view_t *self, const char *id, const char *gossip, bool is_self,
                  agpu_peer_state_t state, int64_t last_seen_ms, const agpu_msg_state_t *st)
{
    if (self->count == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 8;
        agpu_view_peer_t *grown = realloc(self->peers, alloc * sizeof *grown);
        if (!grown)
            return -1;
        self->peers = grown;
        self->alloc = alloc;
    }
    agpu_view_peer_t *p = &self->peers[self->count];
    memset(p, 0, sizeof *p);
    p->id = view_strdup(self, id);
    p->gossip = view_strdup(self, gossip);
    p->self = is_self;
    p->state = state;
    p->last_seen_ms = last_seen_ms;
    p->ollama = AGPU_OLLAMA_DOWN;
    p->name = view_strdup(self, st ? st->name : "");
    p->http = view_strdup(self, st ? st->http_endpoint : "");
    p->ollama_version = view_strdup(self, st ? st->ollama_version : "");
    if (st) {
        p->ollama = st->slots == 0 ? AGPU_OLLAMA_NONE
                                   : st->ollama_up ? AGPU_OLLAMA_UP : AGPU_OLLAMA_DOWN;
        p->draining = st->draining;
        p->capacity = st->slots;
        agpu_view_model_t *models = st->n_models ? view_alloc(self, st->n_models * sizeof *models)
                                                 : NULL;
        if (st->n_models && !models)
            return -1;
        for (size_t i = 0; i < st->n_models; i++) {
            const agpu_msg_model_t *m = &st->models[i];
            char key[AGPU_NAME_KEY_MAX];
            if (agpu_name_key(m->name, key, sizeof key) != 0)
                key[0] = '\0'; /* a name no request can match */
            models[i] = (agpu_view_model_t){
                .name = view_strdup(self, m->name),
                .key = view_strdup(self, key),
                .digest = view_strdup(self, m->digest),
                .size = m->size,
                .loaded = m->loaded,
                .in_flight = m->in_flight,
                .queued = m->queued,
                .tokens_per_s = m->tokens_per_s,
                .ttft_ms = m->ttft_ms,
            };
            if (!models[i].name || !models[i].key)
                return -1;
            p->in_flight += m->in_flight;
            p->queued += m->queued;
        }
        p->models = models;
        p->n_models = st->n_models;
    }
    if (!p->id || !p->gossip || !p->name || !p->http || !p->ollama_version)
        return -1;
    self->count++;
    return 0;
}

void agpu_view_ref(agpu_view_t *self)
{
    atomic_fetch_add(&self->refs, 1);
}

void agpu_view_unref(agpu_view_t **self_p)
{
    agpu_view_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (atomic_fetch_sub(&self->refs, 1) != 1)
        return;
    while (self->blocks) {
        block_t *next = self->blocks->next;
        free(self->blocks);
        self->blocks = next;
    }
    free(self->peers);
    free(self->self_id);
    free(self);
}

const char *agpu_view_self_id(const agpu_view_t *self)
{
    return self->self_id;
}

size_t agpu_view_count(const agpu_view_t *self)
{
    return self->count;
}

const agpu_view_peer_t *agpu_view_peer(const agpu_view_t *self, size_t i)
{
    return i < self->count ? &self->peers[i] : NULL;
}

const agpu_view_model_t *agpu_view_model(const agpu_view_peer_t *peer, const char *key)
{
    for (size_t i = 0; i < peer->n_models; i++)
        if (strcmp(peer->models[i].key, key) == 0)
            return &peer->models[i];
    return NULL;
}

const char *agpu_view_ollama_name(agpu_ollama_state_t state)
{
    return state == AGPU_OLLAMA_UP ? "up" : state == AGPU_OLLAMA_NONE ? "none" : "down";
}
