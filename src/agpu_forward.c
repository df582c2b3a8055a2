/* The forwarder: each exchange becomes a libcurl easy transfer on the shard's multi handle,
 * driven by the shard's epoll loop through libcurl's socket interface. Everything here runs
 * on the shard's thread, as do the front door's callbacks that kick it. */
#include "agpu_forward.h"

#include "agpu_log.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <time.h>

/* libcurl's read size: also the most one callback hands the front door at once. */
#define FORWARD_BUFFER_SIZE (64L * 1024L)
/* Idle upstream connections kept for reuse, per shard. */
#define FORWARD_MAX_IDLE_CONNECTIONS 256L
/* Easy handles kept for the next transfers: setting one up costs more than resetting it. */
#define FORWARD_SPARE_HANDLES 64

typedef struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    char *body; /* a body read whole before forwarding, sent with the head */
    agpu_exchange_t *ex;
    agpu_forward_t *forward;
    bool touched; /* in forward->touched: its front may need waking */
    struct transfer *prev, *next;
    char error[CURL_ERROR_SIZE];
} transfer_t;

/* A growable list of referenced exchanges. */
typedef struct {
    agpu_exchange_t **items;
    size_t len, alloc;
} ex_list_t;

struct agpu_forward {
    CURLM *multi;
    int epoll_fd;
    unsigned connect_timeout_ms;
    int64_t timer_due_ms; /* libcurl's next timeout, monotonic ms; -1: none */
    bool stopped;
    transfer_t *running;
    CURL *spare[FORWARD_SPARE_HANDLES]; /* reset easy handles, ready for reuse */
    size_t n_spare;
    ex_list_t kicked;  /* exchanges kicked since the last run */
    ex_list_t touched; /* exchanges whose callbacks ran in this batch */
};

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

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

/* ---- libcurl callbacks ---- */

/* Remembers that t's front may need waking once the current batch of callbacks is done. */
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

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    transfer_t *t = arg;
    agpu_exchange_t *ex = t->ex;
    size_t len = size * nitems;
    touch(t);
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        const char *space = memchr(line, ' ', len);
        agpu_exchange_reset_head(ex);
        agpu_exchange_set_status(ex, space ? atoi(space + 1) : 0);
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        long status = 0;
        curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
        if (status >= 200)
            agpu_exchange_head_done(ex); /* a 1xx interim answer is followed by the real one */
        return len;
    }
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return len;
    const char *value = colon + 1, *end = line + len;
    while (value < end && (*value == ' ' || *value == '\t'))
        value++;
    while (end > value && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' '))
        end--;
    agpu_exchange_add_header(ex, line, (size_t)(colon - line), value, (size_t)(end - value));
    return len;
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *arg)
{
    transfer_t *t = arg;
    size_t len = size * nmemb;
    touch(t);
    return agpu_exchange_take_response(t->ex, data, len) ? len : CURL_WRITEFUNC_PAUSE;
}

static size_t on_upload(char *out, size_t size, size_t nitems, void *arg)
{
    transfer_t *t = arg;
    touch(t);
    long n = agpu_exchange_give_body(t->ex, out, size * nitems);
    if (n == AGPU_UPLOAD_PAUSE)
        return CURL_READFUNC_PAUSE;
    if (n == AGPU_UPLOAD_ABORT)
        return CURL_READFUNC_ABORT;
    return (size_t)n;
}

/* libcurl says which of its sockets to watch, and for what. */
static int on_socket(CURL *easy, curl_socket_t fd, int what, void *arg, void *watched)
{
    agpu_forward_t *self = arg;
    if (what == CURL_POLL_REMOVE) {
        epoll_ctl(self->epoll_fd, EPOLL_CTL_DEL, fd, NULL);
        curl_multi_assign(self->multi, fd, NULL);
        return 0;
    }
    struct epoll_event ev = {
        .events = (what & CURL_POLL_IN ? EPOLLIN : 0) | (what & CURL_POLL_OUT ? EPOLLOUT : 0),
        .data.u64 = (uint64_t)fd,
    };
    if (epoll_ctl(self->epoll_fd, watched ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, fd, &ev) != 0)
        agpu_warn("cannot watch upstream socket %d", (int)fd);
    curl_multi_assign(self->multi, fd, self);
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *arg)
{
    agpu_forward_t *self = arg;
    self->timer_due_ms = timeout_ms < 0 ? -1 : now_ms() + timeout_ms;
    return 0;
}

/* ---- transfers ---- */

/* "http://host:port" of a URL, for messages. */
static void url_origin(const char *url, char *out, size_t size)
{
    const char *host = strstr(url, "://");
    const char *path = host ? strchr(host + 3, '/') : NULL;
    size_t len = path ? (size_t)(path - url) : strlen(url);
    snprintf(out, size, "%.*s", (int)len, url);
}

static void transfer_free(agpu_forward_t *self, transfer_t *t)
{
    curl_multi_remove_handle(self->multi, t->easy);
    if (self->n_spare < FORWARD_SPARE_HANDLES && !self->stopped) {
        curl_easy_reset(t->easy);
        self->spare[self->n_spare++] = t->easy;
    } else {
        curl_easy_cleanup(t->easy);
    }
    curl_slist_free_all(t->headers);
    free(t->body);
    if (t->prev)
        t->prev->next = t->next;
    else
        self->running = t->next;
    if (t->next)
        t->next->prev = t->prev;
    agpu_exchange_set_transfer(t->ex, NULL);
    agpu_exchange_unref(&t->ex);
    free(t);
}

static void transfer_end(agpu_forward_t *self, transfer_t *t, CURLcode code)
{
    if (code == CURLE_OK) {
        agpu_exchange_finish(t->ex, NULL);
    } else {
        char origin[256], message[CURL_ERROR_SIZE + 320];
        url_origin(agpu_exchange_request(t->ex)->url, origin, sizeof origin);
        snprintf(message, sizeof message, "upstream %s failed: %s", origin,
                 t->error[0] ? t->error : curl_easy_strerror(code));
        agpu_exchange_finish(t->ex, message);
    }
    transfer_free(self, t);
}

static void set_method(CURL *easy, const agpu_request_t *req, transfer_t *t)
{
    if (strcmp(req->method, "HEAD") == 0) {
        curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
        return;
    }
    if (!req->has_body) {
        if (strcmp(req->method, "POST") == 0) {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
            curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
        } else if (strcmp(req->method, "GET") != 0) {
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
        }
        return;
    }
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    size_t len;
    if ((t->body = agpu_exchange_take_preloaded(t->ex, &len))) {
        curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, t->body);
        if (strcmp(req->method, "POST") != 0)
            curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
        return;
    }
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(easy, CURLOPT_READDATA, t);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_length);
    if (req->body_length < 0)
        t->headers = curl_slist_append(t->headers, "Transfer-Encoding: chunked");
    if (strcmp(req->method, "POST") != 0)
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
}

static void transfer_start(agpu_forward_t *self, agpu_exchange_t *ex)
{
    const agpu_request_t *req = agpu_exchange_request(ex);
    transfer_t *t = calloc(1, sizeof *t);
    CURL *easy = !t ? NULL : self->n_spare ? self->spare[--self->n_spare] : curl_easy_init();
    if (!easy) {
        free(t);
        agpu_exchange_finish(ex, "out of memory starting the upstream request");
        return;
    }
    t->easy = easy;
    t->ex = ex;
    t->forward = self;
    agpu_exchange_ref(ex);
    for (size_t i = 0; i < req->header_count; i++)
        t->headers = curl_slist_append(t->headers, req->headers[i]);
    t->headers = curl_slist_append(t->headers, "Expect:"); /* no 100-continue round trip */
    curl_easy_setopt(easy, CURLOPT_URL, req->url);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, t);
    curl_easy_setopt(easy, CURLOPT_ERRORBUFFER, t->error);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_NOPROXY, "*"); /* never send a peer's traffic to a proxy */
    curl_easy_setopt(easy, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, (long)self->connect_timeout_ms);
    curl_easy_setopt(easy, CURLOPT_TCP_NODELAY, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_BUFFERSIZE, FORWARD_BUFFER_SIZE);
    curl_easy_setopt(easy, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, t);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, t);
    set_method(easy, req, t);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, t->headers);
    agpu_exchange_set_transfer(ex, t);
    t->next = self->running;
    if (t->next)
        t->next->prev = t;
    self->running = t;
    CURLMcode rc = curl_multi_add_handle(self->multi, easy);
    if (rc != CURLM_OK) {
        snprintf(t->error, sizeof t->error, "%s", curl_multi_strerror(rc));
        transfer_end(self, t, CURLE_FAILED_INIT);
    }
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
        agpu_exchange_finish(ex, "client closed the connection");
        transfer_free(self, t);
        return;
    }
    curl_easy_pause(t->easy,
                    (flow.pause_recv ? CURLPAUSE_RECV : 0) | (flow.pause_send ? CURLPAUSE_SEND : 0));
}

static void run_kicks(agpu_forward_t *self)
{
    /* a kick may kick again (an exchange finished at once): take the list as it is now */
    while (self->kicked.len > 0) {
        ex_list_t batch = self->kicked;
        self->kicked = (ex_list_t){0};
        for (size_t i = 0; i < batch.len; i++) {
            sync_exchange(self, batch.items[i]);
            agpu_exchange_unref(&batch.items[i]);
        }
        free(batch.items);
    }
}

static void reap_finished(agpu_forward_t *self)
{
    CURLMsg *msg;
    int left;
    while ((msg = curl_multi_info_read(self->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        transfer_t *t;
        curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&t);
        transfer_end(self, t, msg->data.result);
    }
}

/* ---- public ---- */

agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms, int epoll_fd)
{
    agpu_forward_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->connect_timeout_ms = connect_timeout_ms;
    self->epoll_fd = epoll_fd;
    self->timer_due_ms = -1;
    self->multi = curl_multi_init();
    if (!self->multi) {
        free(self);
        return NULL;
    }
    curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS, FORWARD_MAX_IDLE_CONNECTIONS);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
    curl_multi_setopt(self->multi, CURLMOPT_SOCKETDATA, self);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERFUNCTION, on_timer);
    curl_multi_setopt(self->multi, CURLMOPT_TIMERDATA, self);
    return self;
}

void agpu_forward_stop(agpu_forward_t *self)
{
    self->stopped = true;
    run_kicks(self);
    while (self->running) {
        snprintf(self->running->error, sizeof self->running->error, "agpu is shutting down");
        transfer_end(self, self->running, CURLE_ABORTED_BY_CALLBACK);
    }
    wake_touched(self);
}

void agpu_forward_destroy(agpu_forward_t **self_p)
{
    agpu_forward_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    agpu_forward_stop(self);
    while (self->n_spare)
        curl_easy_cleanup(self->spare[--self->n_spare]);
    curl_multi_cleanup(self->multi);
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

void agpu_forward_socket_ready(agpu_forward_t *self, int fd, uint32_t events)
{
    int flags = (events & EPOLLIN ? CURL_CSELECT_IN : 0) |
                (events & EPOLLOUT ? CURL_CSELECT_OUT : 0) |
                (events & (EPOLLERR | EPOLLHUP) ? CURL_CSELECT_ERR : 0);
    int running;
    curl_multi_socket_action(self->multi, fd, flags, &running);
}

long agpu_forward_timeout_ms(agpu_forward_t *self)
{
    if (self->timer_due_ms < 0)
        return -1;
    int64_t left = self->timer_due_ms - now_ms();
    return left > 0 ? (long)left : 0;
}

bool agpu_forward_busy(agpu_forward_t *self)
{
    return self->kicked.len > 0 || self->touched.len > 0;
}

void agpu_forward_run(agpu_forward_t *self)
{
    int running;
    run_kicks(self);
    /* new transfers set a zero timer: start them now rather than after another poll (a few
     * rounds at most: libcurl may keep asking for "now" while it resolves or connects) */
    for (int round = 0; round < 4 && self->timer_due_ms >= 0 && self->timer_due_ms <= now_ms();
         round++) {
        self->timer_due_ms = -1;
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    reap_finished(self);
    wake_touched(self);
}
