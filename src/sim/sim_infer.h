/* sim_infer: one scheduled generate/chat/embed request: plan, timing, streaming, metrics. */
#ifndef SIM_INFER_H
#define SIM_INFER_H

#include "sim_catalog.h"
#include "sim_decode.h"
#include "sim_http.h"
#include "sim_sched.h"

#include <stdbool.h>
#include <stdint.h>

/* Generation is capped here, whatever num_predict asks for. */
#define SIM_INFER_MAX_TOKENS 131072
#define SIM_INFER_MAX_STOPS 8

typedef struct sim_infer sim_infer_t;

/* How a route writes its replies. */
typedef struct {
    void (*token)(sim_infer_t *job, const char *word, size_t len, sim_buf_t *out);
    void (*final)(sim_infer_t *job, sim_buf_t *out); /* after the last streamed token */
    void (*whole)(sim_infer_t *job, sim_buf_t *out); /* the stream:false reply */
    /* the answer to an empty prompt; returns its content type */
    const char *(*load)(sim_infer_t *job, sim_buf_t *out);
    enum MHD_Result (*error)(sim_req_t *req, unsigned status, const char *msg);
    const char *stream_ctype, *whole_ctype;
} sim_infer_ops_t;

typedef struct {
    int64_t total, load, prompt_eval, eval; /* ns */
    int prompt_count, eval_count;
} sim_metrics_t;

struct sim_infer {
    sim_waiter_t w;
    const sim_infer_ops_t *ops;
    sim_req_t *req;
    char *model_echo; /* the model string as the client sent it */
    bool stream;
    bool load_only;
    bool want_context; /* /api/generate without raw */
    /* the plan */
    uint64_t rng;
    int n_target;
    bool by_length; /* num_predict was given: done_reason "length" */
    char *stops[SIM_INFER_MAX_STOPS];
    int nstops;
    int prompt_tokens;
    int *prompt_ids; /* for "context" */
    int n_prompt_ids;
    /* progress */
    unsigned short *words;
    int n_final; /* tokens the plan yields (fewer than n_target if a stop matched) */
    int emitted;
    bool stopped;     /* a stop string ended it early */
    int64_t interval; /* ns a token; 0 = instant */
    int64_t t_first;  /* when the first token is due */
    bool timed;       /* t_first computed */
    /* /v1 */
    char oai_id[32];
    bool include_usage;
    int64_t created;
    /* embeddings */
    char **inputs;
    size_t *input_lens;
    int ninputs;
    int dimensions;
    void *route_data;
};

/* Caller owns the returned job until sim_infer_start takes it. */
sim_infer_t *sim_infer_new(const sim_infer_ops_t *ops, const sim_model_t *model,
                           const char *model_echo);
/* Seed the generator from the model's weights, key (prompt or messages) and options.seed;
 * num_predict > 0 fixes the length (done_reason "length"), otherwise 8..48 tokens. */
void sim_infer_plan(sim_infer_t *job, const char *key, size_t key_len, int64_t seed,
                    int64_t num_predict);
void sim_infer_add_stop(sim_infer_t *job, const char *stop);
/* Ollama's options map, read as api.Options.FromMap does: num_ctx, seed, num_predict and stop
 * matter here, the rest is accepted. A wrong type fails with status 500 and Ollama's text. */
bool sim_infer_options(sim_infer_t *job, json_t *options, int64_t *seed, int64_t *num_predict,
                       sim_err_t *err);
void sim_infer_add_input(sim_infer_t *job, const char *text, size_t len);
void sim_infer_free(sim_infer_t *job);

/* Hand the job to the request and the scheduler; the route calls sim_infer_continue every
 * time MHD calls it again afterwards. */
enum MHD_Result sim_infer_start(sim_req_t *req, sim_infer_t *job);
enum MHD_Result sim_infer_continue(sim_req_t *req);

/* For renderers: the metrics as of now, the whole text, the stop reason. */
void sim_infer_metrics(sim_infer_t *job, sim_metrics_t *m);
void sim_infer_text(sim_infer_t *job, sim_buf_t *out);
const char *sim_infer_done_reason(sim_infer_t *job);
void sim_infer_context(sim_infer_t *job, sim_buf_t *out); /* [ids...] */
void sim_buf_now_utc(sim_buf_t *b);

#endif
