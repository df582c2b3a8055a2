/* The forwarder: runs upstream transfers with libcurl's multi socket interface inside one
 * shard's event loop, over kept-alive connections. The only module that includes libcurl. */
#ifndef AGPU_FORWARD_H
#define AGPU_FORWARD_H

#include "agpu_exchange.h"

#include <stdint.h>

typedef struct agpu_forward agpu_forward_t;

/* A forwarder whose sockets are watched by the shard's epoll instance epoll_fd; their
 * epoll data is the socket number itself (always < AGPU_FORWARD_TAG_LIMIT). Caller owns it. */
#define AGPU_FORWARD_TAG_LIMIT (1ULL << 32)
agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms, int epoll_fd);

/* Finishes every transfer with an error and frees everything. */
void agpu_forward_destroy(agpu_forward_t **self_p);

/* Hands a new exchange over (the forwarder takes its own reference), or says that one it
 * runs has changed (room in a pipe, cancelled). Called on the shard's thread; acted on in
 * agpu_forward_run, so a libcurl call never nests inside a libmicrohttpd callback. */
void agpu_forward_kick(void *self, agpu_exchange_t *ex);

/* epoll reported these events on one of the forwarder's sockets. */
void agpu_forward_socket_ready(agpu_forward_t *self, int fd, uint32_t events);

/* Milliseconds until agpu_forward_run is due for libcurl's timers; -1: no timer. */
long agpu_forward_timeout_ms(agpu_forward_t *self);

/* Does what is due: kicks, libcurl timers, finished transfers, waking fronts. */
void agpu_forward_run(agpu_forward_t *self);

/* Whether kicks or fronts wait to be handled (run again before sleeping). */
bool agpu_forward_busy(agpu_forward_t *self);

/* Finishes every running exchange with an error; from now on each kick finishes its
 * exchange at once. */
void agpu_forward_stop(agpu_forward_t *self);

#endif
