/* sim_native: Ollama's own routes: /, version, tags, ps, show, generate and chat. */
#include "sim_catalog.h"
#include "sim_decode.h"
#include "sim_config.h"
#include "sim_gen.h"
#include "sim_infer.h"
#include "sim_json.h"
#include "sim_routes.h"
#include "sim_sched.h"

#include <stdlib.h>
#include <string.h>

#define CT_JSON "application/json; charset=utf-8"
#define CT_NDJSON "application/x-ndjson"

/* Prompt tokens a chat template adds: a begin-of-text token, a header around each message,
 * the assistant header that opens the reply. */
#define TPL_BOS 1
#define TPL_PER_MESSAGE 4
#define TPL_REPLY 3

static enum MHD_Result reply_json(sim_req_t *req, sim_buf_t *b)
{
    return sim_reply(req, MHD_HTTP_OK, CT_JSON, b);
}

static enum MHD_Result reply_err(sim_req_t *req, const sim_err_t *err)
{
    return sim_reply_error(req, (unsigned)err->status, err->msg);
}

static enum MHD_Result reply_errf(sim_req_t *req, unsigned status, const char *prefix,
                                  const char *quoted, const char *suffix)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, prefix);
    sim_buf_goquote(&b, quoted);
    sim_buf_str(&b, suffix);
    enum MHD_Result ok = sim_reply_error(req, status, b.data);
    sim_buf_free(&b);
    return ok;
}

static enum MHD_Result reply_not_found(sim_req_t *req, const char *model)
{
    sim_err_t err;
    sim_err_set(&err, 404, "model '%s' not found", model);
    return reply_err(req, &err);
}

/* ---- simple routes ---- */

enum MHD_Result sim_route_root(sim_req_t *req)
{
    return sim_reply_text(req, MHD_HTTP_OK, "text/plain; charset=utf-8", "Ollama is running");
}

enum MHD_Result sim_route_version(sim_req_t *req)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"version\":");
    sim_buf_jcstr(&b, sim_cfg.version);
    sim_buf_str(&b, "}");
    return reply_json(req, &b);
}

enum MHD_Result sim_route_tags(sim_req_t *req)
{
    size_t n;
    const sim_model_t **list = sim_catalog_list(&n);
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"models\":[");
    for (size_t i = 0; i < n; i++) {
        const sim_model_t *m = list[i];
        if (i)
            sim_buf_add(&b, ",", 1);
        sim_buf_str(&b, "{\"name\":");
        sim_buf_jcstr(&b, m->shortest);
        sim_buf_str(&b, ",\"model\":");
        sim_buf_jcstr(&b, m->shortest);
        sim_buf_str(&b, ",\"modified_at\":");
        sim_buf_time(&b, m->modified_sec, m->modified_nsec, false);
        sim_buf_fmt(&b, ",\"size\":%lld,\"digest\":\"%s\",\"details\":", (long long)m->size,
                    m->digest);
        sim_catalog_details(&b, m, false);
        sim_buf_str(&b, "}");
    }
    sim_buf_str(&b, "]}");
    free(list);
    return reply_json(req, &b);
}

enum MHD_Result sim_route_ps(sim_req_t *req)
{
    sim_buf_t b = {0};
    sim_sched_ps_json(&b);
    return reply_json(req, &b);
}

static void capabilities_json(sim_buf_t *b, unsigned caps)
{
    static const struct {
        unsigned bit;
        const char *name;
    } names[] = {{SIM_CAP_COMPLETION, "completion"},
                 {SIM_CAP_EMBEDDING, "embedding"},
                 {SIM_CAP_TOOLS, "tools"},
                 {SIM_CAP_INSERT, "insert"}};
    sim_buf_str(b, "[");
    bool first = true;
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        if (!(caps & names[i].bit))
            continue;
        sim_buf_fmt(b, "%s\"%s\"", first ? "" : ",", names[i].name);
        first = false;
    }
    sim_buf_str(b, "]");
}

enum MHD_Result sim_route_show(sim_req_t *req)
{
    sim_err_t err = {0};
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.ShowRequest", &err);
    if (!root)
        return reply_err(req, &err);
    const char *model = "", *name = "", *system = "";
    if (!sim_json_str(root, "model", "ShowRequest", &model, NULL, &err) ||
        !sim_json_str(root, "name", "ShowRequest", &name, NULL, &err) ||
        !sim_json_str(root, "system", "ShowRequest", &system, NULL, &err)) {
        json_decref(root);
        return reply_err(req, &err);
    }
    if (!*model)
        model = name;
    enum MHD_Result ok;
    sim_name_t n;
    sim_name_parse(model, &n);
    const sim_model_t *m = sim_name_valid(&n) ? sim_catalog_find(&n) : NULL;
    if (!*model) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "model is required");
    } else if (!sim_name_valid(&n)) {
        ok = sim_reply_error(req, MHD_HTTP_INTERNAL_SERVER_ERROR, "invalid model path");
    } else if (!m) {
        ok = reply_not_found(req, model);
    } else {
        sim_buf_t b = {0};
        sim_buf_str(&b, "{\"license\":");
        sim_buf_jcstr(&b, m->license);
        sim_buf_t part = {0};
        sim_catalog_modelfile(&part, m);
        sim_buf_str(&b, ",\"modelfile\":");
        sim_buf_jstr(&b, part.data, part.len);
        part.len = 0;
        sim_catalog_parameters(&part, m);
        if (part.len) {
            sim_buf_str(&b, ",\"parameters\":");
            sim_buf_jstr(&b, part.data, part.len);
        }
        sim_buf_free(&part);
        sim_buf_str(&b, ",\"template\":");
        sim_buf_jcstr(&b, m->template_text);
        const char *sys = *system ? system : m->system;
        if (sys && *sys) {
            sim_buf_str(&b, ",\"system\":");
            sim_buf_jcstr(&b, sys);
        }
        sim_buf_str(&b, ",\"details\":");
        sim_catalog_details(&b, m, true);
        sim_buf_str(&b, ",\"model_info\":");
        sim_catalog_model_info(&b, m);
        sim_buf_str(&b, ",\"capabilities\":");
        capabilities_json(&b, m->caps);
        sim_buf_str(&b, ",\"modified_at\":");
        sim_buf_time(&b, m->modified_sec, m->modified_nsec, false);
        sim_buf_str(&b, "}");
        ok = reply_json(req, &b);
    }
    json_decref(root);
    return ok;
}

/* ---- generate and chat: how they write ---- */

static void line_head(sim_infer_t *job, sim_buf_t *out)
{
    sim_buf_str(out, "{\"model\":");
    sim_buf_jcstr(out, job->model_echo);
    sim_buf_str(out, ",\"created_at\":");
    sim_buf_now_utc(out);
}

static void metrics_tail(sim_infer_t *job, sim_buf_t *out)
{
    sim_metrics_t m;
    sim_infer_metrics(job, &m);
    sim_buf_opt_i64(out, "total_duration", m.total);
    sim_buf_opt_i64(out, "load_duration", m.load);
    sim_buf_opt_i64(out, "prompt_eval_count", m.prompt_count);
    sim_buf_opt_i64(out, "prompt_eval_duration", m.prompt_eval);
    sim_buf_opt_i64(out, "eval_count", m.eval_count);
    sim_buf_opt_i64(out, "eval_duration", m.eval);
}

/* The answer's text in a final line: all of it when not streamed, else "" (the tokens went
 * before, one per line). */
static void answer_text(sim_infer_t *job, sim_buf_t *out, bool whole)
{
    if (whole) {
        sim_buf_t text = {0};
        sim_infer_text(job, &text);
        sim_buf_jstr(out, text.data ? text.data : "", text.len);
        sim_buf_free(&text);
    } else {
        sim_buf_str(out, "\"\"");
    }
}

static void gen_token(sim_infer_t *job, const char *word, size_t len, sim_buf_t *out)
{
    line_head(job, out);
    sim_buf_str(out, ",\"response\":");
    sim_buf_jstr(out, word, len);
    sim_buf_str(out, ",\"done\":false}\n");
}

static void gen_done(sim_infer_t *job, sim_buf_t *out, bool whole)
{
    line_head(job, out);
    sim_buf_str(out, ",\"response\":");
    answer_text(job, out, whole);
    sim_buf_fmt(out, ",\"done\":true,\"done_reason\":\"%s\"", sim_infer_done_reason(job));
    if (job->want_context) {
        sim_buf_str(out, ",\"context\":");
        sim_infer_context(job, out);
    }
    metrics_tail(job, out);
    sim_buf_str(out, whole ? "}" : "}\n");
}

static void gen_final(sim_infer_t *job, sim_buf_t *out)
{
    gen_done(job, out, false);
}

static void gen_whole(sim_infer_t *job, sim_buf_t *out)
{
    gen_done(job, out, true);
}

static const char *gen_load(sim_infer_t *job, sim_buf_t *out)
{
    line_head(job, out);
    sim_buf_str(out, ",\"response\":\"\",\"done\":true,\"done_reason\":\"load\"}");
    return CT_JSON;
}

static const sim_infer_ops_t GEN_OPS = {gen_token,       gen_final, gen_whole, gen_load,
                                        sim_reply_error, CT_NDJSON, CT_JSON};

static void chat_token(sim_infer_t *job, const char *word, size_t len, sim_buf_t *out)
{
    line_head(job, out);
    sim_buf_str(out, ",\"message\":{\"role\":\"assistant\",\"content\":");
    sim_buf_jstr(out, word, len);
    sim_buf_str(out, "},\"done\":false}\n");
}

static void chat_done(sim_infer_t *job, sim_buf_t *out, bool whole)
{
    line_head(job, out);
    sim_buf_str(out, ",\"message\":{\"role\":\"assistant\",\"content\":");
    answer_text(job, out, whole);
    sim_buf_fmt(out, "},\"done\":true,\"done_reason\":\"%s\"", sim_infer_done_reason(job));
    metrics_tail(job, out);
    sim_buf_str(out, whole ? "}" : "}\n");
}

static void chat_final(sim_infer_t *job, sim_buf_t *out)
{
    chat_done(job, out, false);
}

static void chat_whole(sim_infer_t *job, sim_buf_t *out)
{
    chat_done(job, out, true);
}

static const char *chat_load(sim_infer_t *job, sim_buf_t *out)
{
    line_head(job, out);
    sim_buf_str(out, ",\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done\":true,"
                     "\"done_reason\":\"load\"}");
    return CT_JSON;
}

static const sim_infer_ops_t CHAT_OPS = {chat_token,      chat_final, chat_whole, chat_load,
                                         sim_reply_error, CT_NDJSON,  CT_JSON};

/* ---- generate and chat: reading the request ---- */

typedef struct {
    const char *model;
    int stream;
    bool ka_set;
    int64_t ka;
    json_t *options;
    json_t *think;
} common_t;

static bool read_common(json_t *root, const char *where, common_t *c, sim_err_t *err)
{
    memset(c, 0, sizeof *c);
    c->model = "";
    c->stream = -1;
    if (!sim_json_str(root, "model", where, &c->model, NULL, err) ||
        !sim_json_bool(root, "stream", where, &c->stream, err) ||
        !sim_json_keep_alive(root, &c->ka_set, &c->ka, err))
        return false;
    c->options = sim_json_member(root, "options");
    if (c->options && !json_is_object(c->options)) {
        sim_err_set(err, 400,
                    "json: cannot unmarshal %s into Go struct field %s.options of type "
                    "map[string]interface {}",
                    sim_json_type_name(c->options), where);
        return false;
    }
    c->think = sim_json_member(root, "think");
    if (c->think && json_is_string(c->think)) {
        const char *t = json_string_value(c->think);
        if (strcmp(t, "high") != 0 && strcmp(t, "medium") != 0 && strcmp(t, "low") != 0) {
            sim_err_set(err, 400,
                        "invalid think value: \"%s\" (must be \"high\", \"medium\", \"low\", "
                        "true, or false)",
                        t);
            return false;
        }
    } else if (c->think && !json_is_boolean(c->think)) {
        sim_err_set(err, 400,
                    "think must be a boolean or string (\"high\", \"medium\", \"low\", "
                    "true, or false)");
        return false;
    }
    return true;
}

static enum MHD_Result unload_reply(sim_req_t *req, const sim_model_t *m, const char *echo,
                                    bool chat)
{
    sim_lock();
    sim_sched_unload_model(m);
    sim_unlock();
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"model\":");
    sim_buf_jcstr(&b, echo);
    sim_buf_str(&b, ",\"created_at\":");
    sim_buf_now_utc(&b);
    sim_buf_str(&b, chat ? ",\"message\":{\"role\":\"assistant\",\"content\":\"\"}"
                         : ",\"response\":\"\"");
    sim_buf_str(&b, ",\"done\":true,\"done_reason\":\"unload\"}");
    return reply_json(req, &b);
}

/* The checks Ollama makes between finding the model and scheduling it. */
static enum MHD_Result check_think(sim_req_t *req, const common_t *c)
{
    if (c->think && json_is_string(c->think)) {
        sim_err_t err;
        sim_err_set(&err, 400, "think value \"%s\" is not supported for this model",
                    json_string_value(c->think));
        return reply_err(req, &err);
    }
    if (c->think && json_is_true(c->think))
        return reply_errf(req, MHD_HTTP_BAD_REQUEST, "", c->model, " does not support thinking");
    return MHD_YES;
}

static enum MHD_Result start(sim_req_t *req, sim_infer_t *job, const common_t *c, json_t *root,
                             const char *key, size_t key_len)
{
    sim_err_t err = {0};
    int64_t seed = 0, num_predict = 0;
    if (!sim_infer_options(job, c->options, &seed, &num_predict, &err)) {
        sim_infer_free(job);
        json_decref(root);
        return reply_err(req, &err);
    }
    job->stream = c->stream != 0;
    job->w.has_keep_alive = c->ka_set;
    job->w.keep_alive_ns = c->ka;
    sim_infer_plan(job, key, key_len, seed, num_predict);
    json_decref(root);
    return sim_infer_start(req, job);
}

enum MHD_Result sim_route_generate(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    const char *W = "GenerateRequest";
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.GenerateRequest", &err);
    if (!root)
        return reply_err(req, &err);
    common_t c;
    const char *prompt = "", *suffix = "", *system = "", *tmpl = "";
    size_t prompt_len = 0, system_len = 0;
    int raw = 0;
    json_t *context = NULL;
    enum MHD_Result ok;
    if (!read_common(root, W, &c, &err) ||
        !sim_json_str(root, "prompt", W, &prompt, &prompt_len, &err) ||
        !sim_json_str(root, "suffix", W, &suffix, NULL, &err) ||
        !sim_json_str(root, "system", W, &system, &system_len, &err) ||
        !sim_json_str(root, "template", W, &tmpl, NULL, &err) ||
        !sim_json_bool(root, "raw", W, &raw, &err))
        goto bad;
    context = sim_json_member(root, "context");
    if (context) {
        if (!json_is_array(context)) {
            sim_err_set(&err, 400,
                        "json: cannot unmarshal %s into Go struct field %s.context of type []int",
                        sim_json_type_name(context), W);
            goto bad;
        }
        size_t i;
        json_t *v;
        json_array_foreach(context, i, v)
        {
            if (!json_is_integer(v)) {
                sim_err_set(&err, 400,
                            "json: cannot unmarshal %s into Go struct field %s.context of type int",
                            sim_json_type_name(v), W);
                goto bad;
            }
        }
    }

    sim_name_t name;
    sim_name_parse(c.model, &name);
    const sim_model_t *m = sim_name_valid(&name) ? sim_catalog_find(&name) : NULL;
    if (!m) {
        ok = reply_not_found(req, c.model);
        goto done;
    }
    if (prompt_len == 0 && c.ka_set && c.ka == 0) {
        ok = unload_reply(req, m, c.model, false);
        goto done;
    }
    if (raw && (*tmpl || *system || (context && json_array_size(context)))) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST,
                             "raw mode does not support template, system, or context");
        goto done;
    }
    if ((ok = check_think(req, &c)) != MHD_YES || req->answered)
        goto done;
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        ok = reply_errf(req, MHD_HTTP_BAD_REQUEST, "", c.model, " does not support generate");
        goto done;
    }
    if (*suffix && !(m->caps & SIM_CAP_INSERT)) {
        sim_err_set(&err, 400, "%s does not support insert", m->full);
        goto bad;
    }

    sim_infer_t *job = sim_infer_new(&GEN_OPS, m, c.model);
    job->load_only = prompt_len == 0;
    job->want_context = !raw;
    size_t nctx = context ? json_array_size(context) : 0;
    int prompt_count = sim_gen_count_tokens(prompt, prompt_len);
    job->prompt_tokens = (int)nctx + prompt_count + TPL_BOS + TPL_PER_MESSAGE + TPL_REPLY;
    if (system_len)
        job->prompt_tokens += TPL_PER_MESSAGE + sim_gen_count_tokens(system, system_len);
    job->prompt_ids = malloc(sizeof(int) * (nctx + (size_t)prompt_count + 1));
    if (job->prompt_ids) {
        for (size_t i = 0; i < nctx; i++)
            job->prompt_ids[i] = (int)json_integer_value(json_array_get(context, i));
        job->n_prompt_ids =
            (int)nctx + sim_gen_token_ids(prompt, prompt_len, job->prompt_ids + nctx);
    }
    sim_buf_t key = {0};
    sim_buf_add(&key, system, system_len);
    sim_buf_add(&key, "\0", 1);
    sim_buf_add(&key, prompt, prompt_len);
    sim_buf_add(&key, "\0", 1);
    sim_buf_str(&key, suffix);
    ok = start(req, job, &c, root, key.data, key.len);
    sim_buf_free(&key);
    return ok;
bad:
    ok = reply_err(req, &err);
done:
    json_decref(root);
    return ok;
}

enum MHD_Result sim_route_chat(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    const char *W = "ChatRequest";
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.ChatRequest", &err);
    if (!root)
        return reply_err(req, &err);
    common_t c;
    enum MHD_Result ok;
    sim_buf_t key = {0};
    int prompt_tokens = TPL_BOS + TPL_REPLY;
    if (!read_common(root, W, &c, &err))
        goto bad;
    json_t *messages = sim_json_member(root, "messages");
    if (messages && !json_is_array(messages)) {
        sim_err_set(
            &err, 400,
            "json: cannot unmarshal %s into Go struct field %s.messages of type []api.Message",
            sim_json_type_name(messages), W);
        goto bad;
    }
    size_t nmsg = messages ? json_array_size(messages) : 0;
    for (size_t i = 0; i < nmsg; i++) {
        json_t *msg = json_array_get(messages, i);
        const char *role = "", *content = "";
        size_t role_len = 0, content_len = 0;
        if (!json_is_object(msg)) {
            sim_err_set(
                &err, 400,
                "json: cannot unmarshal %s into Go struct field %s.messages of type api.Message",
                sim_json_type_name(msg), W);
            goto bad;
        }
        if (!sim_json_str(msg, "role", "ChatRequest.messages", &role, &role_len, &err) ||
            !sim_json_str(msg, "content", "ChatRequest.messages", &content, &content_len, &err))
            goto bad;
        sim_buf_add(&key, role, role_len);
        sim_buf_add(&key, "\0", 1);
        sim_buf_add(&key, content, content_len);
        sim_buf_add(&key, "\0", 1);
        prompt_tokens += TPL_PER_MESSAGE + sim_gen_count_tokens(content, content_len);
    }
    json_t *tools = sim_json_member(root, "tools");
    bool want_tools = tools && json_is_array(tools) && json_array_size(tools) > 0;

    sim_name_t name;
    sim_name_parse(c.model, &name);
    if (!sim_name_valid(&name)) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "model is required");
        goto done;
    }
    const sim_model_t *m = sim_catalog_find(&name);
    if (!m) {
        ok = reply_not_found(req, c.model);
        goto done;
    }
    if (nmsg == 0 && c.ka_set && c.ka == 0) {
        ok = unload_reply(req, m, c.model, true);
        goto done;
    }
    if ((ok = check_think(req, &c)) != MHD_YES || req->answered)
        goto done;
    if (!(m->caps & SIM_CAP_COMPLETION)) {
        ok = reply_errf(req, MHD_HTTP_BAD_REQUEST, "", c.model, " does not support chat");
        goto done;
    }
    if (want_tools && !(m->caps & SIM_CAP_TOOLS)) {
        sim_err_set(&err, 400, "%s does not support tools", m->full);
        goto bad;
    }
    sim_infer_t *job = sim_infer_new(&CHAT_OPS, m, c.model);
    job->load_only = nmsg == 0;
    job->prompt_tokens = prompt_tokens;
    ok = start(req, job, &c, root, key.data ? key.data : "", key.len);
    sim_buf_free(&key);
    return ok;
bad:
    ok = reply_err(req, &err);
done:
    sim_buf_free(&key);
    json_decref(root);
    return ok;
}
