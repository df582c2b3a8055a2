/* Host names resolved away from the event loops. A shard must never wait on a name server:
 * an IP literal is read at once, and a name is looked up by the resolver's own thread, which
 * caches its addresses and wakes the shards that wait when a lookup ends. One per process,
 * shared by every shard. */
#ifndef AGPU_RESOLVER_H
#define AGPU_RESOLVER_H

#include "agpu_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* Room for a lookup's failure message (the host name in it is cut at 100 bytes). */
#define AGPU_RESOLVER_REASON_MAX 192

typedef struct {
    struct sockaddr_storage addr;
    socklen_t len;
} agpu_address_t;

typedef struct {
    agpu_address_t items[AGPU_RESOLVER_MAX_ADDRS];
    size_t count;
} agpu_addresses_t;

/* How a name becomes addresses, blocking (getaddrinfo by default; tests give their own).
 * Returns 0, or -1 with reason[] filled. */
typedef int (*agpu_resolve_fn)(const char *host, const char *port, agpu_addresses_t *out,
                               char *reason, size_t reason_size);

typedef struct {
    agpu_resolve_fn resolve; /* NULL: getaddrinfo */
    int64_t fresh_ms;        /* a name's addresses are looked up again after this long */
    int64_t failed_ms;       /* a name that did not resolve is not asked again for this long */
} agpu_resolver_options_t;

/* getaddrinfo, AGPU_RESOLVER_FRESH_MS and AGPU_RESOLVER_FAILED_MS. */
extern const agpu_resolver_options_t agpu_resolver_defaults;

typedef struct agpu_resolver agpu_resolver_t;

/* Starts the resolver's thread; NULL when it cannot. */
agpu_resolver_t *agpu_resolver_new(const agpu_resolver_options_t *options);
/* Stops and joins the thread (after the lookup it may be in), frees everything. */
void agpu_resolver_destroy(agpu_resolver_t **self_p);

/* wake(arg) is called, from the resolver's thread, whenever a lookup ends. False when
 * AGPU_RESOLVER_MAX_WAITERS wait already. */
bool agpu_resolver_subscribe(agpu_resolver_t *self, void (*wake)(void *), void *arg);
/* After this returns, wake(arg) is not called again. */
void agpu_resolver_unsubscribe(agpu_resolver_t *self, void *arg);

enum { AGPU_RESOLVE_FAILED = -1, AGPU_RESOLVE_PENDING = 0, AGPU_RESOLVE_DONE = 1 };

/* host:port's addresses, without blocking (port is numeric). DONE: *out is filled (an IP
 * literal is read at once; a name comes from the cache, and a stale one is looked up again
 * in the background meanwhile). PENDING: the name is being looked up; ask again once woken.
 * FAILED: reason[] says why (remembered for failed_ms). */
int agpu_resolver_lookup(agpu_resolver_t *self, const char *host, const char *port,
                         agpu_addresses_t *out, char *reason, size_t reason_size);

/* The numeric reading alone: DONE for an IP literal, else FAILED. Never blocks. */
int agpu_resolver_numeric(const char *host, const char *port, agpu_addresses_t *out,
                          char *reason, size_t reason_size);

#endif
