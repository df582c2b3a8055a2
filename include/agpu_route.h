/* Choosing the node that serves a request: a pure function of the request, a snapshot of the
 * mesh and what this node has sent since that snapshot, so that it is tested table by table.
 *
 * The rules, in order:
 *   1. Only nodes that are alive, not draining, whose Ollama is up and that have the model
 *      installed (by Ollama's name rules: the view's names and the request's key are compared
 *      as agpu_name_key gives them) are candidates.
 *   2. A node that has the model loaded and a free slot ("warm, free") beats everything else:
 *      no cold load happens while a warm replica has a free slot.
 *   3. Then a node that has it installed, not loaded, and room for one more request ("cold,
 *      free"), but only when no candidate has the model loaded at all, or when the request has
 *      waited long enough for a warm slot (allow_cold). With a replica loaded somewhere, only
 *      an idle node has room (a load may evict the model it has, which must not be in use).
 *      A node with requests for the model that does not have it loaded is loading it: it
 *      counts as warm and busy, so a model is loaded on one more node at a time.
 *   4. Otherwise the request waits (the mesh queue) for a slot to free.
 *   Within a tier the score is the expected relative wait, (load + 1) / (capacity x speed):
 *   least loaded relative to capacity, weighted by measured speed, so a node twice as fast
 *   takes about twice the work. Self wins ties (no network hop).
 *   Herding: the first choice is the better of two nodes drawn at random (with replacement,
 *   each drawn with probability proportional to capacity x speed) from the best tier, so
 *   entry nodes that share one snapshot do not all pick the same node; the load they add
 *   between gossip updates is in `pending`.
 */
#ifndef AGPU_ROUTE_H
#define AGPU_ROUTE_H

#include "agpu_view.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AGPU_ROUTE_SLOT,   /* generation, embeddings: the request takes one of the model's slots */
    AGPU_ROUTE_HOLDER, /* /api/show, /v1/models/{m}: any node that has the model can answer */
} agpu_route_kind_t;

typedef struct {
    const char *model_key;  /* agpu_name_key of the model the request names */
    agpu_route_kind_t kind;
    bool allow_cold;        /* may load the model cold though a warm replica is busy */
    const int32_t *pending; /* per view node (same index): requests this node sent there (+)
                               or saw finish there (-) since that node's last state; NULL: 0 */
    uint64_t random;        /* entropy for the two random choices */
} agpu_route_input_t;

/* Where a node stands for this request, best first. */
typedef enum {
    AGPU_TIER_WARM_FREE, /* loaded, a free slot */
    AGPU_TIER_COLD_FREE, /* installed, not loaded, room for one more request (idle, when a
                            replica is loaded elsewhere) */
    AGPU_TIER_WARM_BUSY, /* loaded, every slot taken (Ollama would queue it); or loading */
    AGPU_TIER_COLD_BUSY, /* installed, not loaded, node full */
    AGPU_TIER_OUT,       /* not a candidate: `why` says why */
} agpu_route_tier_t;

typedef struct {
    size_t node;            /* index in the view */
    agpu_route_tier_t tier;
    uint32_t load;          /* requests in flight there for the model (loaded) or in all
                               (cold): its last state plus pending, never below 0 */
    uint32_t capacity;      /* its slots */
    double speed;           /* tokens/s the score used: measured, else the mesh's mean for
                               the model, else 1 */
    bool measured;          /* speed was measured on that node */
    double score;           /* (load + 1) / (capacity x speed): lower is better */
    const char *why;        /* a short static phrase: "loaded, free slot", "dead", ... */
} agpu_route_candidate_t;

typedef enum {
    AGPU_ROUTE_GO,   /* send to candidates[0]; on failure, the next usable ones in order */
    AGPU_ROUTE_WAIT, /* holders exist but none may take it now: queue it */
    AGPU_ROUTE_NONE, /* no alive or suspect node has the model installed: 404 */
} agpu_route_verdict_t;

typedef struct {
    agpu_route_verdict_t verdict;
    size_t n_usable; /* candidates[0..n_usable): every candidate (tiers WARM_FREE..COLD_BUSY),
                        the choice first, then tier by tier, best score first: the failover
                        order. 0 unless verdict is GO or WAIT. */
    size_t count;    /* candidates[0..count): every node of the view, the rest (TIER_OUT) after
                        the usable ones, for `agpu route` */
} agpu_route_plan_t;

/* Plans a request over view. out must have room for agpu_view_count(view) candidates.
 * For AGPU_ROUTE_HOLDER the slots do not matter: every node that has the model is usable,
 * self first, then loaded before not, then by score, and the verdict is GO or NONE. */
void agpu_route_plan(const agpu_view_t *view, const agpu_route_input_t *input,
                     agpu_route_candidate_t *out, agpu_route_plan_t *plan);

const char *agpu_route_tier_name(agpu_route_tier_t tier); /* "warm-free", ..., "out" */
const char *agpu_route_verdict_name(agpu_route_verdict_t verdict); /* "go", "wait", "none" */

#endif
