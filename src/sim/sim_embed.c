/* sim_embed: /api/embed and the older /api/embeddings: deterministic unit vectors. */
#include "sim_catalog.h"
#include "sim_config.h"
#include "sim_decode.h"
#include "sim_gen.h"
#include "sim_infer.h"
#include "sim_json.h"
#include "sim_routes.h"

#include <stdlib.h>
#include <string.h>

#define CT_JSON "application/json; charset=utf-8"

static enum MHD_Result reply_err(sim_req_t *req, const sim_err_t *err)
{
    return sim_reply_error(req, (unsigned)err->status, err->msg);
}

/* The fields both routes share. */
typedef struct {
    const char *model;
    bool ka_set;
    int64_t ka;
    json_t *options;
} common_t;

static bool read_common(json_t *root, const char *where, common_t *c, sim_err_t *err)
{
    memset(c, 0, sizeof *c);
    c->model = "";
    if (!sim_json_str(root, "model", where, &c->model, NULL, err) ||
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
    return true;
}

static void embed_vectors(sim_infer_t *job, sim_buf_t *out, bool f64)
{
    int dim = sim_cfg.embed_dim;
    float *v = malloc(sizeof(float) * (size_t)dim);
    if (!v)
        return;
    for (int i = 0; i < job->ninputs; i++) {
        sim_gen_embedding(job->w.model->blob, job->inputs[i], job->input_lens[i], v, dim);
        int d = dim;
        if (job->dimensions > 0 && job->dimensions < dim) {
            d = job->dimensions;
            sim_gen_normalize(v, d);
        }
        if (i)
            sim_buf_add(out, ",", 1);
        if (!f64)
            sim_buf_add(out, "[", 1);
        sim_buf_reserve(out, (size_t)d * 12);
        for (int k = 0; k < d; k++) {
            if (k)
                sim_buf_add(out, ",", 1);
            if (f64)
                sim_buf_f64(out, (double)v[k]);
            else
                sim_buf_f32(out, v[k]);
        }
        if (!f64)
            sim_buf_add(out, "]", 1);
    }
    free(v);
}

static void embed_whole(sim_infer_t *job, sim_buf_t *out)
{
    sim_buf_str(out, "{\"model\":");
    sim_buf_jcstr(out, job->model_echo);
    sim_buf_str(out, ",\"embeddings\":[");
    embed_vectors(job, out, false);
    sim_buf_str(out, "]");
    if (job->ninputs) {
        sim_metrics_t m;
        sim_infer_metrics(job, &m);
        sim_buf_opt_i64(out, "total_duration", m.total);
        sim_buf_opt_i64(out, "load_duration", m.load);
        sim_buf_opt_i64(out, "prompt_eval_count", m.prompt_count);
    }
    sim_buf_str(out, "}");
}

static const sim_infer_ops_t EMBED_OPS = {NULL, NULL,   embed_whole, NULL, sim_reply_error,
                                          NULL, CT_JSON};

static void embeddings_whole(sim_infer_t *job, sim_buf_t *out)
{
    sim_buf_str(out, "{\"embedding\":[");
    embed_vectors(job, out, true);
    sim_buf_str(out, "]}");
}

static const sim_infer_ops_t EMBEDDINGS_OPS = {
    NULL, NULL, embeddings_whole, NULL, sim_reply_error, NULL, CT_JSON};

static enum MHD_Result reply_try_pulling(sim_req_t *req, const char *model)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, "model ");
    sim_buf_goquote(&b, model);
    sim_buf_str(&b, " not found, try pulling it first");
    enum MHD_Result ok = sim_reply_error(req, MHD_HTTP_NOT_FOUND, b.data);
    sim_buf_free(&b);
    return ok;
}

/* Token counts as the embedding runner sees them, truncated to the context unless refused. */
static bool embed_count(sim_infer_t *job, bool truncate, sim_err_t *err)
{
    int64_t ctx = job->w.num_ctx < job->w.model->context_length ? job->w.num_ctx
                                                                : job->w.model->context_length;
    for (int i = 0; i < job->ninputs; i++) {
        int n = sim_gen_count_tokens(job->inputs[i], job->input_lens[i]);
        if (n > ctx) {
            if (!truncate) {
                sim_err_set(err, 400, "input exceeds maximum context length");
                return false;
            }
            n = (int)ctx;
        }
        job->prompt_tokens += n;
    }
    return true;
}

enum MHD_Result sim_route_embed(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    const char *W = "EmbedRequest";
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.EmbedRequest", &err);
    if (!root)
        return reply_err(req, &err);
    common_t c;
    int truncate = 1;
    int64_t dims = 0;
    sim_infer_t *job = NULL;
    enum MHD_Result ok;
    if (!read_common(root, W, &c, &err) || !sim_json_bool(root, "truncate", W, &truncate, &err) ||
        !sim_json_int(root, "dimensions", W, &dims, NULL, &err))
        goto bad;
    json_t *input = sim_json_member(root, "input");
    if (input && !json_is_string(input) && !json_is_array(input)) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "invalid input type");
        goto done;
    }
    if (input && json_is_array(input)) {
        size_t i;
        json_t *v;
        json_array_foreach(input, i, v)
        {
            if (!json_is_string(v)) {
                ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "invalid input type");
                goto done;
            }
        }
    }
    sim_name_t name;
    sim_name_parse(c.model, &name);
    const sim_model_t *m = sim_name_valid(&name) ? sim_catalog_find(&name) : NULL;
    if (!m) {
        ok = reply_try_pulling(req, c.model);
        goto done;
    }
    job = sim_infer_new(&EMBED_OPS, m, c.model);
    if (input && json_is_string(input) && json_string_length(input))
        sim_infer_add_input(job, json_string_value(input), json_string_length(input));
    if (input && json_is_array(input)) {
        size_t i;
        json_t *v;
        json_array_foreach(input, i, v)
            sim_infer_add_input(job, json_string_value(v), json_string_length(v));
    }
    job->dimensions = (int)(dims > 0 && dims < 1 << 20 ? dims : 0);
    job->w.need_slot = job->ninputs > 0;
    int64_t seed = 0, np = 0;
    if (!sim_infer_options(job, c.options, &seed, &np, &err) || !embed_count(job, truncate, &err))
        goto bad;
    job->w.has_keep_alive = c.ka_set;
    job->w.keep_alive_ns = c.ka;
    json_decref(root);
    return sim_infer_start(req, job);
bad:
    ok = reply_err(req, &err);
done:
    sim_infer_free(job);
    json_decref(root);
    return ok;
}

enum MHD_Result sim_route_embeddings(sim_req_t *req)
{
    if (req->job)
        return sim_infer_continue(req);
    sim_err_t err = {0};
    const char *W = "EmbeddingRequest";
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.EmbeddingRequest", &err);
    if (!root)
        return reply_err(req, &err);
    common_t c;
    const char *prompt = "";
    size_t prompt_len = 0;
    sim_infer_t *job = NULL;
    enum MHD_Result ok;
    if (!read_common(root, W, &c, &err) ||
        !sim_json_str(root, "prompt", W, &prompt, &prompt_len, &err))
        goto bad;
    sim_name_t name;
    sim_name_parse(c.model, &name);
    if (!sim_name_valid(&name)) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "model is required");
        goto done;
    }
    const sim_model_t *m = sim_catalog_find(&name);
    if (!m) {
        ok = reply_try_pulling(req, c.model);
        goto done;
    }
    job = sim_infer_new(&EMBEDDINGS_OPS, m, c.model);
    if (prompt_len)
        sim_infer_add_input(job, prompt, prompt_len);
    job->w.need_slot = prompt_len > 0;
    int64_t seed = 0, np = 0;
    if (!sim_infer_options(job, c.options, &seed, &np, &err))
        goto bad;
    job->prompt_tokens = sim_gen_count_tokens(prompt, prompt_len);
    job->w.has_keep_alive = c.ka_set;
    job->w.keep_alive_ns = c.ka;
    json_decref(root);
    return sim_infer_start(req, job);
bad:
    ok = reply_err(req, &err);
done:
    sim_infer_free(job);
    json_decref(root);
    return ok;
}
