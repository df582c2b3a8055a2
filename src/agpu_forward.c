/* The forwarder: each exchange becomes one HTTP/1.1 request on a kept-alive upstream
 * connection of the shard (agpu_upstream), driven by the shard's epoll loop. agpu_h1 writes
 * the request head and parses the answer; this file moves the bytes between the connections
 * and the exchanges. Everything here runs on the shard's thread, as do the front door's
 * callbacks that kick it.
 *
 * System calls per request on a reused connection: one sendmsg (head and a preloaded body
 * together) and usually one recv (the answer; reading stops when the parser says it is
 * complete). */
#include "agpu_forward.h"

#include "agpu_h1.h"
#include "agpu_log.h"
#include "agpu_upstream.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/uio.h>

/* One recv: also the most one call hands the exchange at once. Shared by the shard's
 * connections: the parser copies what it keeps, the exchange's pipe the body. */
#define FORWARD_READ_SIZE (64U * 1024U)
/* One give_body pull of a streamed request body. */
#define FORWARD_UPLOAD_SIZE (64U * 1024U)

typedef agpu_upstream_conn_t conn_t;

typedef struct transfer {
    agpu_exchange_t *ex;
    agpu_forward_t *forward;
    conn_t *conn;
    agpu_h1_url_t url;
    bool head_request;
    char *head; /* the request head, kept until the answer is in: a retry sends it again */
    size_t head_len;
    char *body; /* a preloaded body, sent with the head */
    size_t body_len;
    bool streamed, chunked; /* a body pulled with give_body (framed in chunks) */
    char *piece;            /* the last piece of a streamed body */
    char prefix[AGPU_H1_CHUNK_PREFIX_MAX];
    struct iovec out[3]; /* what is left to send of the head, body or piece */
    int out_first, out_n;
    bool upload_done;   /* nothing more to pull */
    bool upload_paused; /* give_body said pause: wait for a kick */
    bool recv_paused;   /* the exchange's pipe is full: wait for a kick */
    bool retried;
    bool touched; /* in forward->touched: its front may need waking */
    struct transfer *prev, *next;
} transfer_t;

/* A growable list of referenced exchanges. */
typedef struct {
    agpu_exchange_t **items;
    size_t len, alloc;
} ex_list_t;

struct agpu_forward {
    agpu_upstream_t *pool;
    unsigned connect_timeout_ms;
    bool stopped;
    transfer_t *running;
    ex_list_t kicked;  /* exchanges kicked since the last run */
    ex_list_t touched; /* exchanges whose state changed in this batch */
    char read_buffer[FORWARD_READ_SIZE];
};

static bool list_push(ex_list_t *list, agpu_exchange_t *ex)
{
    if (list->len == list->alloc) {
        size_t alloc = list->alloc ? list->alloc * 2 : 64;
        agpu_exchange_t **grown = realloc(list->items, alloc * sizeof *grown);
        if (!grown)
            return false;
        list->items = grown;
        list->alloc = alloc;
    }
    agpu_exchange_ref(ex);
    list->items[list->len++] = ex;
    return true;
}

/* Remembers that t's front may need waking once the current batch of events is handled. */
static void touch(transfer_t *t)
{
    if (t->touched)
        return;
    if (list_push(&t->forward->touched, t->ex))
        t->touched = true;
    else
        agpu_exchange_wake(t->ex); /* out of memory: wake now rather than never */
}

static void wake_touched(agpu_forward_t *self)
{
    for (size_t i = 0; i < self->touched.len; i++) {
        transfer_t *t = agpu_exchange_transfer(self->touched.items[i]);
        if (t)
            t->touched = false;
        agpu_exchange_wake(self->touched.items[i]);
        agpu_exchange_unref(&self->touched.items[i]);
    }
    self->touched.len = 0;
}

/* ---- the answer's parts, handed to the exchange ---- */

static void on_head_begin(void *arg, int status)
{
    transfer_t *t = arg;
    touch(t);
    agpu_exchange_reset_head(t->ex);
    agpu_exchange_set_status(t->ex, status);
}

static void on_header(void *arg, const char *name, size_t name_len, const char *value,
                      size_t value_len)
{
    transfer_t *t = arg;
    agpu_exchange_add_header(t->ex, name, name_len, value, value_len);
}

static void on_head_done(void *arg, int status)
{
    transfer_t *t = arg;
    touch(t);
    agpu_exchange_head_done(t->ex);
}

static bool on_body(void *arg, const char *data, size_t len)
{
    transfer_t *t = arg;
    touch(t);
    return agpu_exchange_take_response(t->ex, data, len);
}

static const agpu_h1_sink_t answer_sink = {on_head_begin, on_header, on_head_done, on_body};

/* ---- transfers ---- */

static void transfer_free(agpu_forward_t *self, transfer_t *t)
{
    if (t->prev)
        t->prev->next = t->next;
    else
        self->running = t->next;
    if (t->next)
        t->next->prev = t->prev;
    agpu_exchange_set_transfer(t->ex, NULL);
    agpu_exchange_unref(&t->ex);
    free(t->head);
    free(t->body);
    free(t->piece);
    free(t);
}

/* Finishes the exchange (error NULL: success) and frees t; its connection goes back to the
 * pool when keep_conn, else it is closed. */
static void transfer_end(agpu_forward_t *self, transfer_t *t, const char *error, bool keep_conn)
{
    agpu_exchange_finish(t->ex, error);
    if (t->conn)
        agpu_upstream_release(self->pool, t->conn, keep_conn && !self->stopped);
    transfer_free(self, t);
}

static void transfer_fail(agpu_forward_t *self, transfer_t *t, const char *reason)
{
    char message[AGPU_ERROR_MAX];
    snprintf(message, sizeof message, "upstream http://%.300s failed: %.180s", t->url.authority,
             reason);
    transfer_end(self, t, message, false);
}

static void queue_request(transfer_t *t)
{
    t->out[0] = (struct iovec){t->head, t->head_len};
    t->out[1] = (struct iovec){t->body, t->body_len};
    t->out_first = 0;
    t->out_n = t->body_len ? 2 : 1;
    t->upload_done = !t->streamed;
}

/* Pulls the next piece of a streamed body into t->out: 1 when there is one to send, 0 when
 * not now, -1 when the transfer has ended. */
static int pull_body(agpu_forward_t *self, transfer_t *t)
{
    if (!t->piece && !(t->piece = malloc(FORWARD_UPLOAD_SIZE))) {
        transfer_fail(self, t, "out of memory sending the body");
        return -1;
    }
    long n = agpu_exchange_give_body(t->ex, t->piece, FORWARD_UPLOAD_SIZE);
    touch(t); /* the front may wait for room in the pipe */
    if (n == AGPU_UPLOAD_PAUSE) {
        t->upload_paused = true;
        return 0;
    }
    if (n == AGPU_UPLOAD_ABORT) {
        transfer_end(self, t, "client closed the connection", false);
        return -1;
    }
    t->out_first = 0;
    if (n == 0) {
        t->upload_done = true;
        if (!t->chunked)
            return 0;
        t->out[0] = (struct iovec){t->prefix, agpu_h1_chunk_prefix(t->prefix, 0)};
        t->out_n = 1;
        return 1;
    }
    if (!t->chunked) {
        t->out[0] = (struct iovec){t->piece, (size_t)n};
        t->out_n = 1;
        return 1;
    }
    t->out[0] = (struct iovec){t->prefix, agpu_h1_chunk_prefix(t->prefix, (size_t)n)};
    t->out[1] = (struct iovec){t->piece, (size_t)n};
    t->out[2] = (struct iovec){(char *)AGPU_H1_CHUNK_SUFFIX, 2};
    t->out_n = 3;
    return 1;
}

static bool transfer_connect(agpu_forward_t *self, transfer_t *t, bool fresh);
static void read_answer(agpu_forward_t *self, conn_t *c);

/* A reused connection that failed before any byte of the answer was probably closed by the
 * server while idle: the request goes again on a new one, once, if its body can be sent
 * again. Returns RETRY_NOT (the caller fails t), RETRY_RUNNING or RETRY_ENDED (t is gone). */
enum { RETRY_NOT, RETRY_RUNNING, RETRY_ENDED };
static int retry_fresh(agpu_forward_t *self, transfer_t *t)
{
    conn_t *c = t->conn;
    if (!c->reused || t->retried || t->streamed || agpu_h1_response_started(c->response))
        return RETRY_NOT;
    agpu_debug("upstream connection to %s went stale: retrying", c->key);
    t->retried = true;
    t->conn = NULL;
    agpu_upstream_release(self->pool, c, false);
    return transfer_connect(self, t, true) ? RETRY_RUNNING : RETRY_ENDED;
}

/* Returns whether t still runs. */
static bool send_failed(agpu_forward_t *self, transfer_t *t, int err)
{
    int retry = retry_fresh(self, t);
    if (retry != RETRY_NOT)
        return retry == RETRY_RUNNING;
    if (agpu_h1_response_started(t->conn->response)) {
        t->out_n = 0; /* the server answered early: read the rest of its answer */
        t->upload_done = true;
        return true;
    }
    transfer_fail(self, t, strerror(err));
    return false;
}

/* Writes what is pending of the request until it is all out, the body pauses or the socket
 * is full. Returns whether t still runs. */
static bool send_request(agpu_forward_t *self, transfer_t *t)
{
    for (;;) {
        if (t->out_n == 0) {
            if (t->upload_done || t->upload_paused)
                return true;
            int pulled = pull_body(self, t);
            if (pulled <= 0)
                return pulled == 0;
        }
        struct msghdr msg = {.msg_iov = t->out + t->out_first, .msg_iovlen = (size_t)t->out_n};
        ssize_t sent = sendmsg(t->conn->fd, &msg, MSG_NOSIGNAL);
        if (sent < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return send_failed(self, t, errno);
            return true; /* EAGAIN: epoll says when there is room */
        }
        size_t left = (size_t)sent;
        while (t->out_n > 0 && left >= t->out[t->out_first].iov_len) {
            left -= t->out[t->out_first].iov_len;
            t->out_first++;
            t->out_n--;
        }
        if (t->out_n > 0) {
            struct iovec *v = &t->out[t->out_first];
            v->iov_base = (char *)v->iov_base + left;
            v->iov_len -= left;
        }
    }
}

/* Gives t a connection (an idle one unless fresh) and starts the request on it: sends now
 * if it is connected. Returns whether t still runs. */
static bool transfer_connect(agpu_forward_t *self, transfer_t *t, bool fresh)
{
    char reason[AGPU_ERROR_MAX / 2];
    conn_t *c = agpu_upstream_get(self->pool, &t->url, fresh, reason, sizeof reason);
    if (!c) {
        transfer_fail(self, t, reason);
        return false;
    }
    t->conn = c;
    c->user = t;
    agpu_h1_response_start(c->response, t, t->head_request);
    queue_request(t);
    return c->connecting || send_request(self, t);
}

static void transfer_start(agpu_forward_t *self, agpu_exchange_t *ex)
{
    const agpu_request_t *req = agpu_exchange_request(ex);
    transfer_t *t = calloc(1, sizeof *t);
    if (!t) {
        agpu_exchange_finish(ex, "out of memory starting the upstream request");
        return;
    }
    t->ex = ex;
    t->forward = self;
    agpu_exchange_ref(ex);
    agpu_exchange_set_transfer(ex, t);
    t->next = self->running;
    if (t->next)
        t->next->prev = t;
    self->running = t;
    if (agpu_h1_parse_url(req->url, &t->url) != 0) {
        char message[AGPU_ERROR_MAX];
        snprintf(message, sizeof message, "upstream %.400s failed: not an http:// URL", req->url);
        transfer_end(self, t, message, false);
        return;
    }

    /* the body's framing, as libcurl chose it: POST always says its length */
    int64_t body_length = AGPU_H1_NO_BODY;
    t->head_request = strcmp(req->method, "HEAD") == 0;
    if (t->head_request) {
        /* no body */
    } else if (!req->has_body) {
        if (strcmp(req->method, "POST") == 0)
            body_length = 0;
    } else if ((t->body = agpu_exchange_take_preloaded(ex, &t->body_len))) {
        body_length = (int64_t)t->body_len;
    } else {
        t->streamed = true;
        t->chunked = req->body_length < 0;
        body_length = t->chunked ? AGPU_H1_CHUNKED : req->body_length;
    }
    t->head = agpu_h1_request_head(req->method, &t->url, req->headers, req->header_count,
                                   body_length, &t->head_len);
    if (!t->head) {
        transfer_fail(self, t, "out of memory");
        return;
    }
    transfer_connect(self, t, false);
}

/* ---- reading the answer ---- */

/* Parses bytes of c's answer. Returns whether to go on reading: false when the transfer has
 * ended or paused. */
static bool parse_answer(agpu_forward_t *self, conn_t *c, const char *data, size_t len)
{
    transfer_t *t = c->user;
    size_t used;
    agpu_h1_state_t state = agpu_h1_response_feed(c->response, data, len, &used);
    switch (state) {
    case AGPU_H1_MORE:
        return true;
    case AGPU_H1_PAUSED:
        t->recv_paused = true;
        if (used < len && (c->rest = malloc(len - used))) {
            memcpy(c->rest, data + used, len - used);
            c->rest_len = len - used;
        } else if (used < len) {
            transfer_fail(self, t, "out of memory holding the answer");
        }
        return false;
    case AGPU_H1_DONE: {
        /* reusable when nothing follows the answer and the request was all sent */
        bool keep = used == len && agpu_h1_response_keep_alive(c->response) && t->upload_done &&
                    t->out_n == 0 && !c->peer_closing;
        transfer_end(self, t, NULL, keep);
        return false;
    }
    case AGPU_H1_FAILED:
    default:
        transfer_fail(self, t, agpu_h1_response_error(c->response));
        return false;
    }
}

static void answer_eof(agpu_forward_t *self, conn_t *c)
{
    transfer_t *t = c->user;
    if (agpu_h1_response_eof(c->response) == AGPU_H1_DONE)
        transfer_end(self, t, NULL, false);
    else if (retry_fresh(self, t) == RETRY_NOT)
        transfer_fail(self, t, agpu_h1_response_error(c->response));
}

/* Reads c's answer until the socket is drained, the answer complete or the exchange full.
 * A read shorter than the buffer drained the socket (epoll reports what comes later), unless
 * the peer has closed: then reading goes on to the end of the stream. */
static void read_answer(agpu_forward_t *self, conn_t *c)
{
    for (;;) {
        ssize_t n = recv(c->fd, self->read_buffer, sizeof self->read_buffer, 0);
        if (n > 0) {
            if (!parse_answer(self, c, self->read_buffer, (size_t)n))
                return;
            if ((size_t)n < sizeof self->read_buffer && !c->peer_closing)
                return;
        } else if (n == 0) {
            answer_eof(self, c);
            return;
        } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
            return;
        } else if (errno != EINTR) {
            transfer_t *t = c->user;
            int err = errno;
            if (retry_fresh(self, t) == RETRY_NOT)
                transfer_fail(self, t, strerror(err));
            return;
        }
    }
}

/* The exchange has room again: the held bytes, the rest of the last read, then the socket. */
static void resume_answer(agpu_forward_t *self, transfer_t *t)
{
    conn_t *c = t->conn;
    agpu_h1_state_t state = agpu_h1_response_resume(c->response);
    touch(t);
    if (state == AGPU_H1_PAUSED)
        return;
    t->recv_paused = false;
    char *rest = c->rest;
    size_t rest_len = c->rest_len;
    c->rest = NULL;
    c->rest_len = 0;
    bool go_on = !rest || parse_answer(self, c, rest, rest_len);
    free(rest);
    if (go_on)
        read_answer(self, c); /* edge-triggered: what came while paused raised no new event */
}

/* ---- events ---- */

/* c's connect (or its host name's lookup) came to state: 1 connected, 0 not yet, -1 failed. */
static void connected(agpu_forward_t *self, conn_t *c, int state)
{
    transfer_t *t = c->user;
    if (state > 0)
        send_request(self, t);
    else if (state < 0)
        transfer_fail(self, t, c->lookup_error[0] ? c->lookup_error : strerror(c->connect_errno));
}

static void expire_connects(agpu_forward_t *self)
{
    conn_t *c;
    while ((c = agpu_upstream_expired(self->pool))) {
        char reason[AGPU_ERROR_MAX / 2];
        const transfer_t *t = c->user;
        if (c->resolving)
            snprintf(reason, sizeof reason, "cannot resolve %.100s: no answer within %u ms",
                     t->url.host, self->connect_timeout_ms);
        else
            snprintf(reason, sizeof reason, "connection timed out after %u ms",
                     self->connect_timeout_ms);
        transfer_fail(self, c->user, reason); /* which closes c */
    }
}

/* Connections whose host names were looked up since the last run go on. */
static void run_lookups(agpu_forward_t *self)
{
    conn_t *c;
    int state;
    while ((c = agpu_upstream_next_resolved(self->pool, &state)))
        connected(self, c, state);
}

/* Brings one transfer in line with its exchange after a kick. */
static void sync_exchange(agpu_forward_t *self, agpu_exchange_t *ex)
{
    transfer_t *t = agpu_exchange_transfer(ex);
    agpu_exchange_flow_t flow = agpu_exchange_flow(ex);
    if (!t) {
        if (self->stopped)
            agpu_exchange_finish(ex, "agpu is shutting down");
        else if (!flow.finished && !flow.canceled)
            transfer_start(self, ex);
        return;
    }
    if (flow.canceled) {
        agpu_debug("client gone: dropping %s", agpu_exchange_request(ex)->url);
        transfer_end(self, t, "client closed the connection", false);
        return;
    }
    if (t->recv_paused && !flow.pause_recv)
        resume_answer(self, t);
    if ((t = agpu_exchange_transfer(ex)) && t->upload_paused && !flow.pause_send) {
        t->upload_paused = false;
        if (!t->conn->connecting)
            send_request(self, t);
    }
}

static void run_kicks(agpu_forward_t *self)
{
    /* a kick may kick again (an exchange finished at once): take the list as it is now, and
     * give its storage back for the next kicks unless new ones took fresh storage */
    while (self->kicked.len > 0) {
        ex_list_t batch = self->kicked;
        self->kicked = (ex_list_t){0};
        for (size_t i = 0; i < batch.len; i++) {
            sync_exchange(self, batch.items[i]);
            agpu_exchange_unref(&batch.items[i]);
        }
        batch.len = 0;
        if (!self->kicked.items)
            self->kicked = batch;
        else
            free(batch.items);
    }
}

/* ---- public ---- */

agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms, int epoll_fd,
                                 agpu_resolver_t *resolver)
{
    agpu_forward_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->connect_timeout_ms = connect_timeout_ms;
    if (!(self->pool = agpu_upstream_new(epoll_fd, connect_timeout_ms, &answer_sink, resolver))) {
        free(self);
        return NULL;
    }
    return self;
}

void agpu_forward_stop(agpu_forward_t *self)
{
    self->stopped = true;
    run_kicks(self);
    while (self->running)
        transfer_end(self, self->running, "agpu is shutting down", false);
    agpu_upstream_close_idle(self->pool);
    wake_touched(self);
}

void agpu_forward_destroy(agpu_forward_t **self_p)
{
    agpu_forward_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    agpu_forward_stop(self);
    agpu_upstream_destroy(&self->pool);
    free(self->kicked.items);
    free(self->touched.items);
    free(self);
}

void agpu_forward_kick(void *arg, agpu_exchange_t *ex)
{
    agpu_forward_t *self = arg;
    if (self->stopped) {
        agpu_exchange_finish(ex, "agpu is shutting down");
        return;
    }
    if (!list_push(&self->kicked, ex))
        agpu_exchange_finish(ex, "out of memory handing the request over");
}

void agpu_forward_send_now(agpu_forward_t *self)
{
    run_kicks(self);
}

void agpu_forward_socket_ready(agpu_forward_t *self, int fd, uint32_t events)
{
    conn_t *c = agpu_upstream_find(self->pool, fd);
    if (!c)
        return; /* closed earlier in this batch */
    if (!c->user) {
        agpu_upstream_idle_event(self->pool, c, events);
        return;
    }
    if (c->connecting) {
        if (events & (EPOLLOUT | EPOLLERR | EPOLLHUP))
            connected(self, c, agpu_upstream_connect_event(self->pool, c));
        return;
    }
    transfer_t *t = c->user;
    if (events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR))
        c->peer_closing = true;
    if ((events & (EPOLLOUT | EPOLLERR)) && t->out_n > 0 && !send_request(self, t))
        return;
    if (!t->recv_paused && (events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        read_answer(self, t->conn);
}

long agpu_forward_timeout_ms(agpu_forward_t *self)
{
    return agpu_upstream_timeout_ms(self->pool);
}

bool agpu_forward_busy(agpu_forward_t *self)
{
    return self->kicked.len > 0 || self->touched.len > 0;
}

bool agpu_forward_quiet(agpu_forward_t *self)
{
    return !self->running && !agpu_forward_busy(self);
}

void agpu_forward_run(agpu_forward_t *self)
{
    run_kicks(self);
    run_lookups(self);
    expire_connects(self);
    wake_touched(self);
}
