/* The JSON agpu writes itself: error bodies in Ollama's and OpenAI's shapes (via jansson,
 * so any message is escaped correctly). */
#include "agpu_json.h"

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

int agpu_json_request_model(const char *body, size_t len, char *out, size_t out_size)
{
    json_t *root = json_loadb(body, len, 0, NULL);
    const char *model = json_string_value(json_object_get(root, "model"));
    if (!model || !model[0])
        model = json_string_value(json_object_get(root, "name"));
    int rc = -1;
    if (model && model[0] && strlen(model) < out_size) {
        memcpy(out, model, strlen(model) + 1);
        rc = 0;
    }
    json_decref(root);
    return rc;
}
