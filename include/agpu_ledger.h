/* What this node has sent to each node, and seen finish there, that the node's last gossiped
 * state cannot count yet: the routing planner adds it to the gossiped load, so requests sent
 * between two gossip updates count at once (an entry node never sends a burst to a node it
 * thinks idle), and a request that finishes frees its slot at once.
 *
 * Events are kept with the time they happened. A state received at time T counts every
 * request sent before T - AGPU_LEDGER_TRANSIT_MS (it reached the node before the node wrote
 * the state) and every finish before T; later ones are this ledger's to add. Shared by every
 * shard; each call takes one lock. */
#ifndef AGPU_LEDGER_H
#define AGPU_LEDGER_H

#include "agpu_view.h"

#include <stdint.h>

/* (node, model) pairs remembered at most; a pair with nothing recent makes room. */
#define AGPU_LEDGER_MAX_ENTRIES 4096

/* Recent events kept per pair: more than a node gets between two of its states (it tells a
 * change within 50 ms) at any rate an Ollama serves. */
#define AGPU_LEDGER_EVENTS 128

/* A request takes at most this long to reach its node and be counted there, and that node's
 * state to come back: a request sent this close before a state is counted by this ledger too
 * (counting it twice for a moment errs on the side of a busy node, and lasts only until the
 * node's next state, due within its 50 ms debounce under load). 1 ms is typical on a LAN;
 * on a loaded host (two cores, sanitizers) 10 ms proved too short. */
#define AGPU_LEDGER_TRANSIT_MS 50

typedef struct agpu_ledger agpu_ledger_t;

agpu_ledger_t *agpu_ledger_new(void);
void agpu_ledger_destroy(agpu_ledger_t **self_p);

/* For every node of view (same index): requests sent there for model_key that its state in
 * the view does not count, minus those that finished since (so possibly negative). A node's
 * state time is its last_seen_ms. */
void agpu_ledger_pending(agpu_ledger_t *self, const agpu_view_t *view, const char *model_key,
                         int32_t *pending);

/* One request sent to node node_id for model_key at now_ms (the monotonic clock, as the
 * view's last_seen_ms); one such request finished (answered, failed or cancelled). */
void agpu_ledger_sent(agpu_ledger_t *self, const char *node_id, const char *model_key,
                      int64_t now_ms);
void agpu_ledger_done(agpu_ledger_t *self, const char *node_id, const char *model_key,
                      int64_t now_ms);

#endif
