/* The forwarder: runs upstream transfers inside one shard's event loop, as HTTP/1.1 requests
 * (agpu_h1) over a pool of kept-alive connections that it owns. No libcurl on this path. */
#ifndef AGPU_FORWARD_H
#define AGPU_FORWARD_H

#include "agpu_exchange.h"
#include "agpu_resolver.h"

#include <stdint.h>

typedef struct agpu_forward agpu_forward_t;

/* A forwarder whose sockets are watched by the shard's epoll instance epoll_fd; their
 * epoll data is the socket number itself (always < AGPU_FORWARD_TAG_LIMIT). Host names are
 * looked up by resolver: when it wakes the shard, run the forwarder. Caller owns it. */
#define AGPU_FORWARD_TAG_LIMIT (1ULL << 32)
agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms, int epoll_fd,
                                 agpu_resolver_t *resolver);

/* Finishes every transfer with an error, closes every connection and frees everything. */
void agpu_forward_destroy(agpu_forward_t **self_p);

/* Hands a new exchange over (the forwarder takes its own reference), or says that one it
 * runs has changed (room in a pipe, cancelled). Called on the shard's thread; acted on in
 * agpu_forward_run, or at once by agpu_forward_send_now. */
void agpu_forward_kick(void *self, agpu_exchange_t *ex);

/* Acts on the kicks at once: the front door's handler calls it when a request is complete,
 * so the request goes upstream before libmicrohttpd suspends the client and ends its turn
 * (the upstream works meanwhile). Fronts are still woken by agpu_forward_run only: a
 * handler is never re-entered. */
void agpu_forward_send_now(agpu_forward_t *self);

/* epoll reported these events on one of the forwarder's sockets. */
void agpu_forward_socket_ready(agpu_forward_t *self, int fd, uint32_t events);

/* Milliseconds until agpu_forward_run is due for the next connect timeout; -1: none. */
long agpu_forward_timeout_ms(agpu_forward_t *self);

/* Does what is due: kicks (new requests are sent at once), connect timeouts, waking fronts. */
void agpu_forward_run(agpu_forward_t *self);

/* Whether kicks or fronts wait to be handled (run again before sleeping). */
bool agpu_forward_busy(agpu_forward_t *self);

/* Whether nothing is under way: no transfer runs (so no upstream socket but idle ones can
 * have news) and nothing waits to be handled. */
bool agpu_forward_quiet(agpu_forward_t *self);

/* Finishes every running exchange with an error; from now on each kick finishes its
 * exchange at once. */
void agpu_forward_stop(agpu_forward_t *self);

#endif
