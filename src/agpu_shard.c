/* A shard's thread: one epoll loop over the front door's epoll descriptor, the forwarder's
 * upstream sockets and a wake-up descriptor. Its loop, each turn:
 *   1. wait for a socket, a timer (libmicrohttpd's, a connect timeout, the waiting requests'), or
 *      the wake-up descriptor (the stop signal, the mesh queue saying a slot freed, or the
 *      resolver saying a host name's lookup ended);
 *   2. let the forwarder read and write the upstream sockets that are ready, then look after the
 *      requests that wait (in the mesh queue, for a peer's first byte) if they are due;
 *   3. let libmicrohttpd serve the clients that are ready or resumed (this may start
 *      exchanges);
 *   4. let the forwarder act on what the front door asked and wake the clients it answered;
 *      while it woke some, go back to 3 (a kept-alive upstream can answer at once).
 * A quiet shard (see quiet below) waits for its next client in libmicrohttpd's own epoll set
 * instead. */
#include "agpu_shard.h"

#include "agpu_clock.h"
#include "agpu_forward.h"
#include "agpu_log.h"
#include "agpu_wakeup.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define SHARD_TAG_HTTP (AGPU_FORWARD_TAG_LIMIT + 1)
#define SHARD_TAG_WAKE (AGPU_FORWARD_TAG_LIMIT + 2)
#define SHARD_EVENTS_PER_WAIT 128
/* Serve-forward rounds in one turn before looking at the sockets again (fairness). */
#define SHARD_ROUNDS_PER_TURN 4
/* After a stop, how long the shard keeps running to deliver the error answers. */
#define SHARD_STOP_FLUSH_MS 200
/* A shard with nothing under way waits for its next client inside libmicrohttpd's epoll set
 * (see quiet below) for this long after its last request began, in waits of at most
 * SHARD_QUIET_WAIT_MS: that wait does not see the wake-up descriptor, so this bounds how late
 * a stop is seen. */
#define SHARD_QUIET_WINDOW_MS 1000
#define SHARD_QUIET_WAIT_MS 50

struct agpu_shard {
    int epoll_fd, wake_fd;
    pthread_t thread;
    bool thread_started;
    atomic_bool stop;
    agpu_forward_t *forward;
    agpu_http_t *http;
    agpu_resolver_t *resolver;
    bool subscribed;
    uint64_t requests_seen; /* the front door's count of requests at active_ms */
    int64_t active_ms;
};

static long min_timeout(long a, long b)
{
    if (a < 0)
        return b;
    if (b < 0)
        return a;
    return a < b ? a : b;
}

/* One turn of the loop; returns after at most max_wait_ms (-1: until something happens). */
static void shard_turn(agpu_shard_t *self, long max_wait_ms)
{
    struct epoll_event events[SHARD_EVENTS_PER_WAIT];
    long timeout = min_timeout(agpu_http_timeout_ms(self->http),
                               agpu_forward_timeout_ms(self->forward));
    timeout = min_timeout(timeout, agpu_http_tend_timeout_ms(self->http));
    timeout = min_timeout(timeout, max_wait_ms);
    if (agpu_forward_busy(self->forward) || agpu_http_pending(self->http))
        timeout = 0;
    int n = epoll_wait(self->epoll_fd, events, SHARD_EVENTS_PER_WAIT,
                       timeout > 60000 ? 60000 : (int)timeout);
    /* no event: libmicrohttpd's timer may be the one that expired */
    bool clients_ready = n == 0 && agpu_http_timeout_ms(self->http) == 0;
    for (int i = 0; i < n; i++) {
        uint64_t tag = events[i].data.u64;
        if (tag == SHARD_TAG_HTTP) {
            clients_ready = true;
        } else if (tag == SHARD_TAG_WAKE) {
            agpu_wakeup_drain(self->wake_fd);
        } else if (tag < AGPU_FORWARD_TAG_LIMIT) {
            agpu_forward_socket_ready(self->forward, (int)tag, events[i].events);
        }
    }
    agpu_forward_run(self->forward); /* wake clients whose answers arrived */
    agpu_http_tend(self->http);      /* requests waiting for a slot or a peer */
    for (int round = 0; round < SHARD_ROUNDS_PER_TURN; round++) {
        if (!clients_ready && !agpu_http_pending(self->http))
            break;
        clients_ready = false;
        agpu_http_run(self->http);       /* serve clients, resumed ones included */
        agpu_forward_run(self->forward); /* start what they asked for; wake who got answers */
    }
}

/* Whether only a client can bring the shard work: no transfer runs, no request waits, and a
 * request began within SHARD_QUIET_WINDOW_MS (more may follow soon). The shard then waits
 * for the client where its request arrives, in libmicrohttpd's epoll set: one system call
 * before the request is read, where the loop's own wait (whose set holds that one) takes
 * two. Past the window the loop's wait serves, which sees everything and needs no timer. */
static bool quiet(agpu_shard_t *self)
{
    if (!agpu_forward_quiet(self->forward) || !agpu_http_quiet(self->http))
        return false;
    int64_t now = agpu_clock_ms();
    uint64_t requests = agpu_http_requests(self->http);
    if (requests != self->requests_seen) {
        self->requests_seen = requests;
        self->active_ms = now;
    }
    return now - self->active_ms < SHARD_QUIET_WINDOW_MS;
}

static void *shard_thread(void *arg)
{
    agpu_shard_t *self = arg;
    while (!atomic_load(&self->stop)) {
        if (!quiet(self)) {
            shard_turn(self, -1);
            continue;
        }
        /* what the wait leaves undone (a request sent upstream, a client to wake) makes the
         * shard busy, and the next turn does it; the rest (an idle upstream closing, a wake-up
         * for nobody) waits until the shard is */
        agpu_http_wait(self->http, SHARD_QUIET_WAIT_MS);
        agpu_forward_run(self->forward);
    }
    agpu_http_quiesce(self->http);
    agpu_forward_stop(self->forward); /* every exchange ends; their clients get the error */
    for (int i = 0; i < SHARD_STOP_FLUSH_MS / 10; i++)
        shard_turn(self, 10);
    return NULL;
}

/* Wakes the shard's loop, from any thread: the resolver's (a lookup ended, the forwarder may
 * go on), or the one that stops it. */
static void wake_shard(void *arg)
{
    agpu_shard_t *self = arg;
    agpu_wakeup_signal(self->wake_fd);
}

static int watch(int epoll_fd, int fd, uint64_t tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = tag};
    return epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd, &ev);
}

agpu_shard_t *agpu_shard_new(const agpu_http_options_t *options, int listen_fd,
                             unsigned connect_timeout_ms, agpu_resolver_t *resolver,
                             char *error, size_t error_size)
{
    agpu_shard_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    self->resolver = resolver;
    self->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (self->epoll_fd >= 0 && self->wake_fd >= 0 &&
        watch(self->epoll_fd, self->wake_fd, SHARD_TAG_WAKE) == 0 &&
        (self->subscribed = agpu_resolver_subscribe(resolver, wake_shard, self)))
        self->forward = agpu_forward_new(connect_timeout_ms, self->epoll_fd, resolver);
    if (!self->forward)
        snprintf(error, error_size, "cannot set up the event loop");
    else
        self->http = agpu_http_new(options, listen_fd, self->wake_fd, self->forward, error,
                                   error_size);
    if (self->http && watch(self->epoll_fd, agpu_http_epoll_fd(self->http), SHARD_TAG_HTTP) == 0 &&
        pthread_create(&self->thread, NULL, shard_thread, self) == 0) {
        self->thread_started = true;
        return self;
    }
    if (self->http)
        snprintf(error, error_size, "cannot start a shard thread");
    agpu_shard_destroy(&self);
    return NULL;
}

void agpu_shard_destroy(agpu_shard_t **self_p)
{
    agpu_shard_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    if (self->thread_started) {
        atomic_store(&self->stop, true);
        wake_shard(self);
        pthread_join(self->thread, NULL);
    }
    if (self->subscribed)
        agpu_resolver_unsubscribe(self->resolver, self);
    if (self->forward)
        agpu_forward_stop(self->forward);
    agpu_http_destroy(&self->http);
    agpu_forward_destroy(&self->forward);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    if (self->epoll_fd >= 0)
        close(self->epoll_fd);
    free(self);
}
