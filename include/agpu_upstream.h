/* The forwarder's upstream connections, one pool per shard: sockets to HTTP/1.1 servers,
 * connected without blocking, registered once (edge-triggered) in the shard's epoll set for
 * their whole life, and kept idle per host:port for the next request. An idle socket stays
 * registered, so a server's close is seen and the socket closed. Single-threaded (the
 * shard's thread). */
#ifndef AGPU_UPSTREAM_H
#define AGPU_UPSTREAM_H

#include "agpu_h1.h"
#include "agpu_resolver.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agpu_upstream agpu_upstream_t;

/* One connection. The forwarder reads and writes the fields above the line; the pool owns
 * the rest. */
typedef struct agpu_upstream_conn {
    int fd;
    bool connecting;   /* its non-blocking connect (or its host name's lookup) has not completed */
    bool resolving;    /* its host name is being looked up: no socket yet */
    bool peer_closing; /* epoll saw the peer's FIN or an error: read to the end */
    bool reused;       /* it carried an answer before: a failure before any byte is retried */
    int connect_errno; /* why the last connect failed */
    void *user;        /* the request it carries; NULL when idle */
    char lookup_error[AGPU_RESOLVER_REASON_MAX]; /* why its host name did not resolve, if
                                                   * that is why it failed */
    agpu_h1_response_t *response;
    char *rest; /* bytes read but not parsed when the parser paused */
    size_t rest_len;
    /* ---- the pool's ---- */
    char key[sizeof((agpu_h1_url_t *)0)->authority]; /* host:port, as in the URL */
    char host[sizeof((agpu_h1_url_t *)0)->host], port[sizeof((agpu_h1_url_t *)0)->port];
    int64_t connect_due_ms; /* for the lookup, then for the connect */
    agpu_addresses_t addrs; /* while connecting: the addresses to try, addr_next first */
    size_t addr_next;
    int list;
    struct agpu_upstream_conn *prev, *next;
} agpu_upstream_conn_t;

/* A pool whose sockets are watched by epoll_fd, with the socket number as their epoll data;
 * each connection's response parser reports to sink; host names are looked up by resolver,
 * whose wake-ups must lead to agpu_upstream_next_resolved. NULL when out of memory. */
agpu_upstream_t *agpu_upstream_new(int epoll_fd, unsigned connect_timeout_ms,
                                   const agpu_h1_sink_t *sink, agpu_resolver_t *resolver);
/* Closes every connection, idle or not, and frees the pool. */
void agpu_upstream_destroy(agpu_upstream_t **self_p);

/* A connection to url's host and port: an idle one (unless fresh), else a new one, which may
 * still be connecting, or waiting on its host name's lookup (never done here: a name server
 * may take seconds). NULL with reason[] filled when none can be had. */
agpu_upstream_conn_t *agpu_upstream_get(agpu_upstream_t *self, const agpu_h1_url_t *url,
                                        bool fresh, char *reason, size_t reason_size);
/* The request on c is over: c goes back to the pool when keep (and nothing unparsed is left
 * in it), else it is closed and freed. The oldest idle connection goes past the cap. */
void agpu_upstream_release(agpu_upstream_t *self, agpu_upstream_conn_t *c, bool keep);

/* The connection whose socket is fd, or NULL (closed earlier in this batch of events). */
agpu_upstream_conn_t *agpu_upstream_find(agpu_upstream_t *self, int fd);

/* A connecting c had an event: 1 connected, 0 still connecting (to its next address),
 * -1 failed (c->connect_errno says why). */
int agpu_upstream_connect_event(agpu_upstream_t *self, agpu_upstream_conn_t *c);

/* An idle c had an event: the server closed it (or sent what nobody asked for), so it is
 * closed; anything else is ignored. */
void agpu_upstream_idle_event(agpu_upstream_t *self, agpu_upstream_conn_t *c, uint32_t events);

/* A connection that waited on a host name's lookup which has ended, or NULL; *state is
 * then what agpu_upstream_connect_event would say (-1: c->lookup_error, or connect_errno,
 * says why). Ask again until NULL. */
agpu_upstream_conn_t *agpu_upstream_next_resolved(agpu_upstream_t *self, int *state);

/* A connecting connection past its connect timeout (or lookup timeout: c->resolving), or
 * NULL. */
agpu_upstream_conn_t *agpu_upstream_expired(agpu_upstream_t *self);

/* Milliseconds until the first connect timeout; -1: nothing is connecting. */
long agpu_upstream_timeout_ms(agpu_upstream_t *self);

/* Closes every idle connection. */
void agpu_upstream_close_idle(agpu_upstream_t *self);

#endif
