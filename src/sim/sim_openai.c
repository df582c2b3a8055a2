/* sim_openai: the OpenAI-compatible routes under /v1, as Ollama's middleware shapes them. */
#include "sim_catalog.h"
#include "sim_config.h"
#include "sim_decode.h"
#include "sim_gen.h"
#include "sim_infer.h"
#include "sim_json.h"
#include "sim_routes.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define CT_JSON "application/json"
#define CT_JSON_UTF8 "application/json; charset=utf-8"
#define CT_SSE "text/event-stream"

/* Ollama's ids are the prefix and a random number below 999. */
#define ID_RANGE 999

static const char *error_type(unsigned status)
{
    return status == 400   ? "invalid_request_error"
           : status == 404 ? "not_found_error"
                           : "api_error";
}

static enum MHD_Result oai_error_typed(sim_req_t *req, unsigned status, const char *msg,
                                       const char *ctype, bool newline)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"error\":{\"message\":");
    sim_buf_jcstr(&b, msg);
    sim_buf_fmt(&b, ",\"type\":\"%s\",\"param\":null,\"code\":null}}%s", error_type(status),
                newline ? "\n" : "");
    return sim_reply(req, status, ctype, &b);
}

/* An error the wrapped Ollama handler produced (the middleware re-encodes it). */
static enum MHD_Result oai_error(sim_req_t *req, unsigned status, const char *msg)
{
    return oai_error_typed(req, status, msg, CT_JSON, true);
}

/* An error the middleware itself rejects the request with. */
static enum MHD_Result oai_reject(sim_req_t *req, const char *msg)
{
    return oai_error_typed(req, 400, msg, CT_JSON_UTF8, false);
}

static enum MHD_Result oai_err(sim_req_t *req, const sim_err_t *err)
{
    return oai_error(req, (unsigned)err->status, err->msg);
}

static int64_t unix_now(void)
{
    struct timespec ts;
    sim_wall(&ts);
    return ts.tv_sec;
}

/* ---- how chat and completions write ---- */

static void usage_json(sim_infer_t *job, sim_buf_t *out, bool zero)
{
    sim_metrics_t m;
    sim_infer_metrics(job, &m);
    int p = zero ? 0 : m.prompt_count, c = zero ? 0 : m.eval_count;
    sim_buf_fmt(out,
                "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}", p,
                c, p + c);
}

static void head(sim_infer_t *job, sim_buf_t *out, const char *object, bool model_first)
{
    sim_buf_fmt(out, "{\"id\":\"%s\",\"object\":\"%s\",\"created\":%lld", job->oai_id, object,
                (long long)unix_now());
    if (model_first) {
        sim_buf_str(out, ",\"model\":");
        sim_buf_jcstr(out, job->model_echo);
        sim_buf_str(out, ",\"system_fingerprint\":\"fp_ollama\"");
    }
}

static void chat_chunk(sim_infer_t *job, sim_buf_t *out, const char *word, size_t len,
                       const char *finish)
{
    sim_buf_str(out, "data: ");
    head(job, out, "chat.completion.chunk", true);
    sim_buf_str(out, ",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":");
    sim_buf_jstr(out, word, len);
    sim_buf_str(out, "},\"finish_reason\":");
    if (finish)
        sim_buf_fmt(out, "\"%s\"", finish);
    else
        sim_buf_str(out, "null");
    sim_buf_str(out, "}]}\n\n");
}

static void chat_token(sim_infer_t *job, const char *word, size_t len, sim_buf_t *out)
{
    chat_chunk(job, out, word, len, NULL);
}

static void chat_final(sim_infer_t *job, sim_buf_t *out)
{
    chat_chunk(job, out, "", 0, sim_infer_done_reason(job));
    if (job->include_usage) {
        sim_buf_str(out, "data: ");
        head(job, out, "chat.completion.chunk", true);
        sim_buf_str(out, ",\"choices\":[],");
        usage_json(job, out, false);
        sim_buf_str(out, "}\n\n");
    }
    sim_buf_str(out, "data: [DONE]\n\n");
}

static void chat_whole(sim_infer_t *job, sim_buf_t *out)
{
    head(job, out, "chat.completion", true);
    sim_buf_str(out, ",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":");
    sim_buf_t text = {0};
    sim_infer_text(job, &text);
    sim_buf_jstr(out, text.data ? text.data : "", text.len);
    sim_buf_free(&text);
    sim_buf_fmt(out, "},\"finish_reason\":\"%s\"}],", sim_infer_done_reason(job));
    usage_json(job, out, false);
    sim_buf_str(out, "}\n");
}

static const sim_infer_ops_t CHAT_OPS = {chat_token, chat_final, chat_whole, NULL,
                                         oai_error,  CT_SSE,     CT_JSON};

static void cmpl_chunk(sim_infer_t *job, sim_buf_t *out, const char *word, size_t len,
                       const char *finish)
{
    sim_buf_str(out, "data: ");
    head(job, out, "text_completion", false);
    sim_buf_str(out, ",\"choices\":[{\"text\":");
    sim_buf_jstr(out, word, len);
    sim_buf_str(out, ",\"index\":0,\"finish_reason\":");
    if (finish)
        sim_buf_fmt(out, "\"%s\"", finish);
    else
        sim_buf_str(out, "null");
    sim_buf_str(out, "}],\"model\":");
    sim_buf_jcstr(out, job->model_echo);
    sim_buf_str(out, ",\"system_fingerprint\":\"fp_ollama\"");
    if (job->include_usage) {
        sim_buf_str(out, ",");
        usage_json(job, out, true);
    }
    sim_buf_str(out, "}\n\n");
}

static void cmpl_token(sim_infer_t *job, const char *word, size_t len, sim_buf_t *out)
{
    cmpl_chunk(job, out, word, len, NULL);
}

static void cmpl_end(sim_infer_t *job, sim_buf_t *out, const char *reason)
{
    cmpl_chunk(job, out, "", 0, reason);
    if (job->include_usage) {
        sim_buf_str(out, "data: ");
        head(job, out, "text_completion", false);
        sim_buf_str(out, ",\"choices\":[],\"model\":");
        sim_buf_jcstr(out, job->model_echo);
        sim_buf_str(out, ",\"system_fingerprint\":\"fp_ollama\",");
        usage_json(job, out, strcmp(reason, "load") == 0);
        sim_buf_str(out, "}\n\n");
    }
    sim_buf_str(out, "data: [DONE]\n\n");
}

static void cmpl_final(sim_infer_t *job, sim_buf_t *out)
{
    cmpl_end(job, out, sim_infer_done_reason(job));
}

static void cmpl_body(sim_infer_t *job, sim_buf_t *out, const char *reason, bool zero)
{
    head(job, out, "text_completion", true);
    sim_buf_str(out, ",\"choices\":[{\"text\":");
    sim_buf_t text = {0};
    if (!zero)
        sim_infer_text(job, &text);
    sim_buf_jstr(out, text.data ? text.data : "", text.len);
    sim_buf_free(&text);
    sim_buf_fmt(out, ",\"index\":0,\"finish_reason\":\"%s\"}],", reason);
    usage_json(job, out, zero);
    sim_buf_str(out, "}\n");
}

static void cmpl_whole(sim_infer_t *job, sim_buf_t *out)
{
    cmpl_body(job, out, sim_infer_done_reason(job), false);
}

/* An empty prompt loads the model; the answer still goes through the completions writer. */
static const char *cmpl_load(sim_infer_t *job, sim_buf_t *out)
{
    if (job->stream) {
        cmpl_end(job, out, "load");
        return CT_SSE;
    }
    cmpl_body(job, out, "load", true);
    return CT_JSON;
}

static const sim_infer_ops_t CMPL_OPS = {cmpl_token, cmpl_final, cmpl_whole, cmpl_load,
                                         oai_error,  CT_SSE,     CT_JSON};

/* ---- reading requests ---- */

typedef struct {
    const char *model;
    int stream;
    int include_usage;
    int64_t max_tokens, seed;
    bool has_max_tokens, has_seed;
    json_t *stop;
} oai_common_t;

static bool read_common(json_t *root, const char *where, oai_common_t *c, sim_err_t *err)
{
    memset(c, 0, sizeof *c);
    c->model = "";
    if (!sim_json_str(root, "model", where, &c->model, NULL, err) ||
        !sim_json_bool(root, "stream", where, &c->stream, err) ||
        !sim_json_int(root, "max_tokens", where, &c->max_tokens, &c->has_max_tokens, err) ||
        !sim_json_int(root, "seed", where, &c->seed, &c->has_seed, err))
        return false;
    json_t *so = sim_json_member(root, "stream_options");
    if (so && !json_is_object(so)) {
        sim_err_set(err, 400,
                    "json: cannot unmarshal %s into Go struct field %s.stream_options of type "
                    "openai.StreamOptions",
                    sim_json_type_name(so), where);
        return false;
    }
    if (so && !sim_json_bool(so, "include_usage", "StreamOptions", &c->include_usage, err))
        return false;
    c->stop = sim_json_member(root, "stop");
    return true;
}

static sim_infer_t *new_job(const sim_infer_ops_t *ops, const sim_model_t *m, const oai_common_t *c,
                            const char *id_prefix)
{
    sim_infer_t *job = sim_infer_new(ops, m, c->model);
    job->stream = c->stream;
    job->include_usage = c->include_usage;
    snprintf(job->oai_id, sizeof job->oai_id, "%s-%d", id_prefix, rand() % ID_RANGE);
    if (c->stop && json_is_string(c->stop))
        sim_infer_add_stop(job, json_string_value(c->stop));
    if (c->stop && json_is_array(c->stop)) {
        size_t i;
        json_t *s;
        json_array_foreach(c->stop, i, s)
        {
            if (json_is_string(s))
                sim_infer_add_stop(job, json_string_value(s));
        }
    }
    return job;
}

enum MHD_Result sim_route_oai_chat(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    json_t *root =
        sim_json_parse(req->body.data, req->body.len, "openai.ChatCompletionRequest", &err);
    if (!root)
        return oai_reject(req, err.msg);
    oai_common_t c;
    enum MHD_Result ok;
    sim_buf_t key = {0};
    int prompt_tokens = 4;
    if (!read_common(root, "ChatCompletionRequest", &c, &err)) {
        ok = oai_reject(req, err.msg);
        goto done;
    }
    json_t *messages = sim_json_member(root, "messages");
    if (messages && !json_is_array(messages)) {
        sim_err_set(&err, 400,
                    "json: cannot unmarshal %s into Go struct field ChatCompletionRequest.messages "
                    "of type []openai.Message",
                    sim_json_type_name(messages));
        ok = oai_reject(req, err.msg);
        goto done;
    }
    size_t nmsg = messages ? json_array_size(messages) : 0;
    if (nmsg == 0) {
        ok = oai_reject(req, "[] is too short - 'messages'");
        goto done;
    }
    for (size_t i = 0; i < nmsg; i++) {
        json_t *msg = json_array_get(messages, i);
        const char *role = "";
        if (!json_is_object(msg) ||
            !sim_json_str(msg, "role", "ChatCompletionRequest.messages", &role, NULL, &err)) {
            ok = oai_reject(req, json_is_object(msg) ? err.msg : "invalid message format");
            goto done;
        }
        json_t *content = sim_json_member(msg, "content");
        sim_buf_str(&key, role);
        sim_buf_add(&key, "\0", 1);
        if (content && json_is_string(content)) {
            sim_buf_add(&key, json_string_value(content), json_string_length(content));
            prompt_tokens +=
                4 + sim_gen_count_tokens(json_string_value(content), json_string_length(content));
        } else if (content && json_is_array(content)) {
            size_t k;
            json_t *part;
            json_array_foreach(content, k, part)
            {
                json_t *type = sim_json_member(part, "type");
                json_t *text = sim_json_member(part, "text");
                if (!json_is_object(part) || !type || !json_is_string(type)) {
                    ok = oai_reject(req, "invalid message format");
                    goto done;
                }
                if (strcmp(json_string_value(type), "text") == 0) {
                    if (!text || !json_is_string(text)) {
                        ok = oai_reject(req, "invalid message format");
                        goto done;
                    }
                    sim_buf_add(&key, json_string_value(text), json_string_length(text));
                    prompt_tokens +=
                        4 + sim_gen_count_tokens(json_string_value(text), json_string_length(text));
                } else if (strcmp(json_string_value(type), "image_url") == 0) {
                    prompt_tokens += 4 + 576; /* what an image costs a vision model */
                } else {
                    ok = oai_reject(req, "invalid message format");
                    goto done;
                }
            }
        } else if (!sim_json_member(msg, "tool_calls")) {
            const char *t = !content                   ? "<nil>"
                            : json_is_number(content)  ? "float64"
                            : json_is_boolean(content) ? "bool"
                                                       : "map[string]interface {}";
            sim_err_set(&err, 400, "invalid message content type: %s", t);
            ok = oai_reject(req, err.msg);
            goto done;
        }
        sim_buf_add(&key, "\0", 1);
    }
    json_t *tools = sim_json_member(root, "tools");
    bool want_tools = tools && json_is_array(tools) && json_array_size(tools) > 0;

    sim_name_t name;
    sim_name_parse(c.model, &name);
    if (!sim_name_valid(&name)) {
        ok = oai_error(req, 400, "model is required");
        goto done;
    }
    const sim_model_t *m = sim_catalog_find(&name);
    if (!m) {
        sim_err_set(&err, 404, "model '%s' not found", c.model);
        ok = oai_err(req, &err);
        goto done;
    }
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        sim_buf_t msg = {0};
        sim_buf_goquote(&msg, c.model);
        sim_buf_str(&msg, " does not support chat");
        ok = oai_error(req, 400, msg.data);
        sim_buf_free(&msg);
        goto done;
    }
    if (want_tools && !(m->caps & SIM_CAP_TOOLS)) {
        sim_err_set(&err, 400, "%s does not support tools", m->full);
        ok = oai_err(req, &err);
        goto done;
    }
    sim_infer_t *job = new_job(&CHAT_OPS, m, &c, "chatcmpl");
    job->prompt_tokens = prompt_tokens;
    sim_infer_plan(job, key.data, key.len, c.has_seed ? c.seed : 0,
                   c.has_max_tokens ? c.max_tokens : 0);
    sim_buf_free(&key);
    json_decref(root);
    return sim_infer_start(req, job);
done:
    sim_buf_free(&key);
    json_decref(root);
    return ok;
}

enum MHD_Result sim_route_oai_completions(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    json_t *root = sim_json_parse(req->body.data, req->body.len, "openai.CompletionRequest", &err);
    if (!root)
        return oai_reject(req, err.msg);
    oai_common_t c;
    const char *prompt = "", *suffix = "";
    size_t prompt_len = 0;
    enum MHD_Result ok;
    const char *W = "CompletionRequest";
    if (!read_common(root, W, &c, &err) ||
        !sim_json_str(root, "prompt", W, &prompt, &prompt_len, &err) ||
        !sim_json_str(root, "suffix", W, &suffix, NULL, &err)) {
        ok = oai_reject(req, err.msg);
        goto done;
    }
    if (c.stop && json_is_array(c.stop)) {
        size_t i;
        json_t *s;
        json_array_foreach(c.stop, i, s)
        {
            if (!json_is_string(s)) {
                sim_err_set(&err, 400, "invalid type for 'stop' field: %s",
                            json_is_number(s)    ? "float64"
                            : json_is_boolean(s) ? "bool"
                                                 : "map[string]interface {}");
                ok = oai_reject(req, err.msg);
                goto done;
            }
        }
    }
    sim_name_t name;
    sim_name_parse(c.model, &name);
    const sim_model_t *m = sim_name_valid(&name) ? sim_catalog_find(&name) : NULL;
    if (!m) {
        sim_err_set(&err, 404, "model '%s' not found", c.model);
        ok = oai_err(req, &err);
        goto done;
    }
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        sim_buf_t msg = {0};
        sim_buf_goquote(&msg, c.model);
        sim_buf_str(&msg, " does not support generate");
        ok = oai_error(req, 400, msg.data);
        sim_buf_free(&msg);
        goto done;
    }
    if (*suffix && !(m->caps & SIM_CAP_INSERT)) {
        sim_err_set(&err, 400, "%s does not support insert", m->full);
        ok = oai_err(req, &err);
        goto done;
    }
    sim_infer_t *job = new_job(&CMPL_OPS, m, &c, "cmpl");
    job->load_only = prompt_len == 0;
    job->prompt_tokens = 8 + sim_gen_count_tokens(prompt, prompt_len);
    sim_buf_t key = {0};
    sim_buf_add(&key, "\0", 1);
    sim_buf_add(&key, prompt, prompt_len);
    sim_buf_add(&key, "\0", 1);
    sim_buf_str(&key, suffix);
    sim_infer_plan(job, key.data, key.len, c.has_seed ? c.seed : 0,
                   c.has_max_tokens ? c.max_tokens : 0);
    sim_buf_free(&key);
    json_decref(root);
    return sim_infer_start(req, job);
done:
    json_decref(root);
    return ok;
}

/* ---- embeddings ---- */

static void embed_whole(sim_infer_t *job, sim_buf_t *out)
{
    int dim = sim_cfg.embed_dim;
    float *v = malloc(sizeof(float) * (size_t)dim);
    sim_buf_str(out, "{\"object\":\"list\",\"data\":[");
    for (int i = 0; v && i < job->ninputs; i++) {
        sim_gen_embedding(job->w.model->blob, job->inputs[i], job->input_lens[i], v, dim);
        int d = dim;
        if (job->dimensions > 0 && job->dimensions < dim) {
            d = job->dimensions;
            sim_gen_normalize(v, d);
        }
        sim_buf_str(out, i ? ",{\"object\":\"embedding\",\"embedding\":["
                           : "{\"object\":\"embedding\",\"embedding\":[");
        for (int k = 0; k < d; k++) {
            if (k)
                sim_buf_add(out, ",", 1);
            sim_buf_f32(out, v[k]);
        }
        sim_buf_fmt(out, "],\"index\":%d}", i);
    }
    free(v);
    sim_buf_str(out, "],\"model\":");
    sim_buf_jcstr(out, job->model_echo);
    sim_buf_fmt(out, ",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}\n", job->prompt_tokens,
                job->prompt_tokens);
}

static const sim_infer_ops_t EMBED_OPS = {NULL, NULL, embed_whole, NULL, oai_error, NULL, CT_JSON};

enum MHD_Result sim_route_oai_embeddings(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    json_t *root = sim_json_parse(req->body.data, req->body.len, "openai.EmbedRequest", &err);
    if (!root)
        return oai_reject(req, err.msg);
    const char *model = "";
    int64_t dims = 0;
    enum MHD_Result ok;
    if (!sim_json_str(root, "model", "EmbedRequest", &model, NULL, &err) ||
        !sim_json_int(root, "dimensions", "EmbedRequest", &dims, NULL, &err)) {
        ok = oai_reject(req, err.msg);
        goto done;
    }
    json_t *input = sim_json_member(root, "input");
    if (!input || (json_is_array(input) && json_array_size(input) == 0)) {
        ok = oai_reject(req, "invalid input");
        goto done;
    }
    if (!json_is_string(input) && !json_is_array(input)) {
        ok = oai_error(req, 400, "invalid input type");
        goto done;
    }
    if (json_is_array(input)) {
        size_t i;
        json_t *v;
        json_array_foreach(input, i, v)
        {
            if (!json_is_string(v)) {
                ok = oai_error(req, 400, "invalid input type");
                goto done;
            }
        }
    }
    sim_name_t name;
    sim_name_parse(model, &name);
    const sim_model_t *m = sim_name_valid(&name) ? sim_catalog_find(&name) : NULL;
    if (!m) {
        sim_buf_t msg = {0};
        sim_buf_str(&msg, "model ");
        sim_buf_goquote(&msg, model);
        sim_buf_str(&msg, " not found, try pulling it first");
        ok = oai_error(req, 404, msg.data);
        sim_buf_free(&msg);
        goto done;
    }
    sim_infer_t *job = sim_infer_new(&EMBED_OPS, m, model);
    if (json_is_string(input)) {
        sim_infer_add_input(job, json_string_value(input), json_string_length(input));
    } else {
        size_t i;
        json_t *v;
        json_array_foreach(input, i, v)
            sim_infer_add_input(job, json_string_value(v), json_string_length(v));
    }
    job->dimensions = (int)(dims > 0 && dims < 1 << 20 ? dims : 0);
    for (int i = 0; i < job->ninputs; i++)
        job->prompt_tokens += sim_gen_count_tokens(job->inputs[i], job->input_lens[i]);
    json_decref(root);
    return sim_infer_start(req, job);
done:
    json_decref(root);
    return ok;
}

/* ---- models ---- */

enum MHD_Result sim_route_oai_models(sim_req_t *req)
{
    size_t n;
    const sim_model_t **list = sim_catalog_list(&n);
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"object\":\"list\",\"data\":");
    if (!n)
        sim_buf_str(&b, "null");
    for (size_t i = 0; i < n; i++) {
        sim_buf_str(&b, i ? "," : "[");
        sim_buf_str(&b, "{\"id\":");
        sim_buf_jcstr(&b, list[i]->shortest);
        sim_buf_fmt(&b, ",\"object\":\"model\",\"created\":%lld,\"owned_by\":",
                    (long long)list[i]->modified_sec);
        sim_buf_jcstr(&b, list[i]->name.ns);
        sim_buf_str(&b, "}");
    }
    sim_buf_str(&b, n ? "]}\n" : "}\n");
    free(list);
    return sim_reply(req, MHD_HTTP_OK, CT_JSON, &b);
}

enum MHD_Result sim_route_oai_model(sim_req_t *req)
{
    sim_name_t name;
    sim_name_parse(req->param, &name);
    if (!sim_name_valid(&name))
        return oai_error(req, 500, "invalid model path");
    const sim_model_t *m = sim_catalog_find(&name);
    if (!m) {
        sim_err_t err;
        sim_err_set(&err, 404, "model '%s' not found", req->param);
        return oai_err(req, &err);
    }
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"id\":");
    sim_buf_jcstr(&b, req->param);
    sim_buf_fmt(&b,
                ",\"object\":\"model\",\"created\":%lld,\"owned_by\":", (long long)m->modified_sec);
    sim_buf_jcstr(&b, name.ns);
    sim_buf_str(&b, "}\n");
    return sim_reply(req, MHD_HTTP_OK, CT_JSON, &b);
}
