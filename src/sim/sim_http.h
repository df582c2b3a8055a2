/* sim_http: the libmicrohttpd front: routing, 404/405, CORS and Host checks, waits, streams. */
#ifndef SIM_HTTP_H
#define SIM_HTTP_H

#include "sim_clock.h"
#include "sim_json.h"

#include <microhttpd.h>
#include <sodium.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

/* Request bodies beyond this are refused (blob uploads are hashed, never held). */
#define SIM_MAX_BODY (256u << 20)

enum {
    SIM_M_GET = 1,
    SIM_M_HEAD = 2,
    SIM_M_POST = 4,
    SIM_M_DELETE = 8,
    SIM_M_OPTIONS = 16,
    SIM_M_OTHER = 32,
};

typedef struct sim_req sim_req_t;
typedef enum MHD_Result (*sim_handler_fn)(sim_req_t *req);

/* Called as a stream needs bytes: append every line due by now to out. Returns when the
 * next line is due (monotonic ns), 0 once the stream is complete. */
typedef int64_t (*sim_pump_fn)(sim_req_t *req, int64_t now, sim_buf_t *out);

struct sim_req {
    struct MHD_Connection *conn;
    const struct sim_route *route;
    unsigned method;
    char *param; /* the :digest or :model path segment */
    const char *origin;
    int64_t t_start;
    sim_buf_t body;
    bool body_too_large;
    bool blob_hash; /* POST /api/blobs: hash the body instead of keeping it */
    crypto_hash_sha256_state sha;
    int64_t blob_bytes;
    unsigned early_status; /* 403, 204 (preflight), 404, 405: answered once the body is in */
    bool dispatched;
    bool answered;
    unsigned status;
    /* waits: fields below are touched with the lock held */
    bool suspended;
    atomic_bool canceled; /* the client went away */
    bool watching;
    int watch_fd;
    uint32_t watch_gen;
    sim_timer_t timer;
    sim_req_t *susp_prev, *susp_next;
    /* streaming */
    sim_buf_t out;
    size_t out_off;
    bool stream_end;
    sim_pump_fn pump;
    /* the route's own state */
    void *job;
    void (*job_cancel)(sim_req_t *req); /* lock held; the client went away */
    void (*job_free)(sim_req_t *req);   /* after the last byte (no lock) */
};

int sim_http_start(void);
/* The port actually bound (for a --listen port of 0). */
int sim_http_port(void);
void sim_http_stop(void);

/* ---- replies (no lock held) ---- */

/* Takes the bytes of body (which may be NULL for an empty reply). */
enum MHD_Result sim_reply(sim_req_t *req, unsigned status, const char *ctype, sim_buf_t *body);
enum MHD_Result sim_reply_text(sim_req_t *req, unsigned status, const char *ctype,
                               const char *text);
/* {"error":msg} as gin's c.JSON writes it (application/json; charset=utf-8). */
enum MHD_Result sim_reply_error(sim_req_t *req, unsigned status, const char *msg);
/* The same body with the plain "application/json" type streaming handlers end up with. */
enum MHD_Result sim_reply_error_plain(sim_req_t *req, unsigned status, const char *msg);
enum MHD_Result sim_reply_stream(sim_req_t *req, const char *ctype, sim_pump_fn pump);

/* ---- waits (lock held) ---- */

/* Park the request until sim_req_wake; the peer hanging up cancels it (job_cancel). */
void sim_req_suspend(sim_req_t *req);
void sim_req_wake(sim_req_t *req);
/* Wake at a monotonic time. */
void sim_req_wake_at(sim_req_t *req, int64_t due);

static inline bool sim_req_canceled(sim_req_t *req)
{
    return atomic_load(&req->canceled);
}

#endif
