/* One proxied request shared by the front door and the forwarder: the two pipes, the
 * response head, and the rules for who waits for whom. Both sides run on the shard's thread,
 * so nothing here is locked. */
#include "agpu_exchange.h"

#include "agpu_clock.h"
#include "agpu_headers.h"
#include "agpu_json.h"
#include "agpu_limits.h"
#include "agpu_pipe.h"
#include "agpu_text.h"

#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* What a suspended front door is waiting for; it is resumed as soon as that holds. */
typedef enum { WAIT_NONE, WAIT_ROOM, WAIT_HEAD, WAIT_DATA } front_wait_t;

struct agpu_exchange {
    unsigned refs;
    const agpu_exchange_ops_t *ops;
    void *front;
    void *forwarder;
    void *transfer;

    agpu_request_t request; /* points into request_text */
    void *request_text;     /* one block: the header pointers, then the strings */

    agpu_pipe_t up; /* request body, front -> forwarder */
    bool up_eof, send_paused;

    int status; /* response head, forwarder -> front */
    /* names[i] is one block "name\0value\0"; values[i] points into it */
    char *names[AGPU_MAX_UPSTREAM_HEADERS], *values[AGPU_MAX_UPSTREAM_HEADERS];
    size_t header_count, header_bytes;
    int64_t content_length;
    agpu_body_kind_t kind;
    bool head_ready;

    agpu_pipe_t down; /* response body, forwarder -> front */
    bool recv_paused;

    bool finished, failed, error_line_sent, canceled;
    char error[AGPU_ERROR_MAX];
    front_wait_t waiting;
    bool wake_due; /* what the front waits for has happened; agpu_exchange_wake resumes it */

    int64_t created_ms, first_byte_ms, last_byte_ms; /* for the node's measured speed */
    uint64_t lines;
};

/* Copies the request's method, URL and header lines into one block, which its header
 * pointers open. Returns the block; NULL without a method or URL, or out of memory. */
static void *copy_request(agpu_request_t *copy, const agpu_request_t *request)
{
    if (!request->method || !request->url)
        return NULL;
    size_t count = request->header_count;
    size_t size = (count + 1) * sizeof(char *) + strlen(request->method) + strlen(request->url) + 2;
    for (size_t i = 0; i < count; i++)
        size += strlen(request->headers[i]) + 1;
    const char **lines = malloc(size);
    if (!lines)
        return NULL;
    char *text = (char *)(lines + count + 1);
    *copy = *request;
    copy->method = text;
    text = stpcpy(text, request->method) + 1;
    copy->url = text;
    text = stpcpy(text, request->url) + 1;
    for (size_t i = 0; i < count; i++) {
        lines[i] = text;
        text = stpcpy(text, request->headers[i]) + 1;
    }
    lines[count] = NULL;
    copy->headers = lines;
    return lines;
}

agpu_exchange_t *agpu_exchange_new(const agpu_request_t *request, const agpu_exchange_ops_t *ops,
                                   void *front, void *forwarder)
{
    agpu_exchange_t *ex = calloc(1, sizeof *ex);
    if (ex && !(ex->request_text = copy_request(&ex->request, request))) {
        free(ex);
        ex = NULL;
    }
    if (!ex)
        return NULL;
    ex->refs = 1;
    ex->ops = ops;
    ex->front = front;
    ex->forwarder = forwarder;
    ex->content_length = -1;
    ex->created_ms = agpu_clock_ms();
    return ex;
}

void agpu_exchange_ref(agpu_exchange_t *ex)
{
    ex->refs++;
}

void agpu_exchange_unref(agpu_exchange_t **ex_p)
{
    agpu_exchange_t *ex = *ex_p;
    if (!ex)
        return;
    *ex_p = NULL;
    if (--ex->refs > 0)
        return;
    free(ex->request_text);
    for (size_t i = 0; i < ex->header_count; i++)
        free(ex->names[i]);
    agpu_pipe_free(&ex->up);
    agpu_pipe_free(&ex->down);
    free(ex);
}

const agpu_request_t *agpu_exchange_request(const agpu_exchange_t *ex)
{
    return &ex->request;
}

void *agpu_exchange_front(const agpu_exchange_t *ex)
{
    return ex->front;
}

/* ---- waking each side ---- */

static void front_wait(agpu_exchange_t *ex, front_wait_t what)
{
    ex->waiting = what;
    ex->ops->suspend_front(ex->front);
}

static void front_wake_if(agpu_exchange_t *ex, front_wait_t what)
{
    if (ex->waiting == WAIT_NONE || (what != WAIT_NONE && ex->waiting != what))
        return;
    ex->waiting = WAIT_NONE;
    ex->wake_due = false;
    ex->ops->resume_front(ex->front);
}

/* While the forwarder parses an answer: note the wake, and let agpu_exchange_wake() do it once
 * every byte that arrived together is handled (a head and its body in one send). */
static void front_wake_later_if(agpu_exchange_t *ex, front_wait_t what)
{
    if (ex->waiting == what)
        ex->wake_due = true;
}

/* Called last, once the exchange is consistent: the forwarder may finish it from inside. */
static void kick_if(agpu_exchange_t *ex, bool needed)
{
    if (needed)
        ex->ops->kick_forwarder(ex->forwarder, ex);
}

/* ---- front door side ---- */

int agpu_exchange_preload_body(agpu_exchange_t *ex, const void *data, size_t len)
{
    int rc = agpu_pipe_write(&ex->up, data, len);
    ex->up_eof = true;
    return rc;
}

char *agpu_exchange_take_preloaded(agpu_exchange_t *ex, size_t *len)
{
    if (!ex->up_eof || (int64_t)agpu_pipe_used(&ex->up) != ex->request.body_length)
        return NULL;
    return agpu_pipe_take(&ex->up, len);
}

agpu_push_t agpu_exchange_push_body(agpu_exchange_t *ex, const void *data, size_t len)
{
    agpu_push_t result = AGPU_PUSH_TAKEN;
    bool wake = false;
    if (ex->finished || ex->canceled) {
        result = AGPU_PUSH_DROPPED;
    } else if (agpu_pipe_full(&ex->up)) {
        front_wait(ex, WAIT_ROOM);
        result = AGPU_PUSH_WAIT;
    } else if (agpu_pipe_write(&ex->up, data, len) != 0) {
        result = AGPU_PUSH_DROPPED;
    } else if (ex->send_paused) {
        ex->send_paused = false;
        wake = true;
    }
    kick_if(ex, wake);
    return result;
}

void agpu_exchange_end_body(agpu_exchange_t *ex)
{
    ex->up_eof = true;
    bool wake = ex->send_paused;
    ex->send_paused = false;
    kick_if(ex, wake);
}

agpu_head_state_t agpu_exchange_head(agpu_exchange_t *ex, agpu_response_head_t *head,
                                     char *error, size_t error_size)
{
    agpu_head_state_t state;
    if (ex->head_ready) {
        head->status = ex->status;
        head->names = (const char *const *)ex->names;
        head->values = (const char *const *)ex->values;
        head->count = ex->header_count;
        head->content_length = ex->content_length;
        head->kind = ex->kind;
        state = AGPU_HEAD_READY;
    } else if (ex->finished) {
        agpu_text_copy(error, error_size, ex->failed ? ex->error : "upstream sent no answer");
        state = AGPU_HEAD_FAILED;
    } else {
        front_wait(ex, WAIT_HEAD);
        state = AGPU_HEAD_WAIT;
    }
    return state;
}

bool agpu_exchange_answered(const agpu_exchange_t *ex)
{
    return ex->head_ready || ex->finished;
}

/* The last line of a stream whose upstream broke, in the stream's own format. */
static size_t error_line(const agpu_exchange_t *ex, char *out, size_t max)
{
    bool sse = ex->kind == AGPU_BODY_SSE;
    const char *prefix = sse ? "data: " : "", *suffix = sse ? "\n\n" : "\n";
    size_t plen = strlen(prefix), slen = strlen(suffix);
    if (max <= plen + slen)
        return 0;
    size_t n = agpu_json_error(out + plen, max - plen - slen,
                               sse ? AGPU_ERROR_OPENAI : AGPU_ERROR_OLLAMA, 500, ex->error);
    if (n == 0)
        return 0;
    memcpy(out, prefix, plen);
    memcpy(out + plen + n, suffix, slen);
    return plen + n + slen;
}

long agpu_exchange_read_response(agpu_exchange_t *ex, char *out, size_t max)
{
    long result;
    bool wake = false;
    if (agpu_pipe_used(&ex->down) > 0) {
        result = (long)agpu_pipe_read(&ex->down, out, max);
        if (ex->recv_paused && !agpu_pipe_full(&ex->down)) {
            ex->recv_paused = false;
            wake = !ex->finished;
        }
    } else if (!ex->finished) {
        front_wait(ex, WAIT_DATA);
        result = 0;
    } else if (!ex->failed || ex->error_line_sent) {
        result = AGPU_BODY_END;
    } else if (ex->kind == AGPU_BODY_OTHER || ex->content_length >= 0) {
        result = AGPU_BODY_BROKEN; /* a sized body cannot carry an error line */
    } else {
        ex->error_line_sent = true;
        result = (long)error_line(ex, out, max);
        if (result == 0)
            result = AGPU_BODY_BROKEN;
    }
    kick_if(ex, wake);
    return result;
}

bool agpu_exchange_whole_body(agpu_exchange_t *ex, size_t max, char **body, size_t *len)
{
    bool whole = ex->finished && !ex->failed && agpu_pipe_used(&ex->down) <= max;
    if (whole)
        *body = agpu_pipe_take(&ex->down, len);
    return whole;
}

void agpu_exchange_cancel(agpu_exchange_t *ex)
{
    ex->waiting = WAIT_NONE;
    bool wake = !ex->finished && !ex->canceled;
    ex->canceled = true;
    kick_if(ex, wake);
}

/* ---- forwarder side ---- */

void agpu_exchange_set_status(agpu_exchange_t *ex, int status)
{
    ex->status = status;
}

static agpu_body_kind_t body_kind(const char *content_type)
{
    if (strncasecmp(content_type, "application/x-ndjson", 20) == 0)
        return AGPU_BODY_NDJSON;
    if (strncasecmp(content_type, "text/event-stream", 17) == 0)
        return AGPU_BODY_SSE;
    return AGPU_BODY_OTHER;
}

/* Whether the header name[0..len) is the literal word (ignoring case). */
#define IS_NAME(name, len, word) ((len) == sizeof word - 1 && strncasecmp(name, word, len) == 0)

void agpu_exchange_add_header(agpu_exchange_t *ex, const char *name, size_t name_len,
                              const char *value, size_t value_len)
{
    char field[32];
    if (name_len < sizeof field) {
        memcpy(field, name, name_len);
        field[name_len] = '\0';
    } else {
        field[0] = '\0'; /* no header we act on has a longer name */
    }
    size_t i = ex->header_count;
    if (IS_NAME(name, name_len, "Content-Length")) {
        char digits[24];
        size_t n = value_len < sizeof digits - 1 ? value_len : sizeof digits - 1;
        memcpy(digits, value, n);
        digits[n] = '\0';
        char *end;
        long long length = strtoll(digits, &end, 10);
        ex->content_length = end != digits && length >= 0 ? length : -1;
    } else if (field[0] && !agpu_headers_forward_response(field)) {
        /* a header the proxy does not pass on */
    } else if (i < AGPU_MAX_UPSTREAM_HEADERS &&
               ex->header_bytes + name_len + value_len <= AGPU_MAX_UPSTREAM_HEADER_BYTES &&
               (ex->names[i] = malloc(name_len + value_len + 2))) {
        memcpy(ex->names[i], name, name_len);
        ex->names[i][name_len] = '\0';
        ex->values[i] = ex->names[i] + name_len + 1;
        memcpy(ex->values[i], value, value_len);
        ex->values[i][value_len] = '\0';
        ex->header_count++;
        ex->header_bytes += name_len + value_len;
        if (IS_NAME(name, name_len, "Content-Type"))
            ex->kind = body_kind(ex->values[i]);
    }
}

void agpu_exchange_reset_head(agpu_exchange_t *ex)
{
    for (size_t i = 0; i < ex->header_count; i++)
        free(ex->names[i]);
    ex->header_count = ex->header_bytes = 0;
    ex->kind = AGPU_BODY_OTHER;
    ex->content_length = -1;
}

void agpu_exchange_head_done(agpu_exchange_t *ex)
{
    ex->head_ready = true;
    front_wake_later_if(ex, WAIT_HEAD);
}

bool agpu_exchange_take_response(agpu_exchange_t *ex, const void *data, size_t len)
{
    bool taken = true;
    if (ex->canceled) {
        /* discarded: the transfer is being dropped */
    } else if (agpu_pipe_full(&ex->down)) {
        ex->recv_paused = true;
        taken = false;
    } else if (agpu_pipe_write(&ex->down, data, len) == 0) {
        if (ex->kind != AGPU_BODY_OTHER) { /* a stream: one line (or SSE line) per token */
            ex->last_byte_ms = agpu_clock_ms();
            if (!ex->first_byte_ms)
                ex->first_byte_ms = ex->last_byte_ms;
            for (const char *p = data, *end = p + len; (p = memchr(p, '\n', (size_t)(end - p)));
                 p++)
                ex->lines++;
        }
        front_wake_later_if(ex, WAIT_DATA);
        front_wake_later_if(ex, WAIT_HEAD); /* the head is complete once its body flows */
    } else {
        ex->recv_paused = true; /* out of memory: wait for the client to drain */
        taken = false;
    }
    return taken;
}

long agpu_exchange_give_body(agpu_exchange_t *ex, char *out, size_t max)
{
    long result;
    if (ex->canceled) {
        result = AGPU_UPLOAD_ABORT;
    } else if (agpu_pipe_used(&ex->up) > 0) {
        result = (long)agpu_pipe_read(&ex->up, out, max);
        if (!agpu_pipe_full(&ex->up))
            front_wake_later_if(ex, WAIT_ROOM);
    } else if (ex->up_eof) {
        result = 0;
    } else {
        ex->send_paused = true;
        result = AGPU_UPLOAD_PAUSE;
    }
    return result;
}

void agpu_exchange_finish(agpu_exchange_t *ex, const char *error)
{
    ex->finished = true;
    if (error) {
        ex->failed = true;
        agpu_text_copy(ex->error, sizeof ex->error, error);
    }
    front_wake_if(ex, WAIT_NONE);
}

void agpu_exchange_wake(agpu_exchange_t *ex)
{
    if (ex->wake_due)
        front_wake_if(ex, WAIT_NONE);
}

agpu_exchange_flow_t agpu_exchange_flow(const agpu_exchange_t *ex)
{
    return (agpu_exchange_flow_t){ex->finished, ex->canceled, ex->recv_paused, ex->send_paused};
}

bool agpu_exchange_speed(const agpu_exchange_t *ex, uint32_t *ttft_ms, double *tokens_per_s)
{
    /* SSE frames end in a blank line: two newlines per token */
    uint64_t tokens = ex->kind == AGPU_BODY_SSE ? ex->lines / 2 : ex->lines;
    bool measured = ex->finished && !ex->failed && ex->first_byte_ms && tokens >= 2;
    if (measured) {
        *ttft_ms = (uint32_t)(ex->first_byte_ms - ex->created_ms);
        int64_t span = ex->last_byte_ms - ex->first_byte_ms;
        *tokens_per_s = span > 0 ? (double)(tokens - 1) * 1000.0 / (double)span : 0;
    }
    return measured;
}

void agpu_exchange_set_transfer(agpu_exchange_t *ex, void *transfer)
{
    ex->transfer = transfer;
}

void *agpu_exchange_transfer(const agpu_exchange_t *ex)
{
    return ex->transfer;
}
