/* A shard: one thread whose epoll loop runs a front door and a forwarder side by side, so a
 * request is read, forwarded and answered without changing thread. `agpu serve` starts one
 * per CPU, all accepting from the same listening socket. */
#ifndef AGPU_SHARD_H
#define AGPU_SHARD_H

#include "agpu_http.h"
#include "agpu_resolver.h"

typedef struct agpu_shard agpu_shard_t;

/* Starts the thread. Host names of upstreams are looked up by resolver (which must outlive
 * the shard). On failure returns NULL with the reason in error. Caller owns it. */
agpu_shard_t *agpu_shard_new(const agpu_http_options_t *options, int listen_fd,
                             unsigned connect_timeout_ms, agpu_resolver_t *resolver,
                             char *error, size_t error_size);

/* Stops taking requests, ends those under way (with an error to their clients), closes every
 * connection and joins the thread. */
void agpu_shard_destroy(agpu_shard_t **self_p);

#endif
