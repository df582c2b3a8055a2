/* The forwarder: one thread that runs every upstream transfer with libcurl's multi interface,
 * over kept-alive connections. The only module that includes libcurl. */
#ifndef AGPU_FORWARD_H
#define AGPU_FORWARD_H

#include "agpu_exchange.h"

typedef struct agpu_forward agpu_forward_t;

/* Starts the forwarder thread. Caller owns the result. */
agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms);

/* Stops the thread; every exchange still running is finished with an error, and so is every
 * exchange kicked from now on. Idempotent. */
void agpu_forward_stop(agpu_forward_t *self);
void agpu_forward_destroy(agpu_forward_t **self_p);

/* Hands a new exchange over (the forwarder takes its own reference), or tells the forwarder
 * that an exchange it runs changed (room in a pipe, cancelled). Any thread; never blocks. */
void agpu_forward_kick(void *self, agpu_exchange_t *ex);

#endif
