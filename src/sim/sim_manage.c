/* sim_manage: the model store routes: pull, push, create, copy, delete and blobs. */
#include "sim_catalog.h"
#include "sim_config.h"
#include "sim_decode.h"
#include "sim_json.h"
#include "sim_log.h"
#include "sim_routes.h"

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define CT_JSON "application/json"
#define CT_JSON_UTF8 "application/json; charset=utf-8"
#define CT_NDJSON "application/x-ndjson"

/* Ollama reports download and upload progress on a 60 ms ticker. */
#define PROGRESS_TICK_NS (60 * SIM_NS_PER_MS)
/* A name containing this does not exist in the registry. */
#define MISSING_MARK "doesnotexist"

/* A progress stream: status lines, each due at a set time, the last maybe an error. */
typedef struct {
    sim_buf_t text;
    size_t *ends;
    int64_t *due;
    int n, cap, next;
    bool error_last;
    unsigned error_status;
    bool stream;
    int64_t t;               /* due time of the next line added */
    sim_model_t *publish[2]; /* installed when "success" goes out (a create may pull first) */
    bool published;
} prog_t;

static prog_t *prog_new(bool stream)
{
    prog_t *p = calloc(1, sizeof *p);
    if (!p)
        sim_die("out of memory");
    p->stream = stream;
    p->t = sim_mono_ns();
    p->error_status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    return p;
}

static void prog_free(prog_t *p)
{
    if (!p)
        return;
    if (!p->published)
        for (int i = 0; i < 2; i++)
            if (p->publish[i]) {
                free(p->publish[i]->system);
                free(p->publish[i]->template_owned);
                free(p->publish[i]);
            }
    sim_buf_free(&p->text);
    free(p->ends);
    free(p->due);
    free(p);
}

static void prog_end_line(prog_t *p)
{
    if (p->n == p->cap) {
        p->cap = p->cap ? p->cap * 2 : 16;
        size_t *ends = realloc(p->ends, (size_t)p->cap * sizeof *ends);
        int64_t *due = realloc(p->due, (size_t)p->cap * sizeof *due);
        if (ends)
            p->ends = ends;
        if (due)
            p->due = due;
        if (!ends || !due)
            sim_die("out of memory");
    }
    sim_buf_add(&p->text, "\n", 1);
    p->ends[p->n] = p->text.len;
    p->due[p->n] = p->t;
    p->n++;
}

static void prog_status(prog_t *p, const char *status)
{
    sim_buf_str(&p->text, "{\"status\":");
    sim_buf_jcstr(&p->text, status);
    sim_buf_str(&p->text, "}");
    prog_end_line(p);
}

static void prog_error(prog_t *p, const char *msg)
{
    sim_buf_str(&p->text, "{\"error\":");
    sim_buf_jcstr(&p->text, msg);
    sim_buf_str(&p->text, "}");
    prog_end_line(p);
    p->error_last = true;
}

/* One layer's progress lines: "pulling 6a0746a1ec1a" (or pushing) with digest, total and
 * completed, on the ticker while the transfer takes `spend` ns. */
static void prog_layer(prog_t *p, const char *verb, const char *digest, int64_t total,
                       int64_t spend)
{
    int ticks = spend > 0 ? (int)(spend / PROGRESS_TICK_NS) : 0;
    if (ticks < 1)
        ticks = 1;
    for (int k = 1; k <= ticks; k++) {
        p->t += spend / ticks;
        int64_t done = k == ticks ? total : (int64_t)((double)total * k / ticks);
        sim_buf_fmt(&p->text, "{\"status\":\"%s %.12s\",\"digest\":\"%s\"", verb, digest + 7,
                    digest);
        if (total)
            sim_buf_fmt(&p->text, ",\"total\":%lld", (long long)total);
        if (done)
            sim_buf_fmt(&p->text, ",\"completed\":%lld", (long long)done);
        sim_buf_str(&p->text, "}");
        prog_end_line(p);
    }
}

static void publish_now(prog_t *p)
{
    if (p->published)
        return;
    p->published = true;
    struct timespec now;
    sim_wall(&now);
    for (int i = 0; i < 2; i++) {
        if (!p->publish[i])
            continue;
        p->publish[i]->modified_sec = now.tv_sec;
        p->publish[i]->modified_nsec = now.tv_nsec + i; /* the created model lists first */
        sim_catalog_publish(p->publish[i]);
    }
}

static int64_t prog_pump(sim_req_t *req, int64_t now, sim_buf_t *out)
{
    prog_t *p = req->job;
    while (p->next < p->n && p->due[p->next] <= now) {
        size_t start = p->next ? p->ends[p->next - 1] : 0;
        sim_buf_add(out, p->text.data + start, p->ends[p->next] - start);
        p->next++;
    }
    if (p->next < p->n)
        return p->due[p->next];
    if (!p->error_last)
        publish_now(p);
    return 0;
}

static void prog_job_free(sim_req_t *req)
{
    prog_free(req->job);
    req->job = NULL;
}

static enum MHD_Result prog_run(sim_req_t *req)
{
    prog_t *p = req->job;
    if (sim_req_canceled(req))
        return MHD_NO;
    if (p->stream)
        return sim_reply_stream(req, CT_NDJSON, prog_pump);
    int64_t last = p->n ? p->due[p->n - 1] : 0;
    if (sim_mono_ns() < last) {
        sim_lock();
        if (!sim_req_canceled(req)) {
            sim_req_wake_at(req, last);
            sim_req_suspend(req);
        }
        sim_unlock();
        return MHD_YES;
    }
    /* stream:false: the last progress object alone, or the error */
    size_t start = p->n > 1 ? p->ends[p->n - 2] : 0;
    size_t len = p->ends[p->n - 1] - start - 1;
    if (p->error_last) {
        json_t *e = json_loadb(p->text.data + start, len, 0, NULL);
        const char *msg = e ? json_string_value(json_object_get(e, "error")) : NULL;
        enum MHD_Result ok =
            sim_reply_error_plain(req, p->error_status, msg ? msg : "unknown error");
        json_decref(e);
        return ok;
    }
    publish_now(p);
    sim_buf_t b = {0};
    sim_buf_add(&b, p->text.data + start, len);
    return sim_reply(req, MHD_HTTP_OK, CT_JSON, &b);
}

static enum MHD_Result prog_start(sim_req_t *req, prog_t *p)
{
    req->job = p;
    req->job_free = prog_job_free;
    return prog_run(req);
}

/* ---- pull ---- */

static bool missing_in_registry(const char *name)
{
    return strcasestr(name, MISSING_MARK) != NULL;
}

/* The lines of a pull of n; the model to install, or NULL when the registry has none. */
static sim_model_t *pull_lines(prog_t *p, const sim_name_t *n)
{
    char shown[SIM_NAME_MAX];
    sim_name_shortest(n, shown, sizeof shown);
    prog_status(p, "pulling manifest");
    if (missing_in_registry(shown)) {
        prog_error(p, "pull model manifest: file does not exist");
        return NULL;
    }
    const sim_model_t *have = sim_catalog_find(n);
    sim_model_t *m = have ? sim_catalog_derive(have, n) : sim_catalog_describe(n);
    int64_t small = 0;
    for (int i = 0; i < 4; i++)
        small += m->layer_sizes[i];
    int64_t spend = have ? 0 : sim_cfg.pull_ns;
    prog_layer(p, "pulling", m->blob, m->size > small ? m->size - small : m->size, spend);
    for (int i = 0; i < 4; i++)
        if (m->layer_sizes[i])
            prog_layer(p, "pulling", m->layers[i], m->layer_sizes[i], 0);
    prog_status(p, "verifying sha256 digest");
    prog_status(p, "writing manifest");
    return m;
}

typedef struct {
    const char *model, *name;
    int stream;
} store_req_t;

static bool read_store(sim_req_t *req, const char *go_type, const char *where, store_req_t *s,
                       json_t **root, sim_err_t *err)
{
    s->model = s->name = "";
    s->stream = -1;
    *root = sim_json_parse(req->body.data, req->body.len, go_type, err);
    if (!*root)
        return false;
    if (!sim_json_str(*root, "model", where, &s->model, NULL, err) ||
        !sim_json_str(*root, "name", where, &s->name, NULL, err) ||
        !sim_json_bool(*root, "stream", where, &s->stream, err)) {
        json_decref(*root);
        *root = NULL;
        return false;
    }
    return true;
}

enum MHD_Result sim_route_pull(sim_req_t *req)
{
    if (req->job)
        return prog_run(req);
    store_req_t s;
    json_t *root;
    sim_err_t err = {0};
    if (!read_store(req, "api.PullRequest", "PullRequest", &s, &root, &err))
        return sim_reply_error(req, (unsigned)err.status, err.msg);
    sim_name_t n;
    sim_name_parse(*s.model ? s.model : s.name, &n);
    json_decref(root);
    if (!sim_name_valid(&n))
        return sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "invalid model name");
    prog_t *p = prog_new(s.stream != 0);
    p->publish[0] = pull_lines(p, &n);
    if (p->publish[0])
        prog_status(p, "success");
    return prog_start(req, p);
}

/* ---- push ---- */

enum MHD_Result sim_route_push(sim_req_t *req)
{
    if (req->job)
        return prog_run(req);
    store_req_t s;
    json_t *root;
    sim_err_t err = {0};
    if (!read_store(req, "api.PushRequest", "PushRequest", &s, &root, &err))
        return sim_reply_error(req, (unsigned)err.status, err.msg);
    const char *mname = *s.model ? s.model : s.name;
    if (!*mname) {
        json_decref(root);
        return sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "model is required");
    }
    sim_name_t n;
    sim_name_parse(mname, &n);
    json_decref(root);
    prog_t *p = prog_new(s.stream != 0);
    prog_status(p, "retrieving manifest");
    const sim_model_t *m = sim_name_valid(&n) ? sim_catalog_find(&n) : NULL;
    if (!m) {
        const char *dir = getenv("OLLAMA_MODELS");
        const char *home = getenv("HOME");
        sim_buf_t msg = {0};
        if (dir && *dir)
            sim_buf_fmt(&msg, "open %s/manifests/", dir);
        else
            sim_buf_fmt(&msg, "open %s/.ollama/models/manifests/", home && *home ? home : "/root");
        sim_buf_fmt(&msg, "%s/%s/%s/%s: no such file or directory", n.host, n.ns, n.model, n.tag);
        prog_status(p, "couldn't retrieve manifest");
        prog_error(p, msg.data);
        sim_buf_free(&msg);
        return prog_start(req, p);
    }
    int64_t small = 0;
    for (int i = 0; i < 4; i++)
        small += m->layer_sizes[i];
    prog_layer(p, "pushing", m->blob, m->size > small ? m->size - small : m->size, sim_cfg.pull_ns);
    for (int i = 0; i < 4; i++)
        if (m->layer_sizes[i])
            prog_layer(p, "pushing", m->layers[i], m->layer_sizes[i], 0);
    prog_status(p, "pushing manifest");
    prog_status(p, "success");
    return prog_start(req, p);
}

/* ---- create ---- */

static void layer_status(prog_t *p, bool fresh, const char *digest)
{
    sim_buf_t line = {0};
    sim_buf_fmt(&line, "%s %s", fresh ? "creating new layer" : "using existing layer", digest);
    prog_status(p, line.data);
    sim_buf_free(&line);
}

static void text_digest(const char *text, char out[SIM_DIGEST_HEX + 8])
{
    char hex[SIM_DIGEST_HEX + 1];
    sim_sha256_hex(text, strlen(text), hex);
    snprintf(out, SIM_DIGEST_HEX + 8, "sha256:%s", hex);
}

/* parameters: {"stop": ["a","b"], "temperature": 0.7} into the model's parameter list. */
static void set_parameters(sim_model_t *m, json_t *params)
{
    m->nparams = 0;
    const char *key;
    json_t *v;
    json_object_foreach(params, key, v)
    {
        size_t count = json_is_array(v) ? json_array_size(v) : 1;
        for (size_t i = 0; i < count && m->nparams < SIM_MAX_PARAMS; i++) {
            json_t *item = json_is_array(v) ? json_array_get(v, i) : v;
            char value[96];
            bool quoted = json_is_string(item);
            if (quoted)
                snprintf(value, sizeof value, "%s", json_string_value(item));
            else if (json_is_integer(item))
                snprintf(value, sizeof value, "%lld", (long long)json_integer_value(item));
            else if (json_is_real(item))
                snprintf(value, sizeof value, "%g", json_real_value(item));
            else if (json_is_boolean(item))
                snprintf(value, sizeof value, "%s", json_is_true(item) ? "true" : "false");
            else
                continue;
            snprintf(m->params[m->nparams].key, sizeof m->params[0].key, "%s", key);
            snprintf(m->params[m->nparams].value, sizeof m->params[0].value, "%s", value);
            m->params[m->nparams].quoted = quoted;
            m->nparams++;
        }
    }
}

/* Go's fs.ValidPath: relative, slash-separated, no empty, "." or ".." elements. */
static bool valid_file_path(const char *path)
{
    if (strcmp(path, ".") == 0)
        return true;
    for (const char *seg = path;;) {
        size_t len = strcspn(seg, "/");
        if (len == 0 || (len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
            return false;
        if (!seg[len])
            return true;
        seg += len + 1;
    }
}

enum MHD_Result sim_route_create(sim_req_t *req)
{
    if (req->job)
        return prog_run(req);
    store_req_t s;
    json_t *root;
    sim_err_t err = {0};
    const char *W = "CreateRequest";
    if (!read_store(req, "api.CreateRequest", W, &s, &root, &err))
        return sim_reply_error(req, (unsigned)err.status, err.msg);
    const char *from = "", *tmpl = "", *system = "";
    enum MHD_Result ok;
    if (!sim_json_str(root, "from", W, &from, NULL, &err) ||
        !sim_json_str(root, "template", W, &tmpl, NULL, &err) ||
        !sim_json_str(root, "system", W, &system, NULL, &err)) {
        ok = sim_reply_error(req, (unsigned)err.status, err.msg);
        goto done;
    }
    json_t *files = sim_json_member(root, "files");
    json_t *params = sim_json_member(root, "parameters");
    json_t *license = sim_json_member(root, "license");
    if ((files && !json_is_object(files)) || (params && !json_is_object(params))) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST,
                             "json: cannot unmarshal value into Go struct field of type map");
        goto done;
    }
    const char *fname;
    json_t *fdigest;
    json_object_foreach(files, fname, fdigest)
    {
        if (!valid_file_path(fname)) {
            ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "file path must be relative");
            goto done;
        }
    }
    sim_name_t n;
    sim_name_parse(*s.model ? s.model : s.name, &n);
    if (!sim_name_valid(&n)) {
        ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "invalid model name");
        goto done;
    }
    if (!*from && !files) {
        ok = sim_reply_error_plain(req, MHD_HTTP_BAD_REQUEST,
                                   "neither 'from' or 'files' was specified");
        goto done;
    }
    prog_t *p = prog_new(s.stream != 0);
    sim_model_t *m = NULL;
    if (*from) {
        sim_name_t fn;
        sim_name_parse(from, &fn);
        if (!sim_name_valid(&fn)) {
            prog_free(p);
            ok = sim_reply_error_plain(req, MHD_HTTP_BAD_REQUEST, "invalid model name");
            goto done;
        }
        const sim_model_t *src = sim_catalog_find(&fn);
        if (!src) {
            /* Ollama pulls a missing base model first */
            p->publish[1] = pull_lines(p, &fn);
            if (!p->publish[1]) {
                json_decref(root);
                return prog_start(req, p);
            }
            src = p->publish[1];
        }
        m = sim_catalog_derive(src, &n);
        sim_name_shortest(&fn, m->parent, sizeof m->parent);
        layer_status(p, false, m->blob);
        layer_status(p, false, m->layers[0]);
        layer_status(p, false, m->layers[1]);
        if (m->nparams && !params)
            layer_status(p, false, m->layers[2]);
    } else {
        const char *key;
        json_t *d;
        int64_t total = 0;
        const char *first = NULL;
        json_object_foreach(files, key, d)
        {
            const char *digest = json_is_string(d) ? json_string_value(d) : "";
            if (!sim_blob_valid(digest) || !sim_blob_exists(digest)) {
                sim_buf_t msg = {0};
                if (!sim_blob_valid(digest))
                    sim_buf_str(&msg, "invalid digest format");
                else
                    sim_buf_fmt(&msg,
                                "open %s/.ollama/models/blobs/sha256-%s: no such file or directory",
                                getenv("HOME") ? getenv("HOME") : "/root", digest + 7);
                prog_error(p, msg.data);
                sim_buf_free(&msg);
                json_decref(root);
                return prog_start(req, p);
            }
            int64_t size = sim_blob_size(digest);
            total += size > 0 ? size : 0;
            if (!first)
                first = digest;
        }
        prog_status(p, "parsing GGUF");
        m = sim_catalog_describe(&n);
        if (first)
            snprintf(m->blob, sizeof m->blob, "sha256:%s", first + 7);
        if (total > 0)
            m->size = total;
        layer_status(p, false, m->blob);
    }
    if (*tmpl) {
        free(m->template_owned);
        m->template_owned = strdup(tmpl);
        m->template_text = m->template_owned ? m->template_owned : m->template_text;
        text_digest(m->template_text, m->layers[0]);
        layer_status(p, true, m->layers[0]);
    }
    if (*system) {
        free(m->system);
        m->system = strdup(system);
        char d[SIM_DIGEST_HEX + 8];
        text_digest(system, d);
        layer_status(p, true, d);
    }
    if (license && (json_is_string(license) || json_is_array(license))) {
        char d[SIM_DIGEST_HEX + 8];
        text_digest(json_is_string(license) ? json_string_value(license) : "licenses", d);
        layer_status(p, true, d);
    }
    if (params) {
        set_parameters(m, params);
        sim_buf_t pj = {0};
        for (int i = 0; i < m->nparams; i++)
            sim_buf_fmt(&pj, "%s=%s;", m->params[i].key, m->params[i].value);
        text_digest(pj.data ? pj.data : "", m->layers[2]);
        sim_buf_free(&pj);
        layer_status(p, true, m->layers[2]);
    }
    sim_catalog_rehash(m);
    p->publish[0] = m;
    prog_status(p, "writing manifest");
    prog_status(p, "success");
    json_decref(root);
    return prog_start(req, p);
done:
    json_decref(root);
    return ok;
}

/* ---- copy, delete ---- */

static enum MHD_Result reply_quoted(sim_req_t *req, unsigned status, const char *pre, const char *q,
                                    const char *post)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, pre);
    sim_buf_goquote(&b, q);
    sim_buf_str(&b, post);
    enum MHD_Result ok = sim_reply_error(req, status, b.data);
    sim_buf_free(&b);
    return ok;
}

enum MHD_Result sim_route_copy(sim_req_t *req)
{
    sim_err_t err = {0};
    json_t *root = sim_json_parse(req->body.data, req->body.len, "api.CopyRequest", &err);
    if (!root)
        return sim_reply_error(req, (unsigned)err.status, err.msg);
    const char *source = "", *destination = "";
    enum MHD_Result ok;
    if (!sim_json_str(root, "source", "CopyRequest", &source, NULL, &err) ||
        !sim_json_str(root, "destination", "CopyRequest", &destination, NULL, &err)) {
        ok = sim_reply_error(req, (unsigned)err.status, err.msg);
        goto done;
    }
    sim_name_t src, dst;
    sim_name_parse(source, &src);
    sim_name_parse(destination, &dst);
    if (!sim_name_valid(&src))
        ok = reply_quoted(req, MHD_HTTP_BAD_REQUEST, "source ", source, " is invalid");
    else if (!sim_name_valid(&dst))
        ok = reply_quoted(req, MHD_HTTP_BAD_REQUEST, "destination ", destination, " is invalid");
    else if (sim_catalog_copy(&src, &dst) != 0)
        ok = reply_quoted(req, MHD_HTTP_NOT_FOUND, "model ", source, " not found");
    else
        ok = sim_reply(req, MHD_HTTP_OK, NULL, NULL);
done:
    json_decref(root);
    return ok;
}

enum MHD_Result sim_route_delete(sim_req_t *req)
{
    store_req_t s;
    json_t *root;
    sim_err_t err = {0};
    if (!read_store(req, "api.DeleteRequest", "DeleteRequest", &s, &root, &err))
        return sim_reply_error(req, (unsigned)err.status, err.msg);
    const char *given = *s.model ? s.model : s.name;
    sim_name_t n;
    sim_name_parse(given, &n);
    enum MHD_Result ok;
    if (!sim_name_valid(&n)) {
        ok = reply_quoted(req, MHD_HTTP_BAD_REQUEST, "name ", given, " is invalid");
    } else if (sim_catalog_delete(&n) != 0) {
        sim_err_set(&err, 404, "model '%s' not found", given);
        ok = sim_reply_error(req, MHD_HTTP_NOT_FOUND, err.msg);
    } else {
        ok = sim_reply(req, MHD_HTTP_OK, NULL, NULL);
    }
    json_decref(root);
    return ok;
}

/* ---- blobs ---- */

enum MHD_Result sim_route_blob(sim_req_t *req)
{
    const char *digest = req->param;
    if (!sim_blob_valid(digest))
        return sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "invalid digest format");
    if (req->method == SIM_M_HEAD) {
        if (sim_blob_exists(digest))
            return sim_reply(req, MHD_HTTP_OK, NULL, NULL);
        sim_buf_t msg = {0};
        sim_buf_str(&msg, "blob ");
        sim_buf_goquote(&msg, digest);
        sim_buf_str(&msg, " not found");
        enum MHD_Result ok = sim_reply_error(req, MHD_HTTP_NOT_FOUND, msg.data);
        sim_buf_free(&msg);
        return ok;
    }
    if (sim_blob_exists(digest))
        return sim_reply(req, MHD_HTTP_OK, NULL, NULL);
    unsigned char h[crypto_hash_sha256_BYTES];
    crypto_hash_sha256_final(&req->sha, h);
    char got[SIM_DIGEST_HEX + 8] = "sha256:";
    sodium_bin2hex(got + 7, SIM_DIGEST_HEX + 1, h, sizeof h);
    if (strcmp(got, digest) != 0) {
        sim_buf_t msg = {0};
        sim_buf_str(&msg, "digest mismatch, expected ");
        sim_buf_goquote(&msg, digest);
        sim_buf_str(&msg, ", got ");
        sim_buf_goquote(&msg, got);
        enum MHD_Result ok = sim_reply_error(req, MHD_HTTP_BAD_REQUEST, msg.data);
        sim_buf_free(&msg);
        return ok;
    }
    sim_blob_add(digest, req->blob_bytes);
    return sim_reply(req, MHD_HTTP_CREATED, NULL, NULL);
}
