/* Choosing the node that serves a request: tiers, scores and the two random choices of
 * agpu_route.h, over one mesh snapshot. Pure: no clock, no I/O, no allocation. */
#include "agpu_route.h"

#include <assert.h>
#include <math.h>
#include <string.h>

/* Measured speeds are clamped to this range: a peer may claim anything, and these bounds keep
 * every score and the sum of draw weights finite and above zero (no GPU generates a million
 * tokens/s for one request, none is slower than one token in 1000 s). */
#define SPEED_MIN 0.001
#define SPEED_MAX 1e6

/* The speed when no node has measured the model yet: every node counts as equally fast. */
#define SPEED_UNKNOWN 1.0

static bool is_measured(double tokens_per_s)
{
    return tokens_per_s > 0 && isfinite(tokens_per_s);
}

static double clamp_speed(double tokens_per_s)
{
    return tokens_per_s < SPEED_MIN   ? SPEED_MIN
           : tokens_per_s > SPEED_MAX ? SPEED_MAX
                                      : tokens_per_s;
}

/* Its last advertised count plus what this node has sent (or seen finish) there since. */
static uint32_t load_with_pending(uint32_t advertised, const int32_t *pending, size_t i)
{
    int64_t load = (int64_t)advertised + (pending ? pending[i] : 0);
    return load < 0 ? 0 : load > UINT32_MAX ? UINT32_MAX : (uint32_t)load;
}

/* Why a node cannot take the request at all, or NULL if it can (given it has the model).
 * The most basic reason first, so `agpu route` shows what to fix. */
static const char *out_reason(const agpu_view_peer_t *p, const agpu_view_model_t *m)
{
    if (p->state == AGPU_PEER_DEAD)
        return "dead";
    if (p->state == AGPU_PEER_LEFT)
        return "left";
    if (p->state == AGPU_PEER_SUSPECT)
        return "suspect";
    if (p->ollama == AGPU_OLLAMA_NONE)
        return "no ollama";
    if (p->ollama == AGPU_OLLAMA_DOWN)
        return "ollama down";
    if (p->capacity == 0)
        return "no ollama"; /* a node that advertises no slots runs no Ollama of its own */
    if (!m)
        return "model not installed";
    if (p->draining)
        return "draining";
    return NULL;
}

static agpu_route_tier_t slot_tier(bool loaded, uint32_t load, uint32_t capacity)
{
    if (load < capacity)
        return loaded ? AGPU_TIER_WARM_FREE : AGPU_TIER_COLD_FREE;
    return loaded ? AGPU_TIER_WARM_BUSY : AGPU_TIER_COLD_BUSY;
}

static const char *tier_why(agpu_route_tier_t tier)
{
    switch (tier) {
    case AGPU_TIER_WARM_FREE:
        return "loaded, free slot";
    case AGPU_TIER_COLD_FREE:
        return "installed, room to load it";
    case AGPU_TIER_WARM_BUSY:
        return "loaded, all slots busy";
    case AGPU_TIER_COLD_BUSY:
        return "installed, node full";
    default:
        return "out";
    }
}

static bool is_loaded(agpu_route_tier_t tier)
{
    return tier == AGPU_TIER_WARM_FREE || tier == AGPU_TIER_WARM_BUSY;
}

/* A holder that answers /api/show only as a last resort: it takes no new work, or its front
 * door may be failing. */
static bool is_reluctant(const agpu_view_peer_t *p)
{
    return p->draining || p->state == AGPU_PEER_SUSPECT;
}

/* Can this node answer a HOLDER request? Alive or suspect, Ollama up, model installed;
 * draining allowed (/api/show is read-only), though ordered last. */
static bool holder_usable(const agpu_view_peer_t *p, const agpu_view_model_t *m)
{
    return m && (p->state == AGPU_PEER_ALIVE || p->state == AGPU_PEER_SUSPECT) &&
           p->ollama == AGPU_OLLAMA_UP && p->capacity > 0;
}

/* ---- ordering ---- */

typedef struct {
    const agpu_view_t *view;
    agpu_route_kind_t kind;
} order_t;

static int cmp_bool_first(bool a, bool b)
{
    return a == b ? 0 : a ? -1 : 1;
}

static int cmp_double(double a, double b)
{
    return a < b ? -1 : a > b ? 1 : 0;
}

/* <0 when a comes before b. A total order (the view index breaks the last tie), so the plan
 * does not depend on the sort algorithm. */
static int compare(const order_t *o, const agpu_route_candidate_t *a,
                   const agpu_route_candidate_t *b)
{
    const agpu_view_peer_t *pa = agpu_view_peer(o->view, a->node);
    const agpu_view_peer_t *pb = agpu_view_peer(o->view, b->node);
    int c;
    if (o->kind == AGPU_ROUTE_HOLDER) {
        if ((c = cmp_bool_first(!is_reluctant(pa), !is_reluctant(pb))) != 0 ||
            (c = cmp_bool_first(pa->self, pb->self)) != 0 ||
            (c = cmp_bool_first(is_loaded(a->tier), is_loaded(b->tier))) != 0 ||
            (c = cmp_double(a->score, b->score)) != 0)
            return c;
    } else {
        if ((c = (int)a->tier - (int)b->tier) != 0 || (c = cmp_double(a->score, b->score)) != 0 ||
            (c = cmp_bool_first(pa->self, pb->self)) != 0)
            return c;
    }
    if ((c = strcmp(pa->id, pb->id)) != 0)
        return c;
    return a->node < b->node ? -1 : a->node > b->node;
}

static void swap(agpu_route_candidate_t *a, agpu_route_candidate_t *b)
{
    agpu_route_candidate_t t = *a;
    *a = *b;
    *b = t;
}

static void sift_down(const order_t *o, agpu_route_candidate_t *c, size_t root, size_t n)
{
    for (;;) {
        size_t child = 2 * root + 1;
        if (child >= n)
            return;
        if (child + 1 < n && compare(o, &c[child], &c[child + 1]) < 0)
            child++;
        if (compare(o, &c[root], &c[child]) >= 0)
            return;
        swap(&c[root], &c[child]);
        root = child;
    }
}

/* Heapsort: in place (no allocation), O(n log n) even when every node of a large mesh holds
 * the model; qsort would need the view in a global to compare. */
static void sort_candidates(const order_t *o, agpu_route_candidate_t *c, size_t n)
{
    for (size_t i = n / 2; i-- > 0;)
        sift_down(o, c, i, n);
    for (size_t end = n; end > 1; end--) {
        swap(&c[0], &c[end - 1]);
        sift_down(o, c, 0, end - 1);
    }
}

/* ---- the two random choices ---- */

/* One of c[0..n), drawn with probability proportional to capacity x speed; u in [0, 1). */
static size_t draw(const agpu_route_candidate_t *c, size_t n, double total, double u)
{
    double target = u * total, sum = 0;
    for (size_t i = 0; i < n; i++) {
        sum += c[i].capacity * c[i].speed;
        if (target < sum)
            return i;
    }
    return n - 1; /* rounding left target at the very top */
}

/* Puts first the better of two candidates of the best tier drawn at random, the others
 * keeping their order. Better: the lower score; on a tie self, else the first drawn. (Not
 * the earlier in sorted order: that is the lower id, which would win 3 ties in 4 at every
 * entry node at once, the very herding the draw is there to prevent.) Self, when it scores
 * no worse than that choice, goes first instead: no network hop, and every entry node has a
 * different self, so preferring it herds no one. */
static void two_choices(const agpu_view_t *view, agpu_route_candidate_t *c, size_t n,
                        uint64_t random)
{
    size_t k = 1;
    while (k < n && c[k].tier == c[0].tier)
        k++;
    if (k < 2)
        return;
    double total = 0;
    for (size_t i = 0; i < k; i++)
        total += c[i].capacity * c[i].speed;
    size_t a = draw(c, k, total, (double)(uint32_t)(random >> 32) * 0x1p-32);
    size_t b = draw(c, k, total, (double)(uint32_t)random * 0x1p-32);
    size_t win = a;
    if (c[b].score < c[a].score ||
        (c[b].score == c[a].score && agpu_view_peer(view, c[b].node)->self &&
         !agpu_view_peer(view, c[a].node)->self))
        win = b;
    for (size_t i = 0; i < k; i++)
        if (agpu_view_peer(view, c[i].node)->self && c[i].score <= c[win].score)
            win = i;
    agpu_route_candidate_t chosen = c[win];
    memmove(&c[1], &c[0], win * sizeof *c);
    c[0] = chosen;
}

/* ---- the plan ---- */

void agpu_route_plan(const agpu_view_t *view, const agpu_route_input_t *input,
                     agpu_route_candidate_t *out, agpu_route_plan_t *plan)
{
    assert(view && input && input->model_key && plan);
    size_t n = agpu_view_count(view);
    assert(out || n == 0);

    /* Pass 1: each node's model entry, tier and load; usable ones fill out[] from the front,
     * the others from the back. The speed is settled in pass 2, once the mean is known. */
    size_t n_usable = 0, back = n, n_holders = 0, n_measured = 0;
    double measured_sum = 0;
    for (size_t i = 0; i < n; i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        const agpu_view_model_t *m = agpu_view_model(p, input->model_key);
        if (m && (p->state == AGPU_PEER_ALIVE || p->state == AGPU_PEER_SUSPECT))
            n_holders++;
        if (m && is_measured(m->tokens_per_s)) {
            measured_sum += clamp_speed(m->tokens_per_s);
            n_measured++;
        }
        uint32_t load =
            load_with_pending(m && m->loaded ? m->in_flight : p->in_flight, input->pending, i);
        agpu_route_tier_t tier = slot_tier(m && m->loaded, load, p->capacity);
        const char *why = out_reason(p, m);
        bool usable = input->kind == AGPU_ROUTE_HOLDER ? holder_usable(p, m) : why == NULL;
        if (input->kind == AGPU_ROUTE_HOLDER && usable)
            why = p->draining ? "draining" : p->state == AGPU_PEER_SUSPECT ? "suspect" : NULL;
        if (m && !m->loaded && load_with_pending(m->in_flight, input->pending, i) > 0) {
            /* requests for it there and not loaded: it is loading. A replica on its way counts
             * as warm and busy: no second cold load, and no one else waits behind the load */
            load = load_with_pending(m->in_flight, input->pending, i);
            tier = AGPU_TIER_WARM_BUSY;
            why = why ? why : "loading";
        }
        agpu_route_candidate_t *c = usable ? &out[n_usable++] : &out[--back];
        *c = (agpu_route_candidate_t){
            .node = i,
            .tier = usable ? tier : AGPU_TIER_OUT,
            .load = load,
            .capacity = p->capacity,
            .speed = m && is_measured(m->tokens_per_s) ? clamp_speed(m->tokens_per_s) : 0,
            .measured = m && is_measured(m->tokens_per_s),
            .why = why ? why : tier_why(tier),
        };
    }
    /* With a replica warm (or loading) anywhere, a cold load goes only to an idle node: it
     * may evict the model that node has loaded, which must not be one in use. */
    bool warm_exists = false;
    for (size_t i = 0; i < n_usable && !warm_exists; i++)
        warm_exists = is_loaded(out[i].tier);
    for (size_t i = 0; warm_exists && i < n_usable; i++)
        if (out[i].tier == AGPU_TIER_COLD_FREE && out[i].load > 0) {
            out[i].tier = AGPU_TIER_COLD_BUSY;
            out[i].why = "installed, node busy";
        }

    /* the back half was filled last node first: put it back in view order */
    for (size_t lo = n_usable, hi = n; lo + 1 < hi; lo++, hi--)
        swap(&out[lo], &out[hi - 1]);

    /* Pass 2: speeds not measured on their node take the mesh's mean for the model. */
    double mean = n_measured ? measured_sum / (double)n_measured : SPEED_UNKNOWN;
    for (size_t i = 0; i < n; i++) {
        agpu_route_candidate_t *c = &out[i];
        if (!c->measured)
            c->speed = mean;
        c->score = c->capacity ? (c->load + 1.0) / (c->capacity * c->speed) : 0;
    }

    order_t order = {view, input->kind};
    sort_candidates(&order, out, n_usable);

    agpu_route_verdict_t verdict;
    if (n_holders == 0) {
        verdict = AGPU_ROUTE_NONE;
    } else if (input->kind == AGPU_ROUTE_HOLDER) {
        verdict = n_usable ? AGPU_ROUTE_GO : AGPU_ROUTE_NONE;
    } else if (n_usable == 0) {
        verdict = AGPU_ROUTE_WAIT;
    } else if (out[0].tier == AGPU_TIER_WARM_FREE) {
        verdict = AGPU_ROUTE_GO;
    } else if (out[0].tier == AGPU_TIER_COLD_FREE) {
        verdict = !warm_exists || input->allow_cold ? AGPU_ROUTE_GO : AGPU_ROUTE_WAIT;
    } else {
        verdict = AGPU_ROUTE_WAIT;
    }
    if (verdict == AGPU_ROUTE_NONE)
        n_usable = 0; /* cannot happen (a usable node is a holder), but the header promises it */
    if (verdict == AGPU_ROUTE_GO && input->kind == AGPU_ROUTE_SLOT)
        two_choices(view, out, n_usable, input->random);

    *plan = (agpu_route_plan_t){.verdict = verdict, .n_usable = n_usable, .count = n};
}

const char *agpu_route_tier_name(agpu_route_tier_t tier)
{
    switch (tier) {
    case AGPU_TIER_WARM_FREE:
        return "warm-free";
    case AGPU_TIER_COLD_FREE:
        return "cold-free";
    case AGPU_TIER_WARM_BUSY:
        return "warm-busy";
    case AGPU_TIER_COLD_BUSY:
        return "cold-busy";
    case AGPU_TIER_OUT:
        return "out";
    }
    return "unknown";
}

const char *agpu_route_verdict_name(agpu_route_verdict_t verdict)
{
    switch (verdict) {
    case AGPU_ROUTE_GO:
        return "go";
    case AGPU_ROUTE_WAIT:
        return "wait";
    case AGPU_ROUTE_NONE:
        return "none";
    }
    return "unknown";
}
