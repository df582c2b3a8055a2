/* One proxied request, shared by the front door (libmicrohttpd's side of a shard) and the
 * forwarder (its upstream side). The state between them and the rules for who waits for whom
 * live here: each side calls these functions and never touches the other side's library. Both
 * sides run on the shard's thread: an exchange, its references included, belongs to one
 * thread and is not locked. */
#ifndef AGPU_EXCHANGE_H
#define AGPU_EXCHANGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agpu_exchange agpu_exchange_t;

/* What the request is, fixed before the exchange is handed to the forwarder. */
typedef struct {
    const char *method;
    const char *url;             /* absolute upstream URL, query string included */
    const char *const *headers;  /* "Name: value" lines to send */
    size_t header_count;
    bool has_body;
    int64_t body_length; /* -1: unknown, sent chunked */
} agpu_request_t;

/* What the upstream answered, fixed once agpu_exchange_head() says AGPU_HEAD_READY. */
typedef enum { AGPU_BODY_OTHER, AGPU_BODY_NDJSON, AGPU_BODY_SSE } agpu_body_kind_t;
typedef struct {
    int status;
    const char *const *names; /* response headers to pass on, names[i]: values[i] */
    const char *const *values;
    size_t count;
    int64_t content_length; /* -1: unknown */
    agpu_body_kind_t kind;
} agpu_response_head_t;

/* How the exchange reaches each side. The forwarder's kick is called last, once the exchange
 * is consistent, so it may finish the exchange at once (when it is stopping). */
typedef struct {
    void (*suspend_front)(void *front);
    void (*resume_front)(void *front);
    void (*kick_forwarder)(void *forwarder, agpu_exchange_t *ex);
} agpu_exchange_ops_t;

/* A new exchange with one reference, the front's. Copies what it needs of request. */
agpu_exchange_t *agpu_exchange_new(const agpu_request_t *request, const agpu_exchange_ops_t *ops,
                                   void *front, void *forwarder);
void agpu_exchange_ref(agpu_exchange_t *ex);
void agpu_exchange_unref(agpu_exchange_t **ex_p);

const agpu_request_t *agpu_exchange_request(const agpu_exchange_t *ex);
void *agpu_exchange_front(const agpu_exchange_t *ex); /* as given to agpu_exchange_new */

/* ---- front door side ---- */

/* The whole request body at once, before the exchange is handed to the forwarder (a body the
 * front door had to read first, to learn the model it names). Returns 0, or -1 out of memory. */
int agpu_exchange_preload_body(agpu_exchange_t *ex, const void *data, size_t len);

/* The forwarder's side of a preloaded body: all of it, moved out (caller frees), so that it
 * leaves with the request head in one write. NULL when the body is streamed instead. */
char *agpu_exchange_take_preloaded(agpu_exchange_t *ex, size_t *len);

typedef enum { AGPU_PUSH_TAKEN, AGPU_PUSH_WAIT, AGPU_PUSH_DROPPED } agpu_push_t;
/* Offers request body bytes. TAKEN: all taken. WAIT: none taken, the front was suspended and
 * is resumed when there is room. DROPPED: the upstream is finished, the bytes are discarded. */
agpu_push_t agpu_exchange_push_body(agpu_exchange_t *ex, const void *data, size_t len);
void agpu_exchange_end_body(agpu_exchange_t *ex);

typedef enum { AGPU_HEAD_READY, AGPU_HEAD_WAIT, AGPU_HEAD_FAILED } agpu_head_state_t;
/* READY: *head is filled. WAIT: the front was suspended, and is resumed when that changes.
 * FAILED: the upstream failed before answering; error[] says why. */
agpu_head_state_t agpu_exchange_head(agpu_exchange_t *ex, agpu_response_head_t *head,
                                     char *error, size_t error_size);

/* Whether the upstream's head is in (or it has finished): it has answered, for better or
 * worse. Never suspends the front. */
bool agpu_exchange_answered(const agpu_exchange_t *ex);

/* Moves response bytes out. Returns n > 0; 0 when the front was suspended to wait for more;
 * AGPU_BODY_END at a clean end; AGPU_BODY_BROKEN when the upstream failed mid-body, after the
 * final error line (NDJSON or SSE) has been returned as body bytes. */
#define AGPU_BODY_END (-1)
#define AGPU_BODY_BROKEN (-2)
long agpu_exchange_read_response(agpu_exchange_t *ex, char *out, size_t max);

/* When the upstream has already sent its whole answer and it is at most max bytes, moves it
 * all out and returns true: *body, *len bytes (caller frees; NULL when empty), which the front
 * can send with the head in one write. */
bool agpu_exchange_whole_body(agpu_exchange_t *ex, size_t max, char **body, size_t *len);

/* What a finished streamed answer says of the upstream's speed: time to the first line, and
 * lines (tokens) per second after it. false when there is too little to measure. */
bool agpu_exchange_speed(const agpu_exchange_t *ex, uint32_t *ttft_ms, double *tokens_per_s);

/* The client is gone: the forwarder drops the upstream request at once. */
void agpu_exchange_cancel(agpu_exchange_t *ex);

/* ---- forwarder side ---- */

void agpu_exchange_set_status(agpu_exchange_t *ex, int status);
/* One upstream response header: Content-Length is noted, headers the proxy passes on are
 * kept (bounded by AGPU_MAX_UPSTREAM_HEADERS and _BYTES), the rest dropped. */
void agpu_exchange_add_header(agpu_exchange_t *ex, const char *name, size_t name_len,
                              const char *value, size_t value_len);
/* A 1xx interim answer ended: forget its headers. */
void agpu_exchange_reset_head(agpu_exchange_t *ex);
void agpu_exchange_head_done(agpu_exchange_t *ex);

/* Response bytes from upstream. false: the pipe is full, pause receiving (nothing taken). */
bool agpu_exchange_take_response(agpu_exchange_t *ex, const void *data, size_t len);

/* Request bytes for upstream: n > 0, 0 at the end of the body, or these. */
#define AGPU_UPLOAD_PAUSE (-1)
#define AGPU_UPLOAD_ABORT (-2)
long agpu_exchange_give_body(agpu_exchange_t *ex, char *out, size_t max);

/* The calls above, made while the forwarder parses an answer, only note that the front must be
 * resumed; this resumes it. The forwarder calls it once per batch of callbacks, so bytes that
 * arrived together (a head and a short body) leave in one send. */
void agpu_exchange_wake(agpu_exchange_t *ex);

/* The upstream transfer ended; error is NULL on success. Resumes the front at once. */
void agpu_exchange_finish(agpu_exchange_t *ex, const char *error);

/* What the forwarder should do now after a kick. */
typedef struct {
    bool finished;
    bool canceled;
    bool pause_recv;
    bool pause_send;
} agpu_exchange_flow_t;
agpu_exchange_flow_t agpu_exchange_flow(const agpu_exchange_t *ex);

/* The forwarder's own per-exchange data (its transfer handle). */
void agpu_exchange_set_transfer(agpu_exchange_t *ex, void *transfer);
void *agpu_exchange_transfer(const agpu_exchange_t *ex);

#endif
