/* The front door: serves the Ollama API on the node's port with libmicrohttpd (the only module
 * that includes it) and hands each request to the forwarder. */
#ifndef AGPU_HTTP_H
#define AGPU_HTTP_H

#include "agpu_forward.h"

#include <stdint.h>

typedef struct agpu_http agpu_http_t;

typedef struct {
    const char *listen_host; /* numeric address or name to bind */
    uint16_t listen_port;
    unsigned threads;         /* event-loop threads */
    unsigned max_connections;
    uint64_t max_body;        /* request body bytes; more gets 413 */
    const char *node_name;    /* sent as X-Agpu-Node */
    const char *upstream;     /* base URL of this node's Ollama; NULL: none */
    const char *origins;      /* extra CORS origins, comma-separated (OLLAMA_ORIGINS); may be NULL */
} agpu_http_options_t;

/* Binds and starts serving. On failure returns NULL and says why in error. Caller owns it. */
agpu_http_t *agpu_http_new(const agpu_http_options_t *options, agpu_forward_t *forward,
                           char *error, size_t error_size);

/* Stops accepting; requests already taken are still answered (new ones on open
 * connections get 503). */
void agpu_http_quiesce(agpu_http_t *self);

/* Closes every connection. Every exchange must be finished first (stop the forwarder). */
void agpu_http_destroy(agpu_http_t **self_p);

#endif
