/* The front door: serves the Ollama API on the node's port with libmicrohttpd (the only module
 * that includes it) and hands each request to the forwarder. */
#ifndef AGPU_HTTP_H
#define AGPU_HTTP_H

#include "agpu_forward.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct agpu_http agpu_http_t;

typedef struct {
    unsigned max_connections; /* per front door */
    uint64_t max_body;        /* request body bytes; more gets 413 */
    const char *node_name;    /* sent as X-Agpu-Node */
    const char *upstream;     /* base URL of this node's Ollama; NULL: none */
    const char *origins;      /* extra CORS origins, comma-separated (OLLAMA_ORIGINS); may be NULL */
    struct agpu_mesh *mesh;   /* the mesh: its view answers /agpu/v1/peers; may be NULL */
    struct agpu_watch *watch; /* kicked after requests that change models; may be NULL */
    struct agpu_ledger *ledger; /* what this node sent where (shared by shards); may be NULL */
    struct agpu_queue *queue;   /* the mesh queue (shared by shards); may be NULL */
    unsigned queue_timeout_ms;  /* longest wait in the queue */
    unsigned cold_after_ms;     /* wait for a warm slot before a cold load elsewhere */
    unsigned first_byte_timeout_ms; /* a peer silent this long is given up; 0: never */
} agpu_http_options_t;

/* The listening socket every shard's front door accepts from: bound, listening, non-blocking.
 * Returns it, or -1 with the reason in error. */
int agpu_http_listen(const char *host, uint16_t port, char *error, size_t error_size);

/* A front door on listen_fd (shared, not owned) whose requests go to forward. It runs in
 * the caller's event loop: watch agpu_http_epoll_fd() for input, and call agpu_http_run()
 * when it is readable or agpu_http_timeout_ms() has passed. wake_fd (an eventfd the loop
 * watches) is written when another thread needs this loop to call agpu_http_tend().
 * Caller owns the result. */
agpu_http_t *agpu_http_new(const agpu_http_options_t *options, int listen_fd, int wake_fd,
                           agpu_forward_t *forward, char *error, size_t error_size);
int agpu_http_epoll_fd(agpu_http_t *self);
long agpu_http_timeout_ms(agpu_http_t *self); /* -1: none */
void agpu_http_run(agpu_http_t *self);
/* A connection was resumed since the last run: run again before waiting for input. */
bool agpu_http_pending(agpu_http_t *self);

/* Runs like agpu_http_run, but first waits up to max_ms inside libmicrohttpd's own epoll set
 * for a client: for a loop that knows only a client can bring it work (see agpu_shard.c). */
void agpu_http_wait(agpu_http_t *self, long max_ms);
/* Whether nothing waits here for anything but a client: no request waits (in the mesh
 * queue, on a peer, on a mesh-wide list) and no connection was resumed. */
bool agpu_http_quiet(agpu_http_t *self);
/* How many requests this front door has begun: a measure of activity. */
uint64_t agpu_http_requests(agpu_http_t *self);

/* Looks after the requests that wait (in the mesh queue, on a peer's first byte, on a
 * mesh-wide list) when they are due: call it every turn of the loop; it is cheap when
 * nothing is due. agpu_http_tend_timeout_ms: when it is next due (-1: nothing waits). */
void agpu_http_tend(agpu_http_t *self);
long agpu_http_tend_timeout_ms(agpu_http_t *self);

/* Stops accepting; requests on open connections get 503, and so do those waiting in the mesh
 * queue. */
void agpu_http_quiesce(agpu_http_t *self);

/* Closes every connection. Every exchange must be finished first (stop the forwarder). */
void agpu_http_destroy(agpu_http_t **self_p);

#endif
