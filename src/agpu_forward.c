/* The forwarder thread: each exchange becomes a libcurl easy transfer on one multi handle.
 * Other threads hand work over through a queue and curl_multi_wakeup(); every libcurl call,
 * and so every pause and unpause, happens on this thread. */
#include "agpu_forward.h"

#include "agpu_log.h"

#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* libcurl's read size; also the most one callback hands the front door at once. */
#define FORWARD_BUFFER_SIZE (64L * 1024L)
/* Idle upstream connections kept for reuse. */
#define FORWARD_MAX_IDLE_CONNECTIONS 256L

typedef struct transfer {
    CURL *easy;
    struct curl_slist *headers;
    agpu_exchange_t *ex;
    struct transfer *prev, *next;
    char error[CURL_ERROR_SIZE];
} transfer_t;

struct agpu_forward {
    CURLM *multi;
    pthread_t thread;
    atomic_bool stop;
    unsigned connect_timeout_ms;
    transfer_t *running; /* owned by the thread */

    pthread_mutex_t queue_lock; /* guards the queue and stopped */
    bool stopped;               /* no thread any more: kicks finish exchanges at once */
    agpu_exchange_t **queue;
    size_t queue_len, queue_alloc;
};

/* ---- libcurl callbacks (forwarder thread) ---- */

static size_t on_header(char *line, size_t size, size_t nitems, void *arg)
{
    agpu_exchange_t *ex = arg;
    size_t len = size * nitems;
    if (len >= 5 && memcmp(line, "HTTP/", 5) == 0) {
        const char *space = memchr(line, ' ', len);
        agpu_exchange_reset_head(ex);
        agpu_exchange_set_status(ex, space ? atoi(space + 1) : 0);
        return len;
    }
    if (len <= 2 && (line[0] == '\r' || line[0] == '\n')) {
        long status = 0;
        transfer_t *t = agpu_exchange_transfer(ex);
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
    size_t len = size * nmemb;
    return agpu_exchange_take_response(arg, data, len) ? len : CURL_WRITEFUNC_PAUSE;
}

static size_t on_upload(char *out, size_t size, size_t nitems, void *arg)
{
    long n = agpu_exchange_give_body(arg, out, size * nitems);
    if (n == AGPU_UPLOAD_PAUSE)
        return CURL_READFUNC_PAUSE;
    if (n == AGPU_UPLOAD_ABORT)
        return CURL_READFUNC_ABORT;
    return (size_t)n;
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
    curl_easy_cleanup(t->easy);
    curl_slist_free_all(t->headers);
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

static int set_method(CURL *easy, const agpu_request_t *req, struct curl_slist **headers,
                      agpu_exchange_t *ex)
{
    if (strcmp(req->method, "HEAD") == 0)
        return curl_easy_setopt(easy, CURLOPT_NOBODY, 1L);
    if (!req->has_body) {
        if (strcmp(req->method, "GET") == 0)
            return CURLE_OK;
        if (strcmp(req->method, "POST") == 0) {
            curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE, 0L);
            return curl_easy_setopt(easy, CURLOPT_POSTFIELDS, "");
        }
        return curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    }
    curl_easy_setopt(easy, CURLOPT_POST, 1L);
    curl_easy_setopt(easy, CURLOPT_READFUNCTION, on_upload);
    curl_easy_setopt(easy, CURLOPT_READDATA, ex);
    curl_easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)req->body_length);
    if (req->body_length < 0)
        *headers = curl_slist_append(*headers, "Transfer-Encoding: chunked");
    if (strcmp(req->method, "POST") != 0)
        curl_easy_setopt(easy, CURLOPT_CUSTOMREQUEST, req->method);
    return CURLE_OK;
}

static void transfer_start(agpu_forward_t *self, agpu_exchange_t *ex)
{
    const agpu_request_t *req = agpu_exchange_request(ex);
    transfer_t *t = calloc(1, sizeof *t);
    CURL *easy = t ? curl_easy_init() : NULL;
    if (!easy) {
        free(t);
        agpu_exchange_finish(ex, "out of memory starting the upstream request");
        return;
    }
    t->easy = easy;
    t->ex = ex;
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
    curl_easy_setopt(easy, CURLOPT_HEADERDATA, ex);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, ex);
    set_method(easy, req, &t->headers, ex);
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
        if (atomic_load(&self->stop))
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

static void drain_queue(agpu_forward_t *self)
{
    pthread_mutex_lock(&self->queue_lock);
    agpu_exchange_t **batch = self->queue;
    size_t count = self->queue_len;
    self->queue = NULL;
    self->queue_len = self->queue_alloc = 0;
    pthread_mutex_unlock(&self->queue_lock);
    for (size_t i = 0; i < count; i++) {
        sync_exchange(self, batch[i]);
        agpu_exchange_unref(&batch[i]);
    }
    free(batch);
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

static void *forward_thread(void *arg)
{
    agpu_forward_t *self = arg;
    int running = 0;
    while (!atomic_load(&self->stop)) {
        curl_multi_poll(self->multi, NULL, 0, 1000, NULL);
        drain_queue(self);
        curl_multi_perform(self->multi, &running);
        reap_finished(self);
    }
    drain_queue(self);
    while (self->running) {
        snprintf(self->running->error, sizeof self->running->error, "agpu is shutting down");
        transfer_end(self, self->running, CURLE_ABORTED_BY_CALLBACK);
    }
    return NULL;
}

/* ---- public ---- */

agpu_forward_t *agpu_forward_new(unsigned connect_timeout_ms)
{
    agpu_forward_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->connect_timeout_ms = connect_timeout_ms;
    pthread_mutex_init(&self->queue_lock, NULL);
    self->multi = curl_multi_init();
    if (self->multi) {
        curl_multi_setopt(self->multi, CURLMOPT_MAXCONNECTS, FORWARD_MAX_IDLE_CONNECTIONS);
        if (pthread_create(&self->thread, NULL, forward_thread, self) == 0)
            return self;
        curl_multi_cleanup(self->multi);
    }
    pthread_mutex_destroy(&self->queue_lock);
    free(self);
    return NULL;
}

void agpu_forward_stop(agpu_forward_t *self)
{
    pthread_mutex_lock(&self->queue_lock);
    bool was_stopped = self->stopped;
    pthread_mutex_unlock(&self->queue_lock);
    if (was_stopped)
        return;
    atomic_store(&self->stop, true);
    curl_multi_wakeup(self->multi);
    pthread_join(self->thread, NULL);
    pthread_mutex_lock(&self->queue_lock);
    self->stopped = true;
    pthread_mutex_unlock(&self->queue_lock);
    drain_queue(self); /* kicks that raced the thread's end */
}

void agpu_forward_destroy(agpu_forward_t **self_p)
{
    agpu_forward_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    agpu_forward_stop(self);
    curl_multi_cleanup(self->multi);
    pthread_mutex_destroy(&self->queue_lock);
    free(self->queue);
    free(self);
}

void agpu_forward_kick(void *arg, agpu_exchange_t *ex)
{
    agpu_forward_t *self = arg;
    pthread_mutex_lock(&self->queue_lock);
    if (self->stopped) {
        pthread_mutex_unlock(&self->queue_lock);
        agpu_exchange_finish(ex, "agpu is shutting down");
        return;
    }
    if (self->queue_len == self->queue_alloc) {
        size_t alloc = self->queue_alloc ? self->queue_alloc * 2 : 64;
        agpu_exchange_t **grown = realloc(self->queue, alloc * sizeof *grown);
        if (!grown) {
            pthread_mutex_unlock(&self->queue_lock);
            agpu_error("out of memory: an exchange was not handed over");
            return;
        }
        self->queue = grown;
        self->queue_alloc = alloc;
    }
    agpu_exchange_ref(ex);
    self->queue[self->queue_len++] = ex;
    pthread_mutex_unlock(&self->queue_lock);
    curl_multi_wakeup(self->multi);
}
