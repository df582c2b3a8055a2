/* Where a request goes: its targets (the router's plan, the local Ollama, or the node
 * X-Agpu-Target names), its attempts one target at a time with failover before the client has
 * seen a byte, the mesh queue it waits in while every slot is busy, and mesh-wide lists. */
#include "agpu_http_private.h"

#include "agpu_json.h"
#include "agpu_ledger.h"
#include "agpu_log.h"
#include "agpu_mesh.h"
#include "agpu_text.h"
#include "agpu_watch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- targets ---- */

static void set_target(target_t *t, const agpu_view_peer_t *p)
{
    agpu_text_copy(t->id, sizeof t->id, p->id);
    agpu_text_copy(t->name, sizeof t->name, p->name);
    agpu_text_copy(t->http, sizeof t->http, p->http);
    t->self = p->self;
}

void http_set_self_target(agpu_http_t *self, request_t *req)
{
    req->targets[0] = (target_t){.self = true};
    agpu_text_copy(req->targets[0].id, sizeof req->targets[0].id, self->node_id);
    agpu_text_copy(req->targets[0].name, sizeof req->targets[0].name, self->node_name);
    req->n_targets = 1;
    req->attempt = 0;
}

/* A request for this node's Ollama. A node without one (a gateway: --ollama none) hands it to
 * an alive node that has one, so every node serves the whole API; a hop is never handed on.
 * Always the same node while it lives (the lowest id): a blob uploaded and the model created
 * from it must meet on one Ollama. */
void http_set_local_target(agpu_http_t *self, request_t *req)
{
    http_set_self_target(self, req);
    if (self->upstream || req->hop || !self->options.mesh)
        return;
    agpu_view_t *view = agpu_mesh_view(self->options.mesh);
    const agpu_view_peer_t *best = NULL;
    for (size_t i = 0; view && i < agpu_view_count(view); i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        if (!p->self && p->state == AGPU_PEER_ALIVE && p->ollama == AGPU_OLLAMA_UP &&
            (!best || strcmp(p->id, best->id) < 0))
            best = p;
    }
    if (best) {
        set_target(&req->targets[0], best);
        req->mode = MODE_TARGET;
    }
    agpu_view_unref(&view);
}

/* ---- the plan ---- */

uint64_t http_random(agpu_http_t *self)
{
    uint64_t x = self->random; /* xorshift64 */
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    return self->random = x;
}

/* For each node of view: requests for model_key its entry in the view does not count yet
 * (the ledger's, for peers; the live count's, for this node). */
static void pending_of(agpu_http_t *self, const agpu_view_t *view, const char *model_key,
                       int32_t *pending)
{
    size_t n = agpu_view_count(view);
    if (self->options.ledger)
        agpu_ledger_pending(self->options.ledger, view, model_key, pending);
    for (size_t i = 0; i < n && self->options.mesh; i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        if (!p->self)
            continue;
        /* this node's own count is exact and current: the view's may be 100 ms old */
        const agpu_view_model_t *m = agpu_view_model(p, model_key);
        uint32_t seen = m ? m->in_flight : 0;
        pending[i] = (int32_t)agpu_mesh_in_flight(self->options.mesh, model_key) - (int32_t)seen;
    }
}

agpu_route_candidate_t *http_plan(agpu_http_t *self, const request_t *req, const agpu_view_t *view,
                                  bool allow_cold, agpu_route_plan_t *plan)
{
    size_t n = agpu_view_count(view);
    agpu_route_candidate_t *candidates = calloc(n ? n : 1, sizeof *candidates);
    int32_t *pending = calloc(n ? n : 1, sizeof *pending);
    if (candidates && pending) {
        pending_of(self, view, req->model, pending);
        agpu_route_input_t input = {.model_key = req->model,
                                    .kind = req->kind,
                                    .allow_cold = allow_cold,
                                    .pending = pending,
                                    .random = http_random(self)};
        agpu_route_plan(view, &input, candidates, plan);
    } else {
        free(candidates);
        candidates = NULL;
    }
    free(pending);
    return candidates;
}

/* Plans the request over view. Returns the verdict; with GO, its targets are set. */
static agpu_route_verdict_t plan_request(agpu_http_t *self, request_t *req, const agpu_view_t *view,
                                         bool allow_cold)
{
    agpu_route_plan_t plan = {.verdict = AGPU_ROUTE_NONE};
    agpu_route_candidate_t *candidates = http_plan(self, req, view, allow_cold, &plan);
    if (candidates && plan.verdict == AGPU_ROUTE_GO) {
        req->n_targets = 0;
        req->attempt = 0;
        for (size_t i = 0; i < plan.n_usable && req->n_targets < AGPU_ROUTE_MAX_TRIES; i++)
            set_target(&req->targets[req->n_targets++], agpu_view_peer(view, candidates[i].node));
    }
    agpu_route_verdict_t verdict = candidates ? plan.verdict : AGPU_ROUTE_NONE;
    free(candidates);
    return verdict;
}

enum MHD_Result http_answer_busy(struct MHD_Connection *conn, request_t *req, const char *path,
                                 const char *message)
{
    char body[AGPU_ERROR_MAX * 2];
    size_t len = agpu_json_error(body, sizeof body, agpu_json_error_style(path),
                                 MHD_HTTP_SERVICE_UNAVAILABLE, message);
    return http_answer_with(conn, req, MHD_HTTP_SERVICE_UNAVAILABLE,
                            "application/json; charset=utf-8", body, len, "Retry-After",
                            AGPU_RETRY_AFTER_S);
}

/* Decides where a routed request goes: sets its targets (true), or answers it, or puts it
 * in the mesh queue (false, *rc what to return). */
bool http_place(agpu_http_t *self, struct MHD_Connection *conn, request_t *req, const char *path,
                enum MHD_Result *rc)
{
    if (req->mode != MODE_ROUTE) {
        if (req->n_targets == 0)
            http_set_local_target(self, req);
        return true;
    }
    /* first come, first served: with requests for the model already waiting, it waits too */
    bool others_wait = self->options.queue && agpu_queue_length(self->options.queue, req->model);
    agpu_view_t *view = agpu_mesh_view(self->options.mesh);
    agpu_route_verdict_t verdict = !view         ? AGPU_ROUTE_NONE
                                   : others_wait ? AGPU_ROUTE_WAIT
                                                 : plan_request(self, req, view, false);
    agpu_view_unref(&view);
    if (verdict == AGPU_ROUTE_GO)
        return true;
    if (verdict == AGPU_ROUTE_NONE) {
        if (self->upstream) {
            /* the local Ollama answers for itself: with its own 404, or with the model it
             * got since the watcher last looked (a pull, a node just started) */
            http_set_self_target(self, req);
            return true;
        }
        char message[AGPU_MSG_MODEL_NAME_MAX + 32];
        snprintf(message, sizeof message, "model '%s' not found", req->model_asked);
        *rc = http_answer_error(conn, req, path, MHD_HTTP_NOT_FOUND, message);
        return false;
    }
    req->queued = self->options.queue
                      ? agpu_queue_push(self->options.queue, req->model, http_wake_shard, self)
                      : NULL;
    if (!req->queued) {
        bool closed = self->options.queue && agpu_queue_closed(self->options.queue);
        if (!closed)
            agpu_info("%s: every slot busy and its queue full: 503", req->model_asked);
        *rc = http_answer_busy(conn, req, path,
                               closed ? "agpu is shutting down" : QUEUE_FULL_MESSAGE);
        return false;
    }
    agpu_debug("%s: every slot busy: queued", req->model_asked);
    req->queued_ms = agpu_clock_ms();
    http_waiting_add(self, req);
    http_suspend(req);
    *rc = MHD_YES;
    return false;
}

/* ---- attempts: one target tried ---- */

/* The current attempt is over: its counts are given back, and the queue hears of the slot. */
void http_attempt_end(agpu_http_t *self, request_t *req)
{
    bool freed = req->counted || req->ledgered;
    uint32_t ttft_ms;
    double tokens_per_s;
    if (req->counted && req->ex && agpu_exchange_speed(req->ex, &ttft_ms, &tokens_per_s))
        agpu_mesh_record_speed(self->options.mesh, req->model, ttft_ms, tokens_per_s);
    if (req->counted)
        agpu_mesh_count_request(self->options.mesh, req->model, -1);
    if (req->ledgered) {
        agpu_ledger_done(self->options.ledger, req->targets[req->attempt].id, req->model,
                         agpu_clock_ms());
    }
    req->counted = req->ledgered = false;
    req->first_byte_due_ms = 0;
    if (freed && self->options.queue)
        agpu_queue_kick(self->options.queue, req->model);
}

/* The current attempt failed before the client saw a byte: the next target gets it. */
void http_fail_attempt(agpu_http_t *self, request_t *req, const char *why, bool suspect)
{
    const target_t *t = &req->targets[req->attempt];
    agpu_text_copy(req->failure, sizeof req->failure, why);
    if (suspect && !t->self && self->options.mesh)
        agpu_mesh_suspect(self->options.mesh, t->id);
    if (req->attempt + 1 < req->n_targets)
        agpu_info("%s: %s failed (%s): trying %s", req->model_asked[0] ? req->model_asked : "?",
                  t->name, why, req->targets[req->attempt + 1].name);
    if (req->ex) {
        agpu_exchange_cancel(req->ex);
        agpu_exchange_unref(&req->ex);
    }
    http_attempt_end(self, req);
    http_waiting_remove(self, req);
    req->attempt++;
    req->body_ended = false;
}

/* Counts the attempt where the next plan looks: this node's live count for itself, the ledger
 * for a peer. Done when the target is chosen, before anything else is planned, so two choices
 * never take the same free slot. Idempotent until the attempt ends. */
static void account_attempt(agpu_http_t *self, request_t *req)
{
    const target_t *t = &req->targets[req->attempt];
    if (!req->counted && t->self && self->options.mesh && req->model[0]) {
        agpu_mesh_count_request(self->options.mesh, req->model, +1);
        req->counted = true;
    }
    if (!req->ledgered && self->options.ledger && req->model[0] && !t->self &&
        req->mode == MODE_ROUTE) {
        /* a peer's count reaches us by gossip: until then the ledger has it */
        agpu_ledger_sent(self->options.ledger, t->id, req->model, agpu_clock_ms());
        req->ledgered = true;
    }
}

enum MHD_Result http_start_attempt(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                   const char *method, const char *path)
{
    const target_t *t = &req->targets[req->attempt];
    if (t->self && !self->upstream)
        return http_answer_error(conn, req, path, MHD_HTTP_BAD_GATEWAY,
                                 "this node has no Ollama of its own (--ollama none)");
    req->ex = http_start_exchange(self, conn, req, method, path, t->self ? self->upstream : t->http,
                                  !t->self, &http_exchange_ops);
    if (!req->ex)
        return http_answer_error(conn, req, path, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    if (t->self && req->may_change_models && self->options.watch)
        agpu_watch_kick(self->options.watch); /* a load starts now: let peers see it soon */
    account_attempt(self, req);
    if (!t->self) { /* watched until it answers: a peer that dies is given up for the next */
        if (self->options.first_byte_timeout_ms)
            req->first_byte_due_ms = agpu_clock_ms() + self->options.first_byte_timeout_ms;
        http_waiting_add(self, req);
    }
    return MHD_YES;
}

/* Whether an answer says the node could not take the request (nothing was generated), so the
 * next node may: 502 (its Ollama is down) and 503 (busy, or draining). */
bool http_refused(int status)
{
    return status == MHD_HTTP_BAD_GATEWAY || status == MHD_HTTP_SERVICE_UNAVAILABLE;
}

/* ---- mesh-wide lists ---- */

enum MHD_Result http_begin_gather(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                  const char *method, const char *path, agpu_merge_kind_t kind)
{
    agpu_view_t *view = agpu_mesh_view(self->options.mesh);
    size_t others = 0;
    for (size_t i = 0; view && i < agpu_view_count(view); i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        others += !p->self && p->state == AGPU_PEER_ALIVE && p->ollama == AGPU_OLLAMA_UP;
    }
    if (others == 0) { /* a mesh of one: the local answer as it is */
        agpu_view_unref(&view);
        req->mode = MODE_LOCAL;
        http_set_self_target(self, req);
        return http_start_attempt(self, conn, req, method, path);
    }
    req->mode = MODE_GATHER;
    req->gather = agpu_gather_new(kind);
    for (size_t i = 0; req->gather && i < agpu_view_count(view); i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        bool up = p->self ? self->upstream && p->ollama == AGPU_OLLAMA_UP
                          : p->state == AGPU_PEER_ALIVE && p->ollama == AGPU_OLLAMA_UP;
        if (!up)
            continue;
        agpu_exchange_t *ex =
            http_start_exchange(self, conn, req, method, path, p->self ? self->upstream : p->http,
                                !p->self, &http_gather_ops);
        if (ex)
            agpu_gather_add(req->gather, p->name, ex);
    }
    agpu_view_unref(&view);
    if (!req->gather)
        return http_answer_error(conn, req, path, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
    req->gather_due_ms = agpu_clock_ms() + AGPU_GATHER_TIMEOUT_MS;
    http_waiting_add(self, req);
    return MHD_YES;
}

/* Reads what the nodes answered; once all have (or time is up), answers with the union. */
enum MHD_Result http_gather_pass(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                 const char *path)
{
    if (!agpu_gather_step(req->gather) && agpu_clock_ms() < req->gather_due_ms) {
        http_suspend(req);
        return MHD_YES;
    }
    agpu_gather_cancel_rest(req->gather);
    http_waiting_remove(self, req);
    size_t len = 0;
    char error[AGPU_ERROR_MAX];
    char *body = agpu_gather_result(req->gather, &len, error, sizeof error);
    agpu_gather_destroy(&req->gather);
    if (!body)
        return http_answer_error(conn, req, path, MHD_HTTP_BAD_GATEWAY, error);
    enum MHD_Result ok = http_answer_with(conn, req, MHD_HTTP_OK, "application/json; charset=utf-8",
                                          body, len, "X-Agpu-Node", self->node_name);
    free(body);
    return ok;
}

/* ---- X-Agpu-Target ---- */

/* The node X-Agpu-Target names, as its target. false when no alive node has that name. */
bool http_find_target(agpu_http_t *self, request_t *req, const char *name)
{
    agpu_view_t *view = self->options.mesh ? agpu_mesh_view(self->options.mesh) : NULL;
    bool found = false;
    for (size_t i = 0; view && i < agpu_view_count(view) && !found; i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        if (strcmp(p->name, name) == 0 && (p->self || p->state == AGPU_PEER_ALIVE)) {
            set_target(&req->targets[0], p);
            req->n_targets = 1;
            found = true;
        }
    }
    agpu_view_unref(&view);
    return found;
}

/* ---- the waiting requests, looked at every few milliseconds while there are any ---- */

/* A queued request: it goes when it heads its model's queue and a node may take it, or gives
 * up when it has waited too long. */
static void tend_queued(agpu_http_t *self, request_t *req, const agpu_view_t *view, int64_t now)
{
    int64_t waited = now - req->queued_ms;
    if (agpu_queue_closed(self->options.queue)) {
        agpu_queue_remove(self->options.queue, &req->queued);
        req->queue_expired = req->shut_out = true;
    } else if (waited >= (int64_t)self->options.queue_timeout_ms) {
        agpu_info("%s: no slot freed within %u ms: 503", req->model_asked,
                  self->options.queue_timeout_ms);
        agpu_queue_remove(self->options.queue, &req->queued);
        req->queue_expired = true;
    } else if (!view || !agpu_queue_is_head(self->options.queue, req->queued)) {
        return;
    } else {
        agpu_route_verdict_t verdict =
            plan_request(self, req, view, waited >= (int64_t)self->options.cold_after_ms);
        if (verdict == AGPU_ROUTE_WAIT)
            return;
        if (verdict == AGPU_ROUTE_NONE)
            req->n_targets = 0; /* its holders are gone: placed again, as new */
        else
            account_attempt(self, req); /* the slot is taken now, not when it resumes */
        agpu_debug("%s: waited %lld ms for a slot", req->model_asked, (long long)waited);
        agpu_queue_remove(self->options.queue, &req->queued);
    }
    http_waiting_remove(self, req);
    http_resume(req);
}

/* An attempt on a peer that has not answered yet: given up when the peer is dead or gone, or
 * when its first byte is overdue. */
static void tend_attempt(agpu_http_t *self, request_t *req, const agpu_view_t *view, int64_t now)
{
    const target_t *t = &req->targets[req->attempt];
    bool gone = false;
    for (size_t i = 0; view && i < agpu_view_count(view); i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        if (strcmp(p->id, t->id) == 0)
            gone = p->state == AGPU_PEER_DEAD || p->state == AGPU_PEER_LEFT;
    }
    bool late = req->first_byte_due_ms && now >= req->first_byte_due_ms;
    if (!gone && !late)
        return;
    char why[AGPU_ERROR_MAX];
    snprintf(why, sizeof why, "%s %s", t->name,
             gone ? "left the mesh before answering" : "sent nothing in time");
    http_fail_attempt(self, req, why, late);
    http_resume(req);
}

void agpu_http_tend(agpu_http_t *self)
{
    if (!self->waiting)
        return;
    int64_t now = agpu_clock_ms();
    if (!atomic_exchange(&self->tend_due, false) && now < self->next_tend_ms)
        return;
    agpu_view_t *view = self->options.mesh ? agpu_mesh_view(self->options.mesh) : NULL;
    bool queued = false;
    for (request_t *req = self->waiting, *next; req; req = next) {
        next = req->wait_next;
        if (req->queued) {
            tend_queued(self, req, view, now);
            queued |= req->queued != NULL;
        } else if (req->gather) {
            if (now >= req->gather_due_ms)
                http_resume(req); /* its pass answers with what came in */
        } else if (req->ex && !req->answered && !agpu_exchange_answered(req->ex)) {
            tend_attempt(self, req, view, now);
        } else {
            http_waiting_remove(self, req);
        }
    }
    agpu_view_unref(&view);
    self->next_tend_ms = now + (queued ? AGPU_WAITING_POLL_MS : 10 * AGPU_WAITING_POLL_MS);
}

long agpu_http_tend_timeout_ms(agpu_http_t *self)
{
    if (!self->waiting)
        return -1;
    int64_t left = self->next_tend_ms - agpu_clock_ms();
    return left > 0 ? (long)left : 0;
}
