/* The JSON agpu writes itself: error bodies in Ollama's and OpenAI's shapes, the peers and
 * route answers (via jansson, so any string is escaped correctly). */
#include "agpu_json.h"

#include "agpu_json_scan.h"
#include "agpu_limits.h"
#include "agpu_view.h"

#include <jansson.h>
#include <string.h>

/* The error type Ollama's OpenAI layer gives each status. */
static const char *openai_error_type(int status)
{
    if (status == 400)
        return "invalid_request_error";
    if (status == 404)
        return "not_found_error";
    return "api_error";
}

size_t agpu_json_error(char *out, size_t size, agpu_error_style_t style, int status,
                       const char *message)
{
    json_t *body;
    if (style == AGPU_ERROR_OPENAI)
        body = json_pack("{s:{s:s, s:s, s:n, s:n}}", "error", "message", message, "type",
                         openai_error_type(status), "param", "code");
    else
        body = json_pack("{s:s}", "error", message);
    if (!body)
        return 0;
    size_t need = json_dumpb(body, out, size, JSON_COMPACT);
    json_decref(body);
    if (need == 0 || need >= size)
        return 0;
    out[need] = '\0';
    return need;
}

agpu_error_style_t agpu_json_error_style(const char *path)
{
    return strncmp(path, "/v1/", 4) == 0 ? AGPU_ERROR_OPENAI : AGPU_ERROR_OLLAMA;
}

static json_t *names(const agpu_view_peer_t *p, bool loaded_only)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < p->n_models; i++)
        if (!loaded_only || p->models[i].loaded)
            json_array_append_new(list, json_string(p->models[i].name));
    return list;
}

/* {"model": {"inflight", "queued", "tokens_per_s", "ttft_ms"}} for each model with load or
 * a measured speed. */
static json_t *model_stats(const agpu_view_peer_t *p)
{
    json_t *stats = json_object();
    for (size_t i = 0; stats && i < p->n_models; i++) {
        const agpu_view_model_t *m = &p->models[i];
        if (m->in_flight || m->queued || m->tokens_per_s > 0)
            json_object_set_new(stats, m->name,
                                json_pack("{s:I, s:I, s:f, s:I}", "inflight",
                                          (json_int_t)m->in_flight, "queued",
                                          (json_int_t)m->queued, "tokens_per_s", m->tokens_per_s,
                                          "ttft_ms", (json_int_t)m->ttft_ms));
    }
    return stats;
}

char *agpu_json_peers(const agpu_view_t *view, int64_t now_ms)
{
    json_t *peers = json_array();
    for (size_t i = 0; peers && i < agpu_view_count(view); i++) {
        const agpu_view_peer_t *p = agpu_view_peer(view, i);
        int64_t age = now_ms - p->last_seen_ms;
        json_array_append_new(
            peers, json_pack("{s:s, s:s, s:b, s:s, s:s, s:s, s:s, s:o, s:o, s:I, s:I, s:I, s:I,"
                             " s:b, s:s, s:o}",
                             "id", p->id, "name", p->name, "self", p->self, "state",
                             agpu_peer_state_name(p->state), "http", p->http, "gossip", p->gossip,
                             "ollama", agpu_view_ollama_name(p->ollama), "models", names(p, false),
                             "loaded", names(p, true), "inflight", (json_int_t)p->in_flight,
                             "capacity", (json_int_t)p->capacity, "queued", (json_int_t)p->queued,
                             "last_seen_ms", (json_int_t)(p->self || age < 0 ? 0 : age), "draining",
                             p->draining, "ollama_version", p->ollama_version, "model_stats",
                             model_stats(p)));
    }
    json_t *root = json_pack("{s:s, s:o}", "self", agpu_view_self_id(view), "peers", peers);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

/* Whether the node has the model loaded: the plan keeps only the tier, which says so for
 * usable candidates alone. */
static bool has_loaded(const agpu_view_peer_t *p, const char *key)
{
    for (size_t i = 0; i < p->n_models; i++)
        if (strcmp(p->models[i].key, key) == 0)
            return p->models[i].loaded;
    return false;
}

static const char *display_name(const agpu_view_peer_t *p)
{
    return p->name[0] ? p->name : p->id;
}

char *agpu_json_route(const agpu_view_t *view, const char *model, const char *key,
                      const agpu_route_candidate_t *candidates, const agpu_route_plan_t *plan)
{
    json_t *list = json_array();
    for (size_t i = 0; list && i < plan->count; i++) {
        const agpu_route_candidate_t *c = &candidates[i];
        const agpu_view_peer_t *p = agpu_view_peer(view, c->node);
        json_t *entry = json_pack(
            "{s:s, s:s, s:b, s:s, s:s, s:s, s:b, s:b, s:I, s:I, s:f, s:b, s:f, s:s}", "id", p->id,
            "name", p->name, "self", p->self, "state", agpu_peer_state_name(p->state), "http",
            p->http, "tier", agpu_route_tier_name(c->tier), "usable", i < plan->n_usable, "loaded",
            has_loaded(p, key), "load", (json_int_t)c->load, "capacity", (json_int_t)c->capacity,
            "speed", c->speed, "measured", c->measured, "score", c->score, "why", c->why);
        if (json_array_append_new(list, entry) != 0) { /* a missing node would mislead */
            json_decref(list);
            list = NULL;
        }
    }
    json_t *choice = plan->verdict == AGPU_ROUTE_GO && plan->n_usable
                         ? json_string(display_name(agpu_view_peer(view, candidates[0].node)))
                         : json_null();
    json_t *root =
        json_pack("{s:s, s:s, s:s, s:o, s:o}", "model", model, "key", key, "verdict",
                  agpu_route_verdict_name(plan->verdict), "choice", choice, "candidates", list);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}

int agpu_json_request_model(const char *body, size_t len, char *out, size_t out_size)
{
    static const char *const keys[] = {"model", "name"};
    char found[2][AGPU_MSG_MODEL_NAME_MAX + 1];
    if (agpu_json_scan_strings(body, len, keys, 2, found[0], sizeof found[0]) != 0)
        return -1;
    const char *model = found[0][0] ? found[0] : found[1];
    size_t n = strlen(model);
    if (n == 0 || n >= out_size)
        return -1;
    memcpy(out, model, n + 1);
    return 0;
}

char *agpu_json_drain(const char *node, bool draining)
{
    json_t *root = json_pack("{s:s, s:b}", "node", node, "draining", draining);
    char *text = root ? json_dumps(root, JSON_COMPACT) : NULL;
    json_decref(root);
    return text;
}
