/* sim_infer: one scheduled generate/chat/embed request: plan, timing, streaming, metrics. */
#include "sim_infer.h"

#include "sim_config.h"
#include "sim_gen.h"
#include "sim_log.h"

#include <stdlib.h>
#include <string.h>

/* A stream hands MHD at most this much before letting it write (tokens-per-sec 0 streams
 * would otherwise build their whole reply in memory first). */
#define STREAM_BUDGET (32 * 1024)
/* Prompt processing runs this many times faster than generation (typical on a GPU). */
#define PROMPT_SPEEDUP 25
/* Nominal cost of a prompt token when tokens-per-sec is 0. */
#define PROMPT_TOKEN_NS_FAST 1000

#define BUSY_MESSAGE "server busy, please try again.  maximum pending requests exceeded"

sim_infer_t *sim_infer_new(const sim_infer_ops_t *ops, const sim_model_t *model,
                           const char *model_echo)
{
    sim_infer_t *job = calloc(1, sizeof *job);
    if (!job)
        sim_die("out of memory");
    job->ops = ops;
    job->w.model = model;
    job->w.need_slot = true;
    job->w.num_ctx = sim_cfg.num_ctx;
    job->model_echo = strdup(model_echo);
    if (!job->model_echo)
        sim_die("out of memory");
    job->interval = sim_cfg.tokens_per_sec > 0 ? (int64_t)(1e9 / sim_cfg.tokens_per_sec) : 0;
    return job;
}

void sim_infer_plan(sim_infer_t *job, const char *key, size_t key_len, int64_t seed,
                    int64_t num_predict)
{
    const char *blob = job->w.model->blob;
    uint64_t h = sim_hash(SIM_HASH_INIT, blob, strlen(blob));
    h = sim_hash(h, "\0", 1);
    h = sim_hash(h, key, key_len);
    h = sim_hash(h, &seed, sizeof seed);
    job->rng = h;
    if (num_predict > 0) {
        job->n_target =
            num_predict > SIM_INFER_MAX_TOKENS ? SIM_INFER_MAX_TOKENS : (int)num_predict;
        job->by_length = true;
    } else {
        uint64_t pick = h;
        job->n_target = SIM_GEN_MIN_TOKENS +
                        (int)(sim_rng_next(&pick) % (SIM_GEN_MAX_TOKENS - SIM_GEN_MIN_TOKENS + 1));
    }
}

void sim_infer_add_stop(sim_infer_t *job, const char *stop)
{
    while (*stop == ' ')
        stop++;
    if (!*stop || job->nstops == SIM_INFER_MAX_STOPS)
        return;
    job->stops[job->nstops] = strdup(stop);
    if (job->stops[job->nstops])
        job->nstops++;
}

static bool option_int(json_t *options, const char *key, int64_t *out, sim_err_t *err)
{
    json_t *v = json_object_get(options, key);
    if (!v || json_is_null(v))
        return true;
    if (!json_is_number(v)) {
        sim_err_set(err, 500, "option \"%s\" must be of type integer", key);
        return false;
    }
    *out = json_is_integer(v) ? json_integer_value(v) : (int64_t)json_real_value(v);
    return true;
}

bool sim_infer_options(sim_infer_t *job, json_t *options, int64_t *seed, int64_t *num_predict,
                       sim_err_t *err)
{
    if (!options)
        return true;
    int64_t num_ctx = job->w.num_ctx;
    if (!option_int(options, "num_ctx", &num_ctx, err) || !option_int(options, "seed", seed, err) ||
        !option_int(options, "num_predict", num_predict, err))
        return false;
    /* Ollama's scheduler never runs a model with fewer than 4 context tokens */
    job->w.num_ctx = num_ctx < 4 ? 4 : num_ctx > (1 << 24) ? (1 << 24) : (int)num_ctx;
    json_t *stop = json_object_get(options, "stop");
    if (stop && !json_is_null(stop)) {
        if (!json_is_array(stop)) {
            sim_err_set(err, 500, "option \"stop\" must be of type array");
            return false;
        }
        size_t i;
        json_t *s;
        json_array_foreach(stop, i, s)
        {
            if (!json_is_string(s)) {
                sim_err_set(err, 500, "option \"stop\" must be of an array of strings");
                return false;
            }
            sim_infer_add_stop(job, json_string_value(s));
        }
    }
    return true;
}

void sim_infer_add_input(sim_infer_t *job, const char *text, size_t len)
{
    char **inputs = realloc(job->inputs, (size_t)(job->ninputs + 1) * sizeof *inputs);
    size_t *lens = realloc(job->input_lens, (size_t)(job->ninputs + 1) * sizeof *lens);
    if (inputs)
        job->inputs = inputs;
    if (lens)
        job->input_lens = lens;
    if (!inputs || !lens)
        sim_die("out of memory");
    job->inputs[job->ninputs] = malloc(len + 1);
    if (!job->inputs[job->ninputs])
        sim_die("out of memory");
    memcpy(job->inputs[job->ninputs], text, len);
    job->inputs[job->ninputs][len] = '\0';
    job->input_lens[job->ninputs] = len;
    job->ninputs++;
}

void sim_infer_free(sim_infer_t *job)
{
    if (!job)
        return;
    free(job->model_echo);
    for (int i = 0; i < job->nstops; i++)
        free(job->stops[i]);
    for (int i = 0; i < job->ninputs; i++)
        free(job->inputs[i]);
    free(job->inputs);
    free(job->input_lens);
    free(job->prompt_ids);
    free(job->words);
    free(job->route_data);
    free(job);
}

/* The words this request will produce, decided up front so that streaming and stream:false
 * say the same thing. A stop string ends the reply before the word that contains it. */
static void plan_words(sim_infer_t *job)
{
    job->words = malloc((size_t)(job->n_target ? job->n_target : 1) * sizeof *job->words);
    if (!job->words)
        sim_die("out of memory");
    uint64_t state = job->rng;
    int n = 0;
    while (n < job->n_target) {
        unsigned idx = sim_gen_next_word(&state);
        size_t len;
        const char *word = sim_gen_word(idx, &len);
        bool stop = false;
        for (int s = 0; s < job->nstops && !stop; s++)
            stop = strstr(word, job->stops[s]) != NULL;
        if (stop) {
            job->stopped = true;
            break;
        }
        job->words[n++] = (unsigned short)idx;
    }
    job->n_final = n;
}

/* ---- metrics and text for the renderers ---- */

void sim_infer_metrics(sim_infer_t *job, sim_metrics_t *m)
{
    int64_t now = sim_mono_ns();
    int64_t start = job->req->t_start;
    m->total = now - start > 0 ? now - start : 1;
    m->load = job->w.t_ready - start > 0 ? job->w.t_ready - start : 1;
    m->prompt_count = job->prompt_tokens;
    m->prompt_eval = (int64_t)job->prompt_tokens *
                     (job->interval ? job->interval / PROMPT_SPEEDUP : PROMPT_TOKEN_NS_FAST);
    m->eval_count = job->emitted;
    if (job->emitted == 0)
        m->eval = 0;
    else if (job->interval)
        m->eval = (int64_t)job->emitted * job->interval;
    else
        m->eval = now - job->w.t_slot > 0 ? now - job->w.t_slot : 1;
}

void sim_infer_text(sim_infer_t *job, sim_buf_t *out)
{
    for (int i = 0; i < job->emitted; i++) {
        size_t len;
        const char *w = sim_gen_word(job->words[i], &len);
        sim_buf_add(out, w, len);
    }
}

const char *sim_infer_done_reason(sim_infer_t *job)
{
    return job->by_length && !job->stopped && job->emitted == job->n_target ? "length" : "stop";
}

void sim_infer_context(sim_infer_t *job, sim_buf_t *out)
{
    sim_buf_add(out, "[", 1);
    for (int i = 0; i < job->n_prompt_ids; i++) {
        if (i)
            sim_buf_add(out, ",", 1);
        sim_buf_i64(out, job->prompt_ids[i]);
    }
    for (int i = 0; i < job->emitted; i++) {
        if (i || job->n_prompt_ids)
            sim_buf_add(out, ",", 1);
        sim_buf_i64(out, sim_gen_word_id(job->words[i]));
    }
    sim_buf_add(out, "]", 1);
}

void sim_buf_now_utc(sim_buf_t *b)
{
    struct timespec ts;
    sim_wall(&ts);
    sim_buf_time(b, ts.tv_sec, ts.tv_nsec, true);
}

/* ---- the request's life ---- */

static void on_granted(sim_waiter_t *w)
{
    sim_req_wake(((sim_infer_t *)w)->req);
}

static void job_cancel(sim_req_t *req)
{
    sim_infer_t *job = req->job;
    if (job->w.state == SIM_W_GRANTED && !job->stream && job->timed && job->interval &&
        job->ops->token) {
        /* a stream:false generation is cut short: count what it had generated */
        int64_t done = (sim_mono_ns() - job->w.t_slot) / job->interval;
        if (done > job->n_final)
            done = job->n_final;
        if (done > 0)
            sim_sched_count_tokens(done);
    }
    sim_sched_cancel(&job->w);
}

static void job_free(sim_req_t *req)
{
    sim_infer_free(req->job);
    req->job = NULL;
}

/* Park until due, waking early if the client hangs up. */
static enum MHD_Result sleep_until(sim_req_t *req, int64_t due)
{
    sim_lock();
    if (!sim_req_canceled(req)) {
        sim_req_wake_at(req, due);
        sim_req_suspend(req);
    }
    sim_unlock();
    return MHD_YES;
}

static int64_t pump(sim_req_t *req, int64_t now, sim_buf_t *out)
{
    sim_infer_t *job = req->job;
    int n = 0;
    while (job->emitted < job->n_final && out->len < STREAM_BUDGET) {
        int64_t due = job->t_first + (int64_t)job->emitted * job->interval;
        if (due > now)
            break;
        size_t len;
        const char *w = sim_gen_word(job->words[job->emitted], &len);
        job->ops->token(job, w, len, out);
        job->emitted++;
        n++;
    }
    if (n)
        sim_sched_count_tokens(n);
    if (job->emitted < job->n_final)
        return out->len >= STREAM_BUDGET ? now
                                         : job->t_first + (int64_t)job->emitted * job->interval;
    job->ops->final(job, out);
    sim_lock();
    sim_sched_finish(&job->w);
    sim_unlock();
    return 0;
}

static enum MHD_Result proceed(sim_req_t *req, sim_infer_t *job)
{
    if (!job->timed) {
        job->timed = true;
        job->t_first = job->w.t_slot + job->interval;
        if (job->ops->token && !job->load_only)
            plan_words(job);
    }
    sim_buf_t body = {0};
    const char *ctype = job->ops->whole_ctype;
    if (job->load_only) {
        ctype = job->ops->load(job, &body);
    } else if (job->stream) {
        if (sim_mono_ns() < job->t_first)
            return sleep_until(req, job->t_first);
        return sim_reply_stream(req, job->ops->stream_ctype, pump);
    } else if (job->ops->token) {
        int64_t done = job->n_final ? job->t_first + (int64_t)(job->n_final - 1) * job->interval
                                    : job->w.t_slot;
        if (sim_mono_ns() < done)
            return sleep_until(req, done);
        job->emitted = job->n_final;
        job->ops->whole(job, &body);
    } else {
        job->ops->whole(job, &body);
    }
    sim_lock();
    bool live = job->w.state == SIM_W_GRANTED;
    sim_sched_finish(&job->w);
    sim_unlock();
    if (!live) {
        sim_buf_free(&body);
        return MHD_NO;
    }
    if (job->ops->token && !job->load_only && job->emitted)
        sim_sched_count_tokens(job->emitted);
    return sim_reply(req, MHD_HTTP_OK, ctype, &body);
}

enum MHD_Result sim_infer_start(sim_req_t *req, sim_infer_t *job)
{
    req->job = job;
    req->job_cancel = job_cancel;
    req->job_free = job_free;
    job->req = req;
    job->w.granted = on_granted;
    if (job->load_only)
        job->w.need_slot = false; /* a load needs the model, not a slot */
    sim_lock();
    sim_acq_t acq = sim_sched_acquire(&job->w);
    if (acq == SIM_ACQ_QUEUED)
        sim_req_suspend(req);
    sim_unlock();
    if (acq == SIM_ACQ_QUEUED)
        return MHD_YES;
    if (acq == SIM_ACQ_BUSY)
        return job->ops->error(req, MHD_HTTP_SERVICE_UNAVAILABLE, BUSY_MESSAGE);
    return proceed(req, job);
}

enum MHD_Result sim_infer_continue(sim_req_t *req)
{
    sim_infer_t *job = req->job;
    if (sim_req_canceled(req))
        return MHD_NO;
    sim_lock();
    sim_wstate_t state = job->w.state;
    if (state == SIM_W_QUEUED)
        sim_req_suspend(req);
    sim_unlock();
    if (state == SIM_W_QUEUED)
        return MHD_YES;
    if (state != SIM_W_GRANTED)
        return MHD_NO;
    return proceed(req, job);
}
