/* The mesh: this node's view of every other node, kept by one actor thread that owns the
 * gossip sockets, the peer table and every timer. Other threads talk to it through the
 * functions below and read its published snapshot (agpu_view) without waiting for it. */
#ifndef AGPU_MESH_H
#define AGPU_MESH_H

#include "agpu_msg.h"
#include "agpu_peer.h"
#include "agpu_view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agpu_mesh agpu_mesh_t;

typedef struct {
    const char *id;              /* this node's stable id */
    const char *name;
    uint64_t incarnation;        /* grows on every start */
    const char *bind;            /* "tcp://HOST:PORT" the gossip socket binds */
    const char *gossip_endpoint; /* "tcp://ADDR:PORT" peers reach it on */
    const char *http_endpoint;   /* "http://ADDR:PORT" peers forward to */
    const char *const *seeds;    /* "tcp://HOST:PORT" of seed nodes */
    size_t n_seeds;
    uint32_t slots;              /* requests the local Ollama runs at once; 0: no Ollama */
    agpu_peer_timeouts_t timeouts;
} agpu_mesh_options_t;

/* Binds the gossip socket and starts the actor. NULL with the reason in error on failure.
 * Caller owns the result. */
agpu_mesh_t *agpu_mesh_new(const agpu_mesh_options_t *options, char *error, size_t error_size);

/* Says goodbye to every peer (so they drop this node at once) and stops the actor. The
 * other functions stay safe to call (the view stays as it was) until destroy. Idempotent. */
void agpu_mesh_leave(agpu_mesh_t *self);

/* Leaves if still in, and frees everything. */
void agpu_mesh_destroy(agpu_mesh_t **self_p);

/* A node was seen at this gossip endpoint (mDNS, a seed): connect to it. Any thread. */
void agpu_mesh_add_endpoint(agpu_mesh_t *self, const char *gossip_endpoint);

/* Draining: this node takes no new work (peers stop sending it, its own clients' requests go
 * to others) and finishes what it has; peers hear of it at once. Any thread. */
void agpu_mesh_set_draining(agpu_mesh_t *self, bool draining);
bool agpu_mesh_draining(agpu_mesh_t *self);

/* This node failed to reach node_id: it is suspect here at once, before gossip says so (its
 * next message makes it alive again). Any thread. */
void agpu_mesh_suspect(agpu_mesh_t *self, const char *node_id);

/* What the local Ollama answered last (models: its installed models, loaded flagged).
 * Strings and the array are copied. Any thread. */
void agpu_mesh_set_local(agpu_mesh_t *self, bool ollama_up, const char *ollama_version,
                         const agpu_msg_model_t *models, size_t n_models);

/* One request more (+1) or fewer (-1) in flight through this node's Ollama for a model (its
 * agpu_name_key). Any thread; peers hear of it within the debounce delay. */
void agpu_mesh_count_request(agpu_mesh_t *self, const char *model_key, int delta);

/* Requests in flight through this node's Ollama for a model, now (not as last gossiped). */
uint32_t agpu_mesh_in_flight(agpu_mesh_t *self, const char *model_key);

/* A measured answer of the local Ollama for a model (its agpu_name_key): time to first token
 * and generation speed, folded into a moving average that peers are told. Any thread. */
void agpu_mesh_record_speed(agpu_mesh_t *self, const char *model_key, uint32_t ttft_ms,
                            double tokens_per_s);

/* The current snapshot, with a reference the caller drops with agpu_view_unref. */
agpu_view_t *agpu_mesh_view(agpu_mesh_t *self);

/* Gossip messages dropped as undecodable since start (for tests and metrics). */
uint64_t agpu_mesh_dropped(agpu_mesh_t *self);

#endif
