/* A mesh-wide list request: the same request sent to several nodes at once, each answer read
 * whole, then merged into one (agpu_merge). The exchanges are the front door's; this module
 * only reads them, without ever suspending the client itself (its owner does, once a pass). */
#ifndef AGPU_GATHER_H
#define AGPU_GATHER_H

#include "agpu_exchange.h"
#include "agpu_merge.h"

#include <stdbool.h>
#include <stddef.h>

typedef struct agpu_gather agpu_gather_t;

agpu_gather_t *agpu_gather_new(agpu_merge_kind_t kind);

/* Cancels what is still running and frees everything. */
void agpu_gather_destroy(agpu_gather_t **self_p);

/* One node's exchange (the gather takes the caller's reference). Returns 0, or -1 out of
 * memory (the exchange is then cancelled and released). */
int agpu_gather_add(agpu_gather_t *self, const char *node_name, agpu_exchange_t *ex);

/* Reads whatever has arrived. true once every answer is in (or failed). */
bool agpu_gather_step(agpu_gather_t *self);

/* Gives up on the answers still running (a deadline passed). */
void agpu_gather_cancel_rest(agpu_gather_t *self);

/* The merged answer of the nodes that answered 200 (caller frees; *len its length), or NULL
 * when none did, with the reason in error. */
char *agpu_gather_result(agpu_gather_t *self, size_t *len, char *error, size_t error_size);

#endif
