/* The forwarder's pool of upstream connections: opening (a host name looked up by the
 * resolver's thread, then every address in turn, without blocking, within the connect
 * timeout), watching (once, edge-triggered, for the socket's life, so reuse costs no
 * epoll_ctl), keeping idle per host:port, and closing. */
#include "agpu_upstream.h"

#include "agpu_clock.h"
#include "agpu_text.h"

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Idle upstream connections kept for reuse, per shard. */
#define UPSTREAM_MAX_IDLE 256

typedef agpu_upstream_conn_t conn_t;

enum { LIST_NONE, LIST_IDLE, LIST_CONNECTING };

struct agpu_upstream {
    int epoll_fd;
    unsigned connect_timeout_ms;
    const agpu_h1_sink_t *sink;
    conn_t **by_fd; /* open connections by socket number */
    size_t by_fd_len;
    conn_t *idle, *idle_tail; /* most recently used first */
    size_t idle_count;
    conn_t *connecting; /* connecting, or waiting on a lookup */
    size_t resolving;   /* how many of them wait on a lookup */
    agpu_resolver_t *resolver;
};

/* ---- the idle and connecting lists ---- */

static void list_unlink(agpu_upstream_t *self, conn_t *c)
{
    conn_t **head = c->list == LIST_IDLE ? &self->idle : &self->connecting;
    if (c->list == LIST_NONE)
        return;
    if (c->prev)
        c->prev->next = c->next;
    else
        *head = c->next;
    if (c->next)
        c->next->prev = c->prev;
    else if (c->list == LIST_IDLE)
        self->idle_tail = c->prev;
    if (c->list == LIST_IDLE)
        self->idle_count--;
    c->prev = c->next = NULL;
    c->list = LIST_NONE;
}

static void list_push_front(agpu_upstream_t *self, conn_t *c, int list)
{
    conn_t **head = list == LIST_IDLE ? &self->idle : &self->connecting;
    c->list = list;
    c->prev = NULL;
    c->next = *head;
    if (c->next)
        c->next->prev = c;
    else if (list == LIST_IDLE)
        self->idle_tail = c;
    *head = c;
    if (list == LIST_IDLE)
        self->idle_count++;
}

/* ---- sockets ---- */

/* Closes the socket (which also takes it out of the epoll set) and forgets it. */
static void close_socket(agpu_upstream_t *self, conn_t *c)
{
    if (c->fd < 0)
        return;
    if ((size_t)c->fd < self->by_fd_len)
        self->by_fd[c->fd] = NULL;
    close(c->fd);
    c->fd = -1;
}

static void stop_resolving(agpu_upstream_t *self, conn_t *c)
{
    if (!c->resolving)
        return;
    c->resolving = false;
    self->resolving--;
}

static void conn_close(agpu_upstream_t *self, conn_t *c)
{
    stop_resolving(self, c);
    list_unlink(self, c);
    close_socket(self, c);
    agpu_h1_response_free(&c->response);
    free(c->rest);
    free(c);
}

static bool watch_socket(agpu_upstream_t *self, conn_t *c)
{
    if ((size_t)c->fd >= self->by_fd_len) {
        size_t len = self->by_fd_len ? self->by_fd_len : 256;
        while (len <= (size_t)c->fd)
            len *= 2;
        conn_t **grown = realloc(self->by_fd, len * sizeof *grown);
        if (!grown)
            return false;
        memset(grown + self->by_fd_len, 0, (len - self->by_fd_len) * sizeof *grown);
        self->by_fd = grown;
        self->by_fd_len = len;
    }
    /* once, edge-triggered, for the socket's life: reads and writes go on until EAGAIN */
    struct epoll_event ev = {
        .events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
        .data.u64 = (uint64_t)c->fd,
    };
    if (epoll_ctl(self->epoll_fd, EPOLL_CTL_ADD, c->fd, &ev) != 0)
        return false;
    self->by_fd[c->fd] = c;
    return true;
}

/* Starts connecting to the next address; false when none is left (c->connect_errno says
 * why the last failed). */
static bool connect_next(agpu_upstream_t *self, conn_t *c)
{
    close_socket(self, c);
    for (; c->addr_next < c->addrs.count; c->addr_next++) {
        const agpu_address_t *a = &c->addrs.items[c->addr_next];
        int fd = socket(a->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            c->connect_errno = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof one);
        int rc = connect(fd, (const struct sockaddr *)&a->addr, a->len);
        if (rc != 0 && errno != EINPROGRESS) {
            c->connect_errno = errno;
            close(fd);
            continue;
        }
        c->fd = fd;
        if (!watch_socket(self, c)) {
            c->connect_errno = errno ? errno : ENOMEM;
            close(fd);
            c->fd = -1;
            return false;
        }
        c->addr_next++;
        c->connecting = rc != 0;
        return true;
    }
    return false;
}

static conn_t *conn_open(agpu_upstream_t *self, const agpu_h1_url_t *url, char *reason,
                         size_t reason_size)
{
    conn_t *c = calloc(1, sizeof *c);
    if (!c || !(c->response = agpu_h1_response_new(self->sink))) {
        free(c);
        snprintf(reason, reason_size, "out of memory");
        return NULL;
    }
    c->fd = -1;
    agpu_text_copy(c->key, sizeof c->key, url->authority);
    agpu_text_copy(c->host, sizeof c->host, url->host);
    agpu_text_copy(c->port, sizeof c->port, url->port);
    c->connect_due_ms = agpu_clock_ms() + self->connect_timeout_ms;
    int found = agpu_resolver_lookup(self->resolver, c->host, c->port, &c->addrs, reason,
                                     reason_size);
    if (found == AGPU_RESOLVE_FAILED) {
        conn_close(self, c);
        return NULL;
    }
    if (found == AGPU_RESOLVE_PENDING) {
        c->resolving = c->connecting = true;
        self->resolving++;
        list_push_front(self, c, LIST_CONNECTING);
        return c;
    }
    if (!connect_next(self, c)) {
        agpu_text_copy(reason, reason_size, strerror(c->connect_errno));
        conn_close(self, c);
        return NULL;
    }
    if (c->connecting)
        list_push_front(self, c, LIST_CONNECTING);
    return c;
}

/* ---- public ---- */

agpu_upstream_t *agpu_upstream_new(int epoll_fd, unsigned connect_timeout_ms,
                                   const agpu_h1_sink_t *sink, agpu_resolver_t *resolver)
{
    agpu_upstream_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->resolver = resolver;
    self->epoll_fd = epoll_fd;
    self->connect_timeout_ms = connect_timeout_ms;
    self->sink = sink;
    return self;
}

void agpu_upstream_destroy(agpu_upstream_t **self_p)
{
    agpu_upstream_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t fd = 0; fd < self->by_fd_len; fd++)
        if (self->by_fd[fd])
            conn_close(self, self->by_fd[fd]);
    free(self->by_fd);
    free(self);
}

agpu_upstream_conn_t *agpu_upstream_get(agpu_upstream_t *self, const agpu_h1_url_t *url,
                                        bool fresh, char *reason, size_t reason_size)
{
    if (!fresh)
        for (conn_t *c = self->idle; c; c = c->next)
            if (strcmp(c->key, url->authority) == 0) {
                list_unlink(self, c);
                return c;
            }
    return conn_open(self, url, reason, reason_size);
}

void agpu_upstream_release(agpu_upstream_t *self, agpu_upstream_conn_t *c, bool keep)
{
    c->user = NULL;
    c->reused = true;
    if (!keep || c->rest || c->connecting) {
        conn_close(self, c);
        return;
    }
    list_push_front(self, c, LIST_IDLE);
    if (self->idle_count > UPSTREAM_MAX_IDLE)
        conn_close(self, self->idle_tail);
}

agpu_upstream_conn_t *agpu_upstream_find(agpu_upstream_t *self, int fd)
{
    return fd >= 0 && (size_t)fd < self->by_fd_len ? self->by_fd[fd] : NULL;
}

int agpu_upstream_connect_event(agpu_upstream_t *self, agpu_upstream_conn_t *c)
{
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
        err = errno;
    if (err == 0) {
        c->connecting = false;
        list_unlink(self, c);
        return 1;
    }
    c->connect_errno = err;
    if (!connect_next(self, c))
        return -1;
    if (c->connecting)
        return 0;
    list_unlink(self, c);
    return 1;
}

void agpu_upstream_idle_event(agpu_upstream_t *self, agpu_upstream_conn_t *c, uint32_t events)
{
    if (!(events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
        return;
    char byte;
    ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    conn_close(self, c);
}

agpu_upstream_conn_t *agpu_upstream_next_resolved(agpu_upstream_t *self, int *state)
{
    if (self->resolving == 0)
        return NULL; /* the usual case */
    for (conn_t *c = self->connecting; c; c = c->next) {
        if (!c->resolving)
            continue;
        int found = agpu_resolver_lookup(self->resolver, c->host, c->port, &c->addrs,
                                         c->lookup_error, sizeof c->lookup_error);
        if (found == AGPU_RESOLVE_PENDING)
            continue;
        stop_resolving(self, c);
        if (found == AGPU_RESOLVE_DONE) {
            c->lookup_error[0] = '\0';
            c->connect_due_ms = agpu_clock_ms() + self->connect_timeout_ms;
            if (connect_next(self, c) && c->connecting)
                continue; /* its connect event comes from epoll */
        }
        list_unlink(self, c);
        *state = c->fd >= 0 ? 1 : -1;
        return c;
    }
    return NULL;
}

agpu_upstream_conn_t *agpu_upstream_expired(agpu_upstream_t *self)
{
    if (!self->connecting)
        return NULL; /* the usual case: no clock read */
    int64_t now = agpu_clock_ms();
    for (conn_t *c = self->connecting; c; c = c->next)
        if (c->connect_due_ms <= now)
            return c;
    return NULL;
}

long agpu_upstream_timeout_ms(agpu_upstream_t *self)
{
    if (!self->connecting)
        return -1;
    int64_t due = self->connecting->connect_due_ms;
    for (conn_t *c = self->connecting->next; c; c = c->next)
        if (c->connect_due_ms < due)
            due = c->connect_due_ms;
    int64_t left = due - agpu_clock_ms();
    return left > 0 ? (long)left : 0;
}

void agpu_upstream_close_idle(agpu_upstream_t *self)
{
    while (self->idle)
        conn_close(self, self->idle);
}
