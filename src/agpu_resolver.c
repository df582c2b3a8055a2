/* Host names resolved away from the event loops: a cache of names, and one thread that looks
 * up those asked for (getaddrinfo may wait seconds on a name server; a shard must not). */
#include "agpu_resolver.h"

#include "agpu_clock.h"
#include "agpu_log.h"
#include "agpu_text.h"

#include <netdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char host[256], port[8];
    bool queued;     /* the thread looks it up (again) next */
    bool resolved;   /* addrs holds a lookup's answer (perhaps an old one) */
    bool failed;     /* the last lookup failed */
    int64_t done_ms; /* when the last lookup ended */
    uint64_t used;   /* when it was last asked for (a count of lookups): the least recent
                      * makes room */
    agpu_addresses_t addrs;
    char reason[AGPU_RESOLVER_REASON_MAX];
} name_t;

typedef struct {
    void (*wake)(void *);
    void *arg;
} waiter_t;

struct agpu_resolver {
    agpu_resolver_options_t options;
    pthread_mutex_t lock;
    pthread_cond_t work;
    pthread_t thread;
    bool stop;
    name_t *names[AGPU_RESOLVER_MAX_NAMES];
    size_t name_count;
    uint64_t lookups;
    waiter_t waiters[AGPU_RESOLVER_MAX_WAITERS];
    size_t waiter_count;
};

static int resolve_with(const char *host, const char *port, int flags, agpu_addresses_t *out,
                        char *reason, size_t reason_size)
{
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = flags | AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int rc = getaddrinfo(host, port, &hints, &found);
    if (rc != 0) {
        snprintf(reason, reason_size, "cannot resolve %.100s: %s", host, gai_strerror(rc));
        return -1;
    }
    out->count = 0;
    for (struct addrinfo *a = found; a && out->count < AGPU_RESOLVER_MAX_ADDRS; a = a->ai_next) {
        if (a->ai_addrlen > sizeof out->items[0].addr)
            continue;
        memcpy(&out->items[out->count].addr, a->ai_addr, a->ai_addrlen);
        out->items[out->count++].len = a->ai_addrlen;
    }
    freeaddrinfo(found);
    if (out->count == 0) {
        snprintf(reason, reason_size, "cannot resolve %.100s: no address", host);
        return -1;
    }
    return 0;
}

static int resolve_blocking(const char *host, const char *port, agpu_addresses_t *out,
                            char *reason, size_t reason_size)
{
    return resolve_with(host, port, 0, out, reason, reason_size);
}

const agpu_resolver_options_t agpu_resolver_defaults = {resolve_blocking, AGPU_RESOLVER_FRESH_MS,
                                                         AGPU_RESOLVER_FAILED_MS};

int agpu_resolver_numeric(const char *host, const char *port, agpu_addresses_t *out,
                          char *reason, size_t reason_size)
{
    return resolve_with(host, port, AI_NUMERICHOST, out, reason, reason_size) == 0
               ? AGPU_RESOLVE_DONE
               : AGPU_RESOLVE_FAILED;
}

/* ---- the thread ---- */

static name_t *next_queued(agpu_resolver_t *self)
{
    for (size_t i = 0; i < self->name_count; i++)
        if (self->names[i]->queued)
            return self->names[i];
    return NULL;
}

static void *resolver_thread(void *arg)
{
    agpu_resolver_t *self = arg;
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        name_t *name = next_queued(self);
        if (!name) {
            pthread_cond_wait(&self->work, &self->lock);
            continue;
        }
        /* a queued name is never evicted: name stays valid while the lock is released */
        char host[sizeof name->host], port[sizeof name->port], reason[sizeof name->reason];
        memcpy(host, name->host, sizeof host);
        memcpy(port, name->port, sizeof port);
        agpu_addresses_t addrs;
        pthread_mutex_unlock(&self->lock);
        int rc = self->options.resolve(host, port, &addrs, reason, sizeof reason);
        pthread_mutex_lock(&self->lock);
        name->queued = false;
        name->done_ms = agpu_clock_ms();
        name->failed = rc != 0;
        if (rc == 0) {
            name->addrs = addrs;
            name->resolved = true;
        } else {
            agpu_text_copy(name->reason, sizeof name->reason, reason);
            if (name->resolved) /* the old addresses serve until a lookup succeeds */
                agpu_warn("%s (keeping its last known addresses)", reason);
        }
        for (size_t i = 0; i < self->waiter_count; i++)
            self->waiters[i].wake(self->waiters[i].arg);
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

/* ---- the cache ---- */

static name_t *find_name(agpu_resolver_t *self, const char *host, const char *port)
{
    for (size_t i = 0; i < self->name_count; i++)
        if (strcmp(self->names[i]->host, host) == 0 && strcmp(self->names[i]->port, port) == 0)
            return self->names[i];
    return NULL;
}

/* A new entry, queued; NULL when every entry is queued or memory is out. */
static name_t *add_name(agpu_resolver_t *self, const char *host, const char *port)
{
    size_t slot = self->name_count;
    if (slot == AGPU_RESOLVER_MAX_NAMES) {
        slot = SIZE_MAX;
        for (size_t i = 0; i < self->name_count; i++)
            if (!self->names[i]->queued &&
                (slot == SIZE_MAX || self->names[i]->used < self->names[slot]->used))
                slot = i;
        if (slot == SIZE_MAX)
            return NULL;
    }
    name_t *name = calloc(1, sizeof *name);
    if (!name)
        return NULL;
    agpu_text_copy(name->host, sizeof name->host, host);
    agpu_text_copy(name->port, sizeof name->port, port);
    if (slot == self->name_count)
        self->name_count++;
    else
        free(self->names[slot]); /* the least recently used makes room */
    self->names[slot] = name;
    return name;
}

static void queue_name(agpu_resolver_t *self, name_t *name)
{
    if (name->queued)
        return;
    name->queued = true;
    pthread_cond_signal(&self->work);
}

int agpu_resolver_lookup(agpu_resolver_t *self, const char *host, const char *port,
                         agpu_addresses_t *out, char *reason, size_t reason_size)
{
    char not_numeric[8];
    if (agpu_resolver_numeric(host, port, out, not_numeric, sizeof not_numeric) ==
        AGPU_RESOLVE_DONE)
        return AGPU_RESOLVE_DONE;
    if (strlen(host) >= sizeof((name_t *)0)->host || strlen(port) >= sizeof((name_t *)0)->port) {
        snprintf(reason, reason_size, "cannot resolve %.100s: name too long", host);
        return AGPU_RESOLVE_FAILED;
    }
    int64_t now = agpu_clock_ms();
    int result = AGPU_RESOLVE_PENDING;
    pthread_mutex_lock(&self->lock);
    name_t *name = find_name(self, host, port);
    if (!name && !(name = add_name(self, host, port))) {
        snprintf(reason, reason_size, "cannot resolve %.100s: too many names in lookup", host);
        result = AGPU_RESOLVE_FAILED;
    } else {
        name->used = ++self->lookups;
        bool stale = now - name->done_ms >= (name->failed && !name->resolved
                                                 ? self->options.failed_ms
                                                 : self->options.fresh_ms);
        if (!name->done_ms || stale)
            queue_name(self, name);
        if (name->resolved) {
            *out = name->addrs;
            result = AGPU_RESOLVE_DONE;
        } else if (name->failed && !name->queued) {
            agpu_text_copy(reason, reason_size, name->reason);
            result = AGPU_RESOLVE_FAILED;
        }
    }
    pthread_mutex_unlock(&self->lock);
    return result;
}

/* ---- lifecycle and waiters ---- */

agpu_resolver_t *agpu_resolver_new(const agpu_resolver_options_t *options)
{
    agpu_resolver_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->options = options ? *options : agpu_resolver_defaults;
    if (!self->options.resolve)
        self->options.resolve = resolve_blocking;
    pthread_mutex_init(&self->lock, NULL);
    pthread_cond_init(&self->work, NULL);
    if (pthread_create(&self->thread, NULL, resolver_thread, self) != 0) {
        pthread_cond_destroy(&self->work);
        pthread_mutex_destroy(&self->lock);
        free(self);
        return NULL;
    }
    return self;
}

void agpu_resolver_destroy(agpu_resolver_t **self_p)
{
    agpu_resolver_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->work);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    for (size_t i = 0; i < self->name_count; i++)
        free(self->names[i]);
    pthread_cond_destroy(&self->work);
    pthread_mutex_destroy(&self->lock);
    free(self);
}

bool agpu_resolver_subscribe(agpu_resolver_t *self, void (*wake)(void *), void *arg)
{
    pthread_mutex_lock(&self->lock);
    bool room = self->waiter_count < AGPU_RESOLVER_MAX_WAITERS;
    if (room)
        self->waiters[self->waiter_count++] = (waiter_t){wake, arg};
    pthread_mutex_unlock(&self->lock);
    return room;
}

void agpu_resolver_unsubscribe(agpu_resolver_t *self, void *arg)
{
    pthread_mutex_lock(&self->lock);
    for (size_t i = 0; i < self->waiter_count; i++)
        if (self->waiters[i].arg == arg)
            self->waiters[i--] = self->waiters[--self->waiter_count];
    pthread_mutex_unlock(&self->lock);
}
