/* A snapshot of the mesh: every known node (this one included) as the mesh thread last saw
 * it. Immutable once published and shared by reference, so a request thread reads it without
 * waiting for the mesh thread; the mesh thread builds a new one after every change. */
#ifndef AGPU_VIEW_H
#define AGPU_VIEW_H

#include "agpu_msg.h"
#include "agpu_peer.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum { AGPU_OLLAMA_UP, AGPU_OLLAMA_DOWN, AGPU_OLLAMA_NONE } agpu_ollama_state_t;

typedef struct {
    const char *name; /* as Ollama lists it: the shortest form, "llama3:latest" */
    const char *key;  /* its agpu_name_key, to match a request's model against */
    const char *digest;
    uint64_t size;
    bool loaded;
    uint32_t in_flight, queued;
    double tokens_per_s; /* measured; 0 until then */
    uint32_t ttft_ms;
} agpu_view_model_t;

typedef struct {
    const char *id, *name;
    const char *http;   /* "http://ADDR:PORT" */
    const char *gossip; /* "tcp://ADDR:PORT" */
    bool self;
    agpu_peer_state_t state;
    agpu_ollama_state_t ollama;
    const char *ollama_version;
    bool draining;
    uint32_t capacity, in_flight, queued;
    int64_t last_seen_ms; /* monotonic clock */
    size_t n_models;
    const agpu_view_model_t *models;
} agpu_view_peer_t;

typedef struct agpu_view agpu_view_t;

/* An empty view (one reference) of the mesh seen by self_id. Caller owns it. */
agpu_view_t *agpu_view_new(const char *self_id);

/* Adds a node from its latest STATE (st may be NULL: nothing known yet). Every string is
 * copied. A node whose STATE advertises no slots has no Ollama of its own. Returns 0 or -1. */
int agpu_view_add(agpu_view_t *self, const char *id, const char *gossip, bool is_self,
                  agpu_peer_state_t state, int64_t last_seen_ms, const agpu_msg_state_t *st);

void agpu_view_ref(agpu_view_t *self);
void agpu_view_unref(agpu_view_t **self_p);

const char *agpu_view_self_id(const agpu_view_t *self);
size_t agpu_view_count(const agpu_view_t *self);
const agpu_view_peer_t *agpu_view_peer(const agpu_view_t *self, size_t i);

const char *agpu_view_ollama_name(agpu_ollama_state_t state); /* "up", "down", "none" */

/* The node's entry for a model (key: as agpu_name_key gives it), or NULL. */
const agpu_view_model_t *agpu_view_model(const agpu_view_peer_t *peer, const char *key);

#endif
