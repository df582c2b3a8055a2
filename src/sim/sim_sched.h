/* sim_sched: Ollama's scheduler simulated: slots, wait queue, loads, eviction, keep_alive. */
#ifndef SIM_SCHED_H
#define SIM_SCHED_H

#include "sim_catalog.h"
#include "sim_clock.h"
#include "sim_json.h"

#include <stdbool.h>
#include <stdint.h>

typedef struct sim_runner sim_runner_t;
typedef struct sim_waiter sim_waiter_t;

typedef enum {
    SIM_W_NEW,      /* not yet handed to the scheduler */
    SIM_W_QUEUED,   /* waiting for a load or a slot */
    SIM_W_GRANTED,  /* holds a slot (or, for a load request, a reference) */
    SIM_W_DONE,     /* finished normally */
    SIM_W_CANCELED, /* the client went away */
} sim_wstate_t;

/* One request's claim on a model. Embedded in the request; all fields but the inputs are
 * owned by the scheduler and read or written with the lock held. */
struct sim_waiter {
    /* inputs */
    const sim_model_t *model;
    bool need_slot; /* false: a load request only needs the model loaded */
    bool has_keep_alive;
    int64_t keep_alive_ns; /* INT64_MAX = forever */
    int num_ctx;
    void (*granted)(sim_waiter_t *w); /* called with the lock held */
    /* scheduler state */
    sim_wstate_t state;
    sim_runner_t *runner;
    int64_t t_enqueued;
    int64_t t_ready; /* when the model was loaded for this request (mono ns) */
    int64_t t_slot;  /* when the slot was granted */
    sim_waiter_t *prev, *next;
};

typedef enum {
    SIM_ACQ_GRANTED, /* the callback will not be called: go on now */
    SIM_ACQ_QUEUED,  /* granted() will be called later */
    SIM_ACQ_BUSY,    /* the wait queue is full: 503 */
} sim_acq_t;

void sim_sched_init(void);
void sim_sched_shutdown(void);

/* Lock held for all of these. */
sim_acq_t sim_sched_acquire(sim_waiter_t *w);
/* Normal end: frees the slot / reference. */
void sim_sched_finish(sim_waiter_t *w);
/* Client gone: leaves the queue or frees the slot; counts a cancel. Idempotent. */
void sim_sched_cancel(sim_waiter_t *w);
/* Empty prompt with keep_alive 0: unload the model now, or as soon as it goes idle. */
void sim_sched_unload_model(const sim_model_t *m);

/* Stats and /api/ps (take the lock themselves). */
void sim_sched_count_request(void);
void sim_sched_count_tokens(int64_t n);
void sim_sched_stats_json(sim_buf_t *b);
void sim_sched_ps_json(sim_buf_t *b);

#endif
