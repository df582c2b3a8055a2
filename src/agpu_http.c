/* The front door: one libmicrohttpd daemon per shard, run by the shard's event loop. A
 * connection waiting on its upstream is suspended (it costs no thread and no polling) and
 * resumed by the forwarder when there is something to do, so thousands of open streams need
 * no more threads, and a request never changes thread. */
#include "agpu_http_private.h"

#include "agpu_headers.h"
#include "agpu_json.h"
#include "agpu_log.h"
#include "agpu_mesh.h"
#include "agpu_text.h"
#include "agpu_watch.h"
#include "agpu_wakeup.h"

#include <ctype.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- answers agpu writes itself ---- */

void http_add_common_headers(struct MHD_Response *response, const request_t *req)
{
    if (req->origin) {
        MHD_add_response_header(response, "Access-Control-Allow-Origin", req->origin);
        MHD_add_response_header(response, "Vary", "Origin");
    }
}

enum MHD_Result http_answer_with(struct MHD_Connection *conn, request_t *req, unsigned status,
                                 const char *content_type, const char *body, size_t len,
                                 const char *header, const char *value)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
    if (!response)
        return MHD_NO;
    if (content_type)
        MHD_add_response_header(response, "Content-Type", content_type);
    if (header)
        MHD_add_response_header(response, header, value);
    http_add_common_headers(response, req);
    enum MHD_Result ok = MHD_queue_response(conn, status, response);
    MHD_destroy_response(response);
    req->answered = true;
    return ok;
}

enum MHD_Result http_answer(struct MHD_Connection *conn, request_t *req, unsigned status,
                            const char *content_type, const char *body, size_t len)
{
    return http_answer_with(conn, req, status, content_type, body, len, NULL, NULL);
}

enum MHD_Result http_answer_error(struct MHD_Connection *conn, request_t *req, const char *path,
                                  unsigned status, const char *message)
{
    char body[AGPU_ERROR_MAX * 2];
    size_t len =
        agpu_json_error(body, sizeof body, agpu_json_error_style(path), (int)status, message);
    return http_answer(conn, req, status, "application/json; charset=utf-8", body, len);
}

static enum MHD_Result answer_preflight(struct MHD_Connection *conn, request_t *req)
{
    struct MHD_Response *response =
        MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    http_add_common_headers(response, req);
    MHD_add_response_header(response, "Access-Control-Allow-Methods", AGPU_CORS_ALLOW_METHODS);
    MHD_add_response_header(response, "Access-Control-Allow-Headers", agpu_cors_allow_headers());
    MHD_add_response_header(response, "Access-Control-Max-Age", AGPU_CORS_MAX_AGE);
    enum MHD_Result ok = MHD_queue_response(conn, MHD_HTTP_NO_CONTENT, response);
    MHD_destroy_response(response);
    req->answered = true;
    return ok;
}

/* The most body this request may carry. */
static uint64_t body_limit(const agpu_http_t *self, const request_t *req)
{
    uint64_t limit = self->options.max_body;
    return req->names_model && limit > AGPU_MAX_MODEL_BODY ? AGPU_MAX_MODEL_BODY : limit;
}

static enum MHD_Result answer_too_large(agpu_http_t *self, struct MHD_Connection *conn,
                                        request_t *req, const char *path)
{
    char message[128];
    snprintf(message, sizeof message, "request body too large (limit %llu bytes)",
             (unsigned long long)body_limit(self, req));
    return http_answer_error(conn, req, path, MHD_HTTP_CONTENT_TOO_LARGE, message);
}

/* ---- the upstream's answer, streamed ---- */

static ssize_t read_upstream_body(void *cls, uint64_t pos, char *buf, size_t max)
{
    long n = agpu_exchange_read_response(cls, buf, max);
    if (n >= 0)
        return n; /* 0: the connection was suspended until more arrives */
    /* the upstream is done: its slot is free now, however long the client takes to read */
    request_t *req = agpu_exchange_front(cls);
    http_attempt_end(req->http, req);
    return n == AGPU_BODY_END ? MHD_CONTENT_READER_END_OF_STREAM
                              : MHD_CONTENT_READER_END_WITH_ERROR;
}

static void release_upstream_body(void *cls)
{
    agpu_exchange_t *ex = cls;
    agpu_exchange_unref(&ex);
}

static enum MHD_Result answer_upstream(agpu_http_t *self, struct MHD_Connection *conn,
                                       request_t *req, const agpu_response_head_t *head)
{
    /* A short answer that is already complete goes out from a buffer, head and body in one
     * send; anything else streams through the exchange as it arrives. */
    char *whole;
    size_t whole_len;
    struct MHD_Response *response;
    if (agpu_exchange_whole_body(req->ex, AGPU_RESPONSE_BLOCK, &whole, &whole_len)) {
        response = MHD_create_response_from_buffer(whole_len, whole, MHD_RESPMEM_MUST_FREE);
        if (!response)
            free(whole);
        http_attempt_end(self, req); /* the upstream is done: its slot is free now */
    } else {
        uint64_t size =
            head->content_length >= 0 ? (uint64_t)head->content_length : MHD_SIZE_UNKNOWN;
        response = MHD_create_response_from_callback(size, AGPU_RESPONSE_BLOCK, read_upstream_body,
                                                     req->ex, release_upstream_body);
        if (response)
            agpu_exchange_ref(req->ex); /* the response's, released with it */
    }
    if (!response)
        return MHD_NO;
    /* a peer's answer names the node that served it already */
    bool named = false;
    for (size_t i = 0; i < head->count; i++) {
        MHD_add_response_header(response, head->names[i], head->values[i]);
        named |= strcasecmp(head->names[i], "X-Agpu-Node") == 0;
    }
    const target_t *t = &req->targets[req->attempt];
    if (!named)
        MHD_add_response_header(response, "X-Agpu-Node", t->self ? self->node_name : t->name);
    http_add_common_headers(response, req);
    enum MHD_Result ok = MHD_queue_response(conn, (unsigned)head->status, response);
    MHD_destroy_response(response);
    req->answered = req->delivered = true;
    return ok;
}

/* ---- starting an exchange ---- */

/* The header lines to send, written one after another into text. A request's headers sit in
 * its connection's memory (AGPU_CONNECTION_MEMORY), each line at least as long as here, beside
 * its request line and libmicrohttpd's record of each header: so they fit in text, and so does
 * the hop marker. */
typedef struct {
    const char *lines[AGPU_MAX_FORWARD_HEADERS];
    size_t count, used;
    char text[AGPU_CONNECTION_MEMORY];
} header_list_t;

/* Appends "name: value"; lines past AGPU_MAX_FORWARD_HEADERS are left out. */
static void add_line(header_list_t *list, const char *name, size_t name_len, const char *value,
                     size_t value_len)
{
    size_t size = name_len + 2 + value_len + 1;
    if (list->count == AGPU_MAX_FORWARD_HEADERS || size > sizeof list->text - list->used)
        return;
    char *line = list->text + list->used;
    memcpy(line, name, name_len);
    memcpy(line + name_len, ": ", 2);
    memcpy(line + name_len + 2, value, value_len);
    line[size - 1] = '\0';
    list->lines[list->count++] = line;
    list->used += size;
}

static enum MHD_Result collect_header(void *cls, enum MHD_ValueKind kind, const char *key,
                                      size_t key_size, const char *value, size_t value_size)
{
    if (agpu_headers_forward_request(key) && strcasecmp(key, HOP_HEADER) != 0 &&
        strcasecmp(key, TARGET_HEADER) != 0) /* agpu's own are for agpu: the hop is per hop */
        add_line(cls, key, key_size, value ? value : "", value ? value_size : 0);
    return MHD_YES;
}

typedef struct {
    char *url;
    size_t len, alloc;
    bool first;
    bool failed;
} url_builder_t;

static void url_append(url_builder_t *b, const char *text, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len + 1 > b->alloc) {
        size_t alloc = (b->len + len + 1) * 2;
        char *grown = realloc(b->url, alloc);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->url = grown;
        b->alloc = alloc;
    }
    memcpy(b->url + b->len, text, len);
    b->len += len;
    b->url[b->len] = '\0';
}

/* Puts back a query argument as the client sent it: our unescape callback leaves %XX alone,
 * and libmicrohttpd's '+' -> ' ' is undone (a raw space cannot have been sent). */
static void url_append_raw(url_builder_t *b, const char *text)
{
    for (const char *p = text; *p; p++)
        url_append(b, *p == ' ' ? "+" : p, 1);
}

static enum MHD_Result collect_argument(void *cls, enum MHD_ValueKind kind, const char *key,
                                        const char *value)
{
    url_builder_t *b = cls;
    url_append(b, b->first ? "?" : "&", 1);
    b->first = false;
    url_append_raw(b, key);
    if (value) {
        url_append(b, "=", 1);
        url_append_raw(b, value);
    }
    return MHD_YES;
}

static char *upstream_url(const char *base, struct MHD_Connection *conn, const char *path)
{
    url_builder_t b = {.first = true};
    url_append(&b, base, strlen(base));
    url_append(&b, path, strlen(path));
    MHD_get_connection_values(conn, MHD_GET_ARGUMENT_KIND, collect_argument, &b);
    if (b.failed) {
        free(b.url);
        return NULL;
    }
    return b.url;
}

/* An exchange for this request to base (an Ollama, or a peer's agpu with the hop marker),
 * handed to the forwarder. A body read whole goes with it (a copy: a retry needs it again);
 * any other body streams through it as it comes. */
agpu_exchange_t *http_start_exchange(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                     const char *method, const char *path, const char *base,
                                     bool hop, const agpu_exchange_ops_t *ops)
{
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    const char *chunked = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Transfer-Encoding");
    int64_t body_length = length ? strtoll(length, NULL, 10) : -1;
    header_list_t headers; /* not zeroed: only what count and used cover is read */
    headers.count = headers.used = 0;
    MHD_get_connection_values_n(conn, MHD_HEADER_KIND, collect_header, &headers);
    if (hop)
        add_line(&headers, HOP_HEADER, strlen(HOP_HEADER), self->node_id, strlen(self->node_id));
    char *url = upstream_url(base, conn, path);
    agpu_exchange_t *ex = NULL;
    if (url) {
        agpu_request_t request = {
            .method = method,
            .url = url,
            .headers = headers.lines,
            .header_count = headers.count,
            .has_body = body_length > 0 || (chunked && !length),
            .body_length = body_length,
        };
        if (req->names_model) { /* read whole: its length is known now */
            request.body_length = (int64_t)agpu_pipe_used(&req->body);
            request.has_body = request.body_length > 0;
        }
        ex = agpu_exchange_new(&request, ops, req, self->forward);
        if (ex && req->names_model &&
            agpu_exchange_preload_body(ex, req->body.data + req->body.start,
                                       agpu_pipe_used(&req->body)) != 0)
            agpu_exchange_unref(&ex);
    }
    free(url);
    if (ex)
        agpu_forward_kick(self->forward, ex);
    return ex;
}

/* ---- small helpers ---- */

/* Requests after which Ollama's model lists (installed or loaded) may have changed. */
static bool may_change_models(const char *path)
{
    static const char *const paths[] = {
        "/api/pull",       "/api/create",     "/api/copy",
        "/api/delete",     "/api/generate",   "/api/chat",
        "/api/embed",      "/api/embeddings", "/v1/chat/completions",
        "/v1/completions", "/v1/embeddings",  NULL};
    for (size_t i = 0; paths[i]; i++)
        if (strcmp(path, paths[i]) == 0)
            return true;
    return false;
}

/* POST routes whose JSON body names the model that serves them. */
static bool names_model(const char *method, const char *path)
{
    static const char *const paths[] = {"/api/generate",
                                        "/api/chat",
                                        "/api/embed",
                                        "/api/embeddings",
                                        "/api/show",
                                        "/v1/chat/completions",
                                        "/v1/completions",
                                        "/v1/embeddings",
                                        "/v1/responses",
                                        "/v1/messages",
                                        NULL};
    if (strcmp(method, "POST") != 0)
        return false;
    for (size_t i = 0; paths[i]; i++)
        if (strcmp(path, paths[i]) == 0)
            return true;
    return false;
}

/* Lists every node answers for itself: the mesh's answer is all of theirs, merged. */
static bool is_mesh_list(const char *method, const char *path, agpu_merge_kind_t *kind)
{
    if (strcmp(method, "GET") != 0)
        return false;
    if (strcmp(path, "/api/tags") == 0)
        *kind = AGPU_MERGE_TAGS;
    else if (strcmp(path, "/api/ps") == 0)
        *kind = AGPU_MERGE_PS;
    else if (strcmp(path, "/v1/models") == 0)
        *kind = AGPU_MERGE_OPENAI;
    else
        return false;
    return true;
}

/* GET /v1/models/{model}: the model is in the path (percent-decoded into out). */
static bool model_in_path(const char *method, const char *path, char *out, size_t size)
{
    static const char prefix[] = "/v1/models/";
    if (strcmp(method, "GET") != 0 || strncmp(path, prefix, sizeof prefix - 1) != 0)
        return false;
    size_t n = 0;
    for (const char *p = path + sizeof prefix - 1; *p && n + 1 < size; p++) {
        if (p[0] == '%' && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
            char hex[3] = {p[1], p[2], '\0'};
            out[n++] = (char)strtol(hex, NULL, 16);
            p += 2;
        } else {
            out[n++] = *p;
        }
    }
    out[n] = '\0';
    return n > 0;
}

/* The request's model, as the client wrote it and as a key to match nodes' lists by. */
void http_set_model(request_t *req, const char *model)
{
    agpu_text_copy(req->model_asked, sizeof req->model_asked, model);
    if (agpu_name_key(model, req->model, sizeof req->model) != 0)
        req->model[0] = '\0';
}

/* ---- requests that wait: in the queue, for a peer's first byte, for a mesh-wide list ---- */

void http_waiting_add(agpu_http_t *self, request_t *req)
{
    if (req->in_waiting)
        return;
    req->in_waiting = true;
    req->wait_prev = NULL;
    req->wait_next = self->waiting;
    if (self->waiting)
        self->waiting->wait_prev = req;
    self->waiting = req;
}

void http_waiting_remove(agpu_http_t *self, request_t *req)
{
    if (!req->in_waiting)
        return;
    req->in_waiting = false;
    if (req->wait_prev)
        req->wait_prev->wait_next = req->wait_next;
    else
        self->waiting = req->wait_next;
    if (req->wait_next)
        req->wait_next->wait_prev = req->wait_prev;
    req->wait_prev = req->wait_next = NULL;
}

/* The queue's wake-up, from any thread: the shard looks at its waiting requests next turn. */
void http_wake_shard(void *arg)
{
    agpu_http_t *self = arg;
    atomic_store(&self->tend_due, true);
    agpu_wakeup_signal(self->wake_fd);
}

/* ---- suspending a client (idempotent: a request may wait on several things) ---- */

void http_suspend(void *front)
{
    request_t *req = front;
    if (req->suspended)
        return;
    req->suspended = true;
    MHD_suspend_connection(req->conn);
}

/* Resumed connections are served by the next agpu_http_run: the shard runs it again at once
 * when agpu_http_pending() says so. */
void http_resume(void *front)
{
    request_t *req = front;
    if (!req->suspended)
        return;
    req->suspended = false;
    MHD_resume_connection(req->conn);
    req->http->resumed = true;
}

/* A mesh-wide list's exchanges never suspend the client themselves: the pass that reads them
 * all does, once, when something is still missing. */
static void gather_suspend(void *front)
{
    (void)front;
}

const agpu_exchange_ops_t http_exchange_ops = {http_suspend, http_resume, agpu_forward_kick};
const agpu_exchange_ops_t http_gather_ops = {gather_suspend, http_resume, agpu_forward_kick};

/* ---- the request handler ---- */

/* Work for a model's slots: what a draining node no longer takes. */
static bool is_work(const request_t *req)
{
    return req->names_model && req->kind == AGPU_ROUTE_SLOT;
}

/* A request's first call: its headers are in. Either answer now, or decide how it is served
 * (and start at once, unless its body must be read first). */
static enum MHD_Result on_headers(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                  const char *path, const char *method)
{
    if (self->closing)
        return http_answer_error(conn, req, path, MHD_HTTP_SERVICE_UNAVAILABLE,
                                 "agpu is shutting down");
    const char *origin = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Origin");
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    switch (agpu_cors_check(self->cors, method, origin, host)) {
    case AGPU_CORS_FORBID:
        return http_answer(conn, req, MHD_HTTP_FORBIDDEN, NULL, "", 0);
    case AGPU_CORS_PREFLIGHT:
        req->origin = origin;
        return answer_preflight(conn, req);
    case AGPU_CORS_ALLOW:
        req->origin = origin;
        break;
    case AGPU_CORS_PASS:
        break;
    }
    if (strncmp(path, "/agpu/", 6) == 0)
        return http_answer_api(self, conn, req, path, method);
    req->names_model = names_model(method, path);
    req->kind = strcmp(path, "/api/show") == 0 ? AGPU_ROUTE_HOLDER : AGPU_ROUTE_SLOT;
    const char *length = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
    if (length && strtoull(length, NULL, 10) > body_limit(self, req))
        return answer_too_large(self, conn, req, path);
    req->may_change_models = may_change_models(path);
    req->hop = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, HOP_HEADER) != NULL;
    const char *target = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, TARGET_HEADER);
    char model[AGPU_MSG_MODEL_NAME_MAX + 1];
    agpu_merge_kind_t list;
    req->mode = MODE_LOCAL;
    if (req->hop) {
        if (is_work(req) && self->options.mesh && agpu_mesh_draining(self->options.mesh))
            return http_answer_error(conn, req, path, MHD_HTTP_SERVICE_UNAVAILABLE,
                                     "this node is draining");
    } else if (target && target[0]) {
        if (!http_find_target(self, req, target)) {
            char message[AGPU_NAME_MAX + 64];
            snprintf(message, sizeof message, "no node named '%.*s' is alive in the mesh",
                     AGPU_NAME_MAX, target);
            return http_answer_error(conn, req, path, MHD_HTTP_NOT_FOUND, message);
        }
        req->mode = req->targets[0].self ? MODE_LOCAL : MODE_TARGET;
    } else if (self->options.mesh && is_mesh_list(method, path, &list)) {
        return http_begin_gather(self, conn, req, method, path, list);
    } else if (self->options.mesh && req->names_model) {
        req->mode = MODE_ROUTE;
    } else if (self->options.mesh && model_in_path(method, path, model, sizeof model)) {
        req->mode = MODE_ROUTE;
        req->kind = AGPU_ROUTE_HOLDER;
        http_set_model(req, model);
        return MHD_YES; /* placed once the request is complete */
    }
    if (req->names_model)
        return MHD_YES; /* placed once the body says which model */
    if (req->n_targets == 0)
        http_set_local_target(self, req);
    return http_start_attempt(self, conn, req, method, path); /* the body streams through */
}

/* More of the request body: pass it on, unless it breaks the limit. */
static enum MHD_Result on_body(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                               const char *path, const char *data, size_t *size)
{
    if (req->answered) {
        *size = 0; /* the answer is out; what the client still sends is discarded */
        return MHD_YES;
    }
    if (req->too_large || req->received + *size > body_limit(self, req)) {
        /* libmicrohttpd answers only once the request is in: read the rest and drop it,
         * then say 413; a client that keeps sending far past the limit is cut off */
        if (!req->too_large && req->ex)
            agpu_exchange_cancel(req->ex);
        req->too_large = true;
        req->discarded += *size;
        *size = 0;
        return req->discarded > AGPU_DISCARD_MAX ? MHD_NO : MHD_YES;
    }
    if (req->names_model) {
        if (agpu_pipe_write(&req->body, data, *size) != 0)
            return MHD_NO; /* out of memory: drop the connection */
        req->received += *size;
        *size = 0;
        return MHD_YES;
    }
    if (!req->ex) { /* its attempt already failed: what is left is dropped */
        req->received += *size;
        *size = 0;
        return MHD_YES;
    }
    agpu_push_t pushed = agpu_exchange_push_body(req->ex, data, *size);
    if (pushed != AGPU_PUSH_WAIT) {
        req->received += *size; /* taken, or dropped because the upstream has answered */
        *size = 0;
    }
    return MHD_YES;
}

/* The model a body read whole names; without one the request is served here, and the local
 * Ollama says what is wrong with it. */
static void read_model(request_t *req)
{
    char model[AGPU_MSG_MODEL_NAME_MAX + 1];
    if (agpu_json_request_model(req->body.data ? req->body.data + req->body.start : "",
                                agpu_pipe_used(&req->body), model, sizeof model) == 0)
        http_set_model(req, model);
    if (!req->model[0] && req->mode == MODE_ROUTE)
        req->mode = MODE_LOCAL;
}

/* Moves a complete request on as far as it can go: placed, sent, failed over, answered.
 * Called again each time its connection is resumed. */
static enum MHD_Result advance(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                               const char *method, const char *path)
{
    for (;;) {
        if (req->gather)
            return http_gather_pass(self, conn, req, path);
        if (req->queued) {
            http_suspend(req); /* still waiting: the shard resumes it when a slot frees */
            return MHD_YES;
        }
        if (req->queue_expired)
            return http_answer_busy(conn, req, path,
                                    req->shut_out ? "agpu is shutting down" : QUEUE_FULL_MESSAGE);
        if (!req->ex) {
            enum MHD_Result rc = MHD_YES;
            if (req->n_targets == 0 && !http_place(self, conn, req, path, &rc))
                return rc;
            if (req->attempt >= req->n_targets)
                return http_answer_error(conn, req, path, MHD_HTTP_BAD_GATEWAY, req->failure);
            rc = http_start_attempt(self, conn, req, method, path);
            if (!req->ex)
                return rc;
        }
        if (!req->body_ended) {
            req->body_ended = true;
            agpu_exchange_end_body(req->ex);
        }
        agpu_forward_send_now(self->forward); /* before the wait below suspends the client */
        agpu_response_head_t head;
        char error[AGPU_ERROR_MAX];
        switch (agpu_exchange_head(req->ex, &head, error, sizeof error)) {
        case AGPU_HEAD_WAIT:
            return MHD_YES; /* suspended until the upstream answers */
        case AGPU_HEAD_FAILED:
            agpu_warn("%s: %s", path, error);
            http_fail_attempt(self, req, error, true);
            continue;
        case AGPU_HEAD_READY:
            break;
        }
        if (http_refused(head.status) && req->attempt + 1 < req->n_targets) {
            char why[AGPU_ERROR_MAX];
            snprintf(why, sizeof why, "%s answered %d", req->targets[req->attempt].name,
                     head.status);
            http_fail_attempt(self, req, why, true);
            continue;
        }
        http_waiting_remove(self, req);
        return answer_upstream(self, conn, req, &head);
    }
}

/* The body is complete: place the request if it waited for its body, and move it on. */
static enum MHD_Result on_complete(agpu_http_t *self, struct MHD_Connection *conn, request_t *req,
                                   const char *method, const char *path)
{
    if (req->answered)
        return MHD_YES;
    if (req->too_large)
        return answer_too_large(self, conn, req, path);
    if (req->names_model && !req->model[0] && !req->ex && req->n_targets == 0 && !req->queued)
        read_model(req);
    return advance(self, conn, req, method, path);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *path,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **req_cls)
{
    agpu_http_t *self = cls;
    request_t *req = *req_cls;
    if (!req) {
        req = calloc(1, sizeof *req);
        if (!req)
            return MHD_NO;
        self->requests++;
        req->http = self;
        req->conn = conn;
        *req_cls = req;
        return on_headers(self, conn, req, path, method);
    }
    if (*upload_data_size > 0)
        return on_body(self, conn, req, path, upload_data, upload_data_size);
    return on_complete(self, conn, req, method, path);
}

static void on_request_done(void *cls, struct MHD_Connection *conn, void **req_cls,
                            enum MHD_RequestTerminationCode why)
{
    agpu_http_t *self = cls;
    request_t *req = *req_cls;
    if (!req)
        return;
    if (req->queued)
        agpu_queue_remove(self->options.queue, &req->queued);
    http_waiting_remove(self, req);
    agpu_gather_destroy(&req->gather);
    http_attempt_end(self, req); /* (a no-op if it ended already) */
    if (req->ex) {
        /* A complete answer may be out before the forwarder ends the transfer: leave that
         * transfer alone, so its connection is kept for the next request. */
        if (why != MHD_REQUEST_TERMINATED_COMPLETED_OK || !req->delivered) {
            agpu_debug("request ended early (code %d): cancelling upstream", (int)why);
            agpu_exchange_cancel(req->ex); /* no-op once the upstream has finished */
        }
        agpu_exchange_unref(&req->ex);
    }
    bool local =
        req->n_targets > 0 &&
        req->targets[req->attempt < req->n_targets ? req->attempt : req->n_targets - 1].self;
    agpu_pipe_free(&req->body);
    if (local && req->may_change_models && self->options.watch)
        agpu_watch_kick(self->options.watch);
    free(req);
    *req_cls = NULL;
}

/* ---- libmicrohttpd's hooks ---- */

/* Keeps the path and the query exactly as the client sent them: they are forwarded, and
 * decoding here would change what the upstream sees (%2F in a model name, '+' in a query). */
static size_t keep_escaped(void *cls, struct MHD_Connection *conn, char *uri)
{
    return strlen(uri);
}

static void log_mhd(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    vsnprintf(line, sizeof line, fmt, ap);
    size_t len = strlen(line);
    while (len && line[len - 1] == '\n')
        line[--len] = '\0';
    agpu_debug("libmicrohttpd: %s", line);
}

/* ---- lifecycle ---- */

int agpu_http_listen(const char *host, uint16_t port, char *error, size_t error_size)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    char service[8];
    snprintf(service, sizeof service, "%u", (unsigned)port);
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0 || !found) {
        snprintf(error, error_size, "cannot resolve listen address %s: %s", host, gai_strerror(rc));
        return -1;
    }
    int fd = socket(found->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0 ||
        bind(fd, found->ai_addr, found->ai_addrlen) != 0 || listen(fd, AGPU_LISTEN_BACKLOG) != 0) {
        snprintf(error, error_size, "cannot listen on %s:%u: %s", host, (unsigned)port,
                 strerror(errno));
        if (fd >= 0)
            close(fd);
        fd = -1;
    }
    freeaddrinfo(found);
    return fd;
}

static bool is_loopback(int listen_fd)
{
    struct sockaddr_storage addr;
    socklen_t len = sizeof addr;
    if (getsockname(listen_fd, (struct sockaddr *)&addr, &len) != 0)
        return false;
    if (addr.ss_family == AF_INET)
        return (ntohl(((struct sockaddr_in *)&addr)->sin_addr.s_addr) >> 24) == 127;
    return addr.ss_family == AF_INET6 &&
           IN6_IS_ADDR_LOOPBACK(&((struct sockaddr_in6 *)&addr)->sin6_addr);
}

agpu_http_t *agpu_http_new(const agpu_http_options_t *options, int listen_fd, int wake_fd,
                           agpu_forward_t *forward, char *error, size_t error_size)
{
    agpu_http_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    self->forward = forward;
    self->wake_fd = wake_fd;
    self->options = *options;
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    self->random =
        ((uint64_t)(uintptr_t)self ^ (uint64_t)now.tv_nsec << 20 ^ (uint64_t)now.tv_sec) | 1;
    self->node_name = strdup(options->node_name);
    agpu_view_t *view = options->mesh ? agpu_mesh_view(options->mesh) : NULL;
    agpu_text_copy(self->node_id, sizeof self->node_id, view ? agpu_view_self_id(view) : "");
    agpu_view_unref(&view);
    self->upstream = options->upstream ? strdup(options->upstream) : NULL;
    self->cors = agpu_cors_new(options->origins, is_loopback(listen_fd));
    /* no thread of its own: the shard's loop runs it, beside the forwarder */
    unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
    if (self->node_name && self->cors)
        self->daemon = MHD_start_daemon(
            flags, 0, NULL, NULL, on_request, self, MHD_OPTION_EXTERNAL_LOGGER, log_mhd,
            self, /* first, so it catches everything */
            MHD_OPTION_LISTEN_SOCKET, listen_fd, MHD_OPTION_CONNECTION_LIMIT,
            options->max_connections, MHD_OPTION_CONNECTION_MEMORY_LIMIT,
            (size_t)AGPU_CONNECTION_MEMORY, MHD_OPTION_CONNECTION_TIMEOUT, AGPU_IDLE_TIMEOUT_S,
            MHD_OPTION_STRICT_FOR_CLIENT, (int)1, /* reject malformed requests rather than guess */
            MHD_OPTION_NOTIFY_COMPLETED, on_request_done, self, MHD_OPTION_UNESCAPE_CALLBACK,
            keep_escaped, self, MHD_OPTION_END);
    if (!self->daemon) {
        snprintf(error, error_size, "cannot start the HTTP front door");
        agpu_http_destroy(&self);
        return NULL;
    }
    return self;
}

int agpu_http_epoll_fd(agpu_http_t *self)
{
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(self->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    return info ? info->epoll_fd : -1;
}

long agpu_http_timeout_ms(agpu_http_t *self)
{
    MHD_UNSIGNED_LONG_LONG timeout;
    if (MHD_get_timeout(self->daemon, &timeout) != MHD_YES)
        return -1;
    return timeout > 60000 ? 60000 : (long)timeout;
}

void agpu_http_run(agpu_http_t *self)
{
    self->resumed = false;
    MHD_run(self->daemon);
}

bool agpu_http_pending(agpu_http_t *self)
{
    return self->resumed;
}

void agpu_http_wait(agpu_http_t *self, long max_ms)
{
    self->resumed = false;
    MHD_run_wait(self->daemon, (int32_t)max_ms);
}

bool agpu_http_quiet(agpu_http_t *self)
{
    return !self->waiting && !self->resumed;
}

uint64_t agpu_http_requests(agpu_http_t *self)
{
    return self->requests;
}

void agpu_http_quiesce(agpu_http_t *self)
{
    self->closing = true;
    if (self->daemon)
        MHD_quiesce_daemon(self->daemon); /* gives the shared listening socket back */
    /* requests in the mesh queue are told now (503): libmicrohttpd cannot stop with a
     * connection suspended, and no slot will free for them here */
    for (request_t *req = self->waiting, *next; req; req = next) {
        next = req->wait_next;
        if (req->queued) {
            agpu_queue_remove(self->options.queue, &req->queued);
            req->queue_expired = req->shut_out = true;
            http_waiting_remove(self, req);
            http_resume(req);
        }
    }
}

void agpu_http_destroy(agpu_http_t **self_p)
{
    agpu_http_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->daemon) {
        MHD_quiesce_daemon(self->daemon); /* the listening socket is not this door's to close */
        MHD_stop_daemon(self->daemon);
    }
    agpu_cors_destroy(&self->cors);
    free(self->node_name);
    free(self->upstream);
    free(self);
}
