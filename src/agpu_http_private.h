/* The front door's insides, shared by its three files: agpu_http.c (libmicrohttpd, the
 * request handler, answers), agpu_http_route.c (where a request goes: placing, attempts,
 * failover, the mesh queue, mesh-wide lists) and agpu_http_api.c (agpu's own /agpu/v1 API).
 * Everything here runs on the shard's thread unless it says otherwise. */
#ifndef AGPU_HTTP_PRIVATE_H
#define AGPU_HTTP_PRIVATE_H

#include "agpu_http.h"

#include "agpu_clock.h"
#include "agpu_cors.h"
#include "agpu_exchange.h"
#include "agpu_gather.h"
#include "agpu_limits.h"
#include "agpu_msg.h"
#include "agpu_name.h"
#include "agpu_pipe.h"
#include "agpu_queue.h"
#include "agpu_route.h"

#include <microhttpd.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Marks a request one node forwards to another: the receiver serves it from its own Ollama
 * and never forwards it again, so a request cannot loop. Its value is the sender's id. */
#define HOP_HEADER "X-Agpu-Hop"
/* Names the node an administrative request (pull, create, copy, delete...) acts on. */
#define TARGET_HEADER "X-Agpu-Target"

typedef struct request request_t;

struct agpu_http {
    struct MHD_Daemon *daemon;
    agpu_forward_t *forward;
    agpu_cors_t *cors;
    agpu_http_options_t options;
    char *node_name, *upstream;
    char node_id[AGPU_MSG_ID_MAX + 1]; /* this node's id in the mesh; "" without one */
    bool closing;
    bool resumed;         /* a connection was resumed since the last agpu_http_run */
    int wake_fd;          /* the shard's: written to wake its loop from another thread */
    atomic_bool tend_due; /* the queue woke us: look at the waiting requests */
    request_t *waiting;   /* requests that wait: in the queue, on a peer, on a mesh-wide list */
    int64_t next_tend_ms;
    uint64_t random;   /* xorshift state for the router's random choices */
    uint64_t requests; /* begun since the start */
};

/* How a request is served. */
typedef enum {
    MODE_LOCAL,  /* by this node's Ollama */
    MODE_ROUTE,  /* by the node the router picks for its model */
    MODE_TARGET, /* by the node X-Agpu-Target names */
    MODE_GATHER, /* by every node, answers merged (mesh-wide lists) */
} serve_mode_t;

/* A node a request may be sent to, copied out of the view it was chosen from. */
typedef struct {
    char id[AGPU_MSG_ID_MAX + 1];
    char name[AGPU_NAME_MAX];
    char http[AGPU_MSG_ENDPOINT_MAX + 1];
    bool self;
} target_t;

/* One request's state, from its first header to its last byte. */
struct request {
    agpu_http_t *http;
    struct MHD_Connection *conn;
    agpu_exchange_t *ex;
    const char *origin; /* allowed CORS origin to echo, or NULL */
    uint64_t received;
    uint64_t discarded; /* bytes read and dropped past --max-body */
    bool too_large;
    bool body_ended;
    bool answered;  /* a response is queued */
    bool delivered; /* that response is the upstream's own */
    bool counted;   /* this attempt counts in the local Ollama's in-flight requests (model) */
    bool ledgered;  /* this attempt counts in the ledger (sent by the router) */
    bool suspended; /* the connection is suspended */
    bool may_change_models;        /* the local Ollama's model lists may differ after it */
    bool names_model;              /* a POST whose body names a model: read it whole first */
    bool hop;                      /* forwarded to us by a peer: served here, never forwarded */
    agpu_pipe_t body;              /* that body: read whole, kept for a retry on another node */
    char model[AGPU_NAME_KEY_MAX]; /* the model it names, as agpu_name_key gives it */
    char model_asked[AGPU_MSG_MODEL_NAME_MAX + 1]; /* ... as the client wrote it */

    serve_mode_t mode;
    agpu_route_kind_t kind;
    target_t targets[AGPU_ROUTE_MAX_TRIES]; /* where to send it, in order */
    size_t n_targets, attempt;              /* attempt: index of the target being tried */
    char failure[AGPU_ERROR_MAX];           /* why the last attempt failed */
    agpu_queue_entry_t *queued;             /* waiting in the mesh queue */
    int64_t queued_ms;
    bool queue_expired;
    bool shut_out;             /* ... because the node is stopping */
    int64_t first_byte_due_ms; /* of an attempt on a peer; 0: none */
    agpu_gather_t *gather;
    int64_t gather_due_ms;
    bool in_waiting;
    request_t *wait_prev, *wait_next;
};

/* Ollama's own body for a full queue (OLLAMA_MAX_QUEUE). */
#define QUEUE_FULL_MESSAGE "server busy, please try again.  maximum pending requests exceeded"

extern const agpu_exchange_ops_t http_exchange_ops; /* a request's own exchange */
extern const agpu_exchange_ops_t http_gather_ops;   /* one of a mesh-wide list's */

/* ---- agpu_http.c: answers, exchanges, waiting, suspending ---- */

/* CORS headers for an allowed origin. */
void http_add_common_headers(struct MHD_Response *response, const request_t *req);

/* An answer agpu writes itself (with one more header); the error one in the shape the path's
 * clients expect. */
enum MHD_Result http_answer_with(struct MHD_Connection *conn, request_t *req, unsigned status,
                                 const char *content_type, const char *body, size_t len,
                                 const char *header, const char *value);
enum MHD_Result http_answer(struct MHD_Connection *conn, request_t *req, unsigned status,
                            const char *content_type, const char *body, size_t len);
enum MHD_Result http_answer_error(struct MHD_Connection *conn, request_t *req, const char *path,
                                  unsigned status, const char *message);

/* An exchange for this request to base (an Ollama, or a peer's agpu with the hop marker),
 * handed to the forwarder. NULL when out of memory. */
agpu_exchange_t *http_start_exchange(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                     const char *method, const char *path, const char *base,
                                     bool hop, const agpu_exchange_ops_t *ops);

/* The request's model, as the client wrote it and as the key nodes' lists are matched by. */
void http_set_model(request_t *req, const char *model);

/* The list of requests that wait, looked at by agpu_http_tend. */
void http_waiting_add(agpu_http_t *self, request_t *req);
void http_waiting_remove(agpu_http_t *self, request_t *req);

/* The queue's wake-up (any thread): the shard tends its waiting requests next turn. */
void http_wake_shard(void *arg);

/* Suspends or resumes a client's connection; both idempotent. */
void http_suspend(void *front);
void http_resume(void *front);

/* ---- agpu_http_route.c: where a request goes ---- */

/* The request goes to this node's own Ollama. */
void http_set_self_target(agpu_http_t *self, request_t *req);

/* The request goes to this node's Ollama, or, on a node without one, to a node that has one. */
void http_set_local_target(agpu_http_t *self, request_t *req);

/* The router's plan for req over view, with what this node sent since the view (the ledger's
 * count for peers, the live count for itself): the candidates (caller frees) and *plan; NULL
 * when out of memory. */
agpu_route_candidate_t *http_plan(agpu_http_t *self, const request_t *req, const agpu_view_t *view,
                                  bool allow_cold, agpu_route_plan_t *plan);

/* Entropy for the router's random choices. */
uint64_t http_random(agpu_http_t *self);

/* 503 with Retry-After: a full queue, or a wait too long. */
enum MHD_Result http_answer_busy(struct MHD_Connection *conn, request_t *req, const char *path,
                                 const char *message);

/* Decides where a request goes: sets its targets (true), or answers it, or puts it in the
 * mesh queue (false, *rc what to return). */
bool http_place(agpu_http_t *self, struct MHD_Connection *conn, request_t *req, const char *path,
                enum MHD_Result *rc);

/* Starts the attempt on targets[attempt]; ends it, giving its counts back; gives it up for
 * the next target (before the client has seen a byte), marking its node suspect if asked. */
enum MHD_Result http_start_attempt(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                   const char *method, const char *path);
void http_attempt_end(agpu_http_t *self, request_t *req);
void http_fail_attempt(agpu_http_t *self, request_t *req, const char *why, bool suspect);

/* Whether an answer's status says the node could not take the request. */
bool http_refused(int status);

/* The node X-Agpu-Target names, as the request's target; false when none alive has it. */
bool http_find_target(agpu_http_t *self, request_t *req, const char *name);

/* A mesh-wide list: started at every node; answered with the merge once all are in. */
enum MHD_Result http_begin_gather(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                  const char *method, const char *path, agpu_merge_kind_t kind);
enum MHD_Result http_gather_pass(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                 const char *path);

/* ---- agpu_http_api.c ---- */

/* /agpu/v1/...: peers, route, drain, undrain. */
enum MHD_Result http_answer_api(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                const char *path, const char *method);

#endif
