/* What this node has sent to each node since that node last told its load: the routing
 * planner adds it to the gossiped load, so that requests sent between two gossip updates are
 * counted at once (an entry node never sends a burst to a node it thinks idle), and a request
 * that finishes frees its slot at once. Shared by every shard; each call takes one lock. */
#ifndef AGPU_LEDGER_H
#define AGPU_LEDGER_H

#include "agpu_view.h"

#include <stdint.h>

/* (node, model) pairs remembered at most; the oldest idle pair makes room for a new one. */
#define AGPU_LEDGER_MAX_ENTRIES 4096

typedef struct agpu_ledger agpu_ledger_t;

agpu_ledger_t *agpu_ledger_new(void);
void agpu_ledger_destroy(agpu_ledger_t **self_p);

/* For every node of view (same index): requests sent there for model_key since the state
 * the view holds of it, minus those that finished since. An entry counted against an older
 * state than the view's restarts from zero: the newer state counts those requests itself. */
void agpu_ledger_pending(agpu_ledger_t *self, const agpu_view_t *view, const char *model_key,
                         int32_t *pending);

/* Each event is tagged with the seq of that node's state in the newest view the caller has:
 * the event happened after that state, so a state newer than it counts the event itself.
 * (A state sent between the event and the view that brings it over counts the event twice
 * for a moment; the node's next state, due at once since its load changed, puts it right.) */

/* One request sent to node node_id for model_key. */
void agpu_ledger_sent(agpu_ledger_t *self, const char *node_id, uint64_t seq,
                      const char *model_key);

/* A request sent there finished (answered, failed or cancelled). */
void agpu_ledger_done(agpu_ledger_t *self, const char *node_id, uint64_t seq,
                      const char *model_key);

#endif
