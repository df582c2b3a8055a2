/* mDNS discovery with Avahi: publish this node, browse and resolve _agpu._tcp, report peers. */
#include "agpu_discovery.h"

#include "agpu_log.h"
#include "agpu_text.h"

#include <avahi-client/client.h>
#include <avahi-client/lookup.h>
#include <avahi-client/publish.h>
#include <avahi-common/alternative.h>
#include <avahi-common/domain.h>
#include <avahi-common/error.h>
#include <avahi-common/malloc.h>
#include <avahi-common/thread-watch.h>
#include <avahi-common/timeval.h>

#include <assert.h>
#include <net/if.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/*
 * Threads. Everything Avahi runs on its threaded poll's thread, which holds the poll's lock
 * while it dispatches; agpu_discovery_update takes that lock. The client's state callback
 * only arms `timer` (freeing a client inside its own D-Bus dispatch is asking for trouble), and
 * sync() then brings our objects in line with the client's state. That one function is the
 * whole recovery story: no client -> create one (again later if D-Bus is down); client failed
 * -> drop everything, report every peer LOST, create a new client; connected -> browse;
 * running -> publish.
 */

/* The most instance names tried when each is taken ("agpu on x #2", "#3"...). */
#define AGPU_DISCOVERY_MAX_RENAMES 32

/* What a peer publishes, parsed and checked; also what this node publishes. */
typedef struct {
    char id[AGPU_MSG_ID_MAX + 1];
    char name[AGPU_NAME_MAX];
    char address[AGPU_DISCOVERY_ADDRESS_MAX];
    uint16_t http_port;
    uint16_t gossip_port;
    unsigned proto;
} agpu_discovery_info_t;

/* One service the browser reported: a node as seen on one interface over one IP version. */
typedef struct agpu_discovery_service {
    struct agpu_discovery_service *next;
    struct agpu_discovery_t *owner;
    AvahiIfIndex interface;
    AvahiProtocol protocol;
    char *name; /* instance name */
    char *domain;
    AvahiServiceResolver *resolver;
    bool resolved; /* info holds a valid peer's details */
    agpu_discovery_info_t info;
} agpu_discovery_service_t;

/* One peer reported FOUND, with the details reported. */
typedef struct agpu_discovery_peer {
    struct agpu_discovery_peer *next;
    agpu_discovery_info_t info;
} agpu_discovery_peer_t;

struct agpu_discovery_t {
    AvahiThreadedPoll *poll;
    const AvahiPoll *api;
    AvahiClient *client;
    AvahiEntryGroup *group;
    AvahiServiceBrowser *browser;
    AvahiTimeout *timer; /* runs sync() */
    struct timeval due;  /* when timer fires, if armed */
    bool armed;
    unsigned retry_ms; /* next delay before reconnecting without a bus */
    bool up;           /* mDNS works: client running */
    bool down_logged;  /* this outage has been logged */
    bool started;      /* the poll thread runs */
    bool published;    /* our service is in the group (committed) */
    bool txt_dirty;    /* update() changed what the TXT record says */
    bool reregister;   /* update() changed the name or port: add the service again */
    agpu_discovery_fn *on_event;
    void *arg;
    agpu_discovery_info_t me;
    char service_name[AVAHI_LABEL_MAX]; /* our instance name, after renames */
    unsigned renames;
    agpu_discovery_service_t *services;
    size_t service_count;
    agpu_discovery_peer_t *peers;
};

/* ---- the timer that runs sync() ---- */

static void agpu_discovery_schedule(agpu_discovery_t *self, unsigned ms)
{
    struct timeval when;
    avahi_elapse_time(&when, ms, 0);
    if (self->armed && avahi_timeval_compare(&self->due, &when) <= 0)
        return;
    self->due = when;
    self->armed = true;
    self->api->timeout_update(self->timer, &when);
}

/* ---- checking and parsing what peers publish ---- */

static bool agpu_discovery_valid_id(const char *s, size_t len)
{
    if (len == 0 || len > AGPU_MSG_ID_MAX)
        return false;
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x21 || s[i] > 0x7e)
            return false;
    return true;
}

/* UTF-8 without control characters (C0, DEL, C1), overlong forms, surrogates or code points
 * past U+10FFFF: a name the rest of agpu can log and put in JSON as it is. */
static bool agpu_discovery_valid_name(const char *str, size_t len)
{
    return len < AGPU_NAME_MAX && agpu_text_clean(str, len, AGPU_TEXT_NO_C1);
}

/* The value of TXT key `key`: 1 and value/len if present, 0 if absent. */
static int agpu_discovery_txt(AvahiStringList *txt, const char *key, const char **value,
                              size_t *len)
{
    AvahiStringList *item = avahi_string_list_find(txt, key);
    size_t klen = strlen(key);
    if (!item)
        return 0;
    /* "key" alone (no '=') is a boolean attribute: an empty value here */
    *value = item->size > klen ? (const char *)item->text + klen + 1 : "";
    *len = item->size > klen ? item->size - klen - 1 : 0;
    return 1;
}

/* The decimal value (no sign, no spaces, at most 9 digits, at most max) of TXT key `key`. */
static bool agpu_discovery_txt_uint(AvahiStringList *txt, const char *key, unsigned long max,
                                    unsigned long *out)
{
    const char *v;
    size_t len;
    unsigned long n = 0;
    if (!agpu_discovery_txt(txt, key, &v, &len) || len == 0 || len > 9)
        return false;
    for (size_t i = 0; i < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return false;
        n = n * 10 + (unsigned long)(v[i] - '0');
    }
    *out = n;
    return n <= max;
}

/* Fills out from a resolved service, or returns why it is not an agpu node's. */
static const char *agpu_discovery_parse(AvahiStringList *txt, uint16_t srv_port,
                                        agpu_discovery_info_t *out)
{
    const char *v;
    size_t len;
    unsigned long http = srv_port, gossip, proto;
    memset(out, 0, sizeof *out);
    if (!agpu_discovery_txt(txt, "id", &v, &len) || !agpu_discovery_valid_id(v, len))
        return "no valid id";
    memcpy(out->id, v, len);
    if (agpu_discovery_txt(txt, "name", &v, &len)) {
        if (!agpu_discovery_valid_name(v, len))
            return "bad name";
        memcpy(out->name, v, len);
    }
    if (avahi_string_list_find(txt, "http") && !agpu_discovery_txt_uint(txt, "http", 65535, &http))
        return "bad http port";
    if (!agpu_discovery_txt_uint(txt, "gossip", 65535, &gossip) || gossip == 0)
        return "no valid gossip port";
    if (!agpu_discovery_txt_uint(txt, "proto", 999999999UL, &proto))
        return "no valid proto";
    if (http == 0)
        return "port 0";
    out->http_port = (uint16_t)http;
    out->gossip_port = (uint16_t)gossip;
    out->proto = (unsigned)proto;
    return NULL;
}

/* Numeric form; a link-local IPv6 address gets its interface ("fe80::1%eth0") to be usable. */
static void agpu_discovery_format_address(const AvahiAddress *a, AvahiIfIndex interface, char *out,
                                          size_t size)
{
    char text[AVAHI_ADDRESS_STR_MAX], ifname[IF_NAMESIZE];
    avahi_address_snprint(text, sizeof text, a);
    if (a->proto == AVAHI_PROTO_INET6 && a->data.ipv6.address[0] == 0xfe &&
        (a->data.ipv6.address[1] & 0xc0) == 0x80 && interface > 0 &&
        if_indextoname((unsigned)interface, ifname))
        snprintf(out, size, "%s%%%s", text, ifname);
    else
        agpu_text_copy(out, size, text);
}

/* ---- the peers reported to the caller ---- */

static bool agpu_discovery_info_equal(const agpu_discovery_info_t *a,
                                      const agpu_discovery_info_t *b)
{
    return strcmp(a->id, b->id) == 0 && strcmp(a->name, b->name) == 0 &&
           strcmp(a->address, b->address) == 0 && a->http_port == b->http_port &&
           a->gossip_port == b->gossip_port && a->proto == b->proto;
}

static void agpu_discovery_emit(agpu_discovery_t *self, agpu_discovery_kind_t kind,
                                const agpu_discovery_info_t *info)
{
    agpu_discovery_event_t event = {.kind = kind,
                                    .id = info->id,
                                    .name = info->name,
                                    .address = info->address,
                                    .http_port = info->http_port,
                                    .gossip_port = info->gossip_port,
                                    .proto = info->proto};
    agpu_debug("%s peer %s \"%s\" at %s (http %u, gossip %u, proto %u)",
               kind == AGPU_DISCOVERY_FOUND ? "found" : "lost", info->id, info->name, info->address,
               info->http_port, info->gossip_port, info->proto);
    self->on_event(&event, self->arg);
}

/* Brings what the caller knows of `id` in line with the services seen: the best resolved one
 * (IPv4 first, then the first seen) is the peer; none left means LOST. */
static void agpu_discovery_reconcile(agpu_discovery_t *self, const char *id)
{
    agpu_discovery_service_t *best = NULL;
    for (agpu_discovery_service_t *s = self->services; s; s = s->next) {
        if (!s->resolved || strcmp(s->info.id, id) != 0)
            continue;
        if (!best || (s->protocol == AVAHI_PROTO_INET && best->protocol != AVAHI_PROTO_INET))
            best = s;
    }
    agpu_discovery_peer_t **pp = &self->peers;
    while (*pp && strcmp((*pp)->info.id, id) != 0)
        pp = &(*pp)->next;
    agpu_discovery_peer_t *peer = *pp;
    if (!best) {
        if (peer) {
            *pp = peer->next;
            agpu_discovery_emit(self, AGPU_DISCOVERY_LOST, &peer->info);
            free(peer);
        }
        return;
    }
    if (peer && agpu_discovery_info_equal(&peer->info, &best->info))
        return;
    if (!peer) {
        if (!(peer = calloc(1, sizeof *peer))) {
            agpu_warn("out of memory: peer %s not reported", id);
            return;
        }
        peer->next = self->peers;
        self->peers = peer;
    }
    peer->info = best->info;
    agpu_discovery_emit(self, AGPU_DISCOVERY_FOUND, &peer->info);
}

/* ---- services seen by the browser ---- */

static void agpu_discovery_on_resolve(AvahiServiceResolver *r, AvahiIfIndex interface,
                                      AvahiProtocol protocol, AvahiResolverEvent event,
                                      const char *name, const char *type, const char *domain,
                                      const char *host, const AvahiAddress *address, uint16_t port,
                                      AvahiStringList *txt, AvahiLookupResultFlags flags,
                                      void *userdata)
{
    (void)protocol, (void)type, (void)domain, (void)flags;
    agpu_discovery_service_t *s = userdata;
    agpu_discovery_t *self = s->owner;
    bool was_resolved = s->resolved;
    char old_id[sizeof s->info.id];
    memcpy(old_id, s->info.id, sizeof old_id);
    s->resolved = false;
    if (event == AVAHI_RESOLVER_FOUND && address) {
        agpu_discovery_info_t info;
        const char *why = agpu_discovery_parse(txt, port, &info);
        if (why) {
            agpu_debug("ignoring service \"%s\" on %s: %s", name, host ? host : "?", why);
        } else if (strcmp(info.id, self->me.id) != 0) { /* our own (or a clone's): not a peer */
            agpu_discovery_format_address(address, interface, info.address, sizeof info.address);
            s->info = info;
            s->resolved = true;
        }
    } else if (event == AVAHI_RESOLVER_FAILURE) {
        /* Its records expired (the host crashed or is cut off) or never came. Not final: the
         * resolver keeps asking and reports FOUND if they come, though ever more rarely (Avahi
         * doubles the interval up to an hour), so a healed partition is the mesh's to see. */
        agpu_debug("cannot resolve service \"%s\": %s", name,
                   avahi_strerror(avahi_client_errno(avahi_service_resolver_get_client(r))));
    }
    if (was_resolved && (!s->resolved || strcmp(old_id, s->info.id) != 0))
        agpu_discovery_reconcile(self, old_id);
    if (s->resolved)
        agpu_discovery_reconcile(self, s->info.id);
}

static agpu_discovery_service_t **agpu_discovery_find(agpu_discovery_t *self,
                                                      AvahiIfIndex interface,
                                                      AvahiProtocol protocol, const char *name,
                                                      const char *domain)
{
    agpu_discovery_service_t **sp = &self->services;
    for (; *sp; sp = &(*sp)->next)
        if ((*sp)->interface == interface && (*sp)->protocol == protocol &&
            strcmp((*sp)->name, name) == 0 && strcmp((*sp)->domain, domain) == 0)
            break;
    return sp;
}

static void agpu_discovery_service_free(agpu_discovery_service_t *s)
{
    if (s->resolver)
        avahi_service_resolver_free(s->resolver);
    avahi_free(s->name);
    avahi_free(s->domain);
    free(s);
}

static void agpu_discovery_add_service(agpu_discovery_t *self, AvahiIfIndex interface,
                                       AvahiProtocol protocol, const char *name, const char *domain)
{
    if (*agpu_discovery_find(self, interface, protocol, name, domain))
        return;
    if (self->service_count >= AGPU_DISCOVERY_MAX_SERVICES) {
        agpu_debug("ignoring service \"%s\": %d services tracked already", name,
                   AGPU_DISCOVERY_MAX_SERVICES);
        return;
    }
    agpu_discovery_service_t *s = calloc(1, sizeof *s);
    if (!s || !(s->name = avahi_strdup(name)) || !(s->domain = avahi_strdup(domain))) {
        agpu_warn("out of memory: service \"%s\" ignored", name);
        if (s)
            agpu_discovery_service_free(s);
        return;
    }
    s->owner = self;
    s->interface = interface;
    s->protocol = protocol;
    /* Kept for the service's life: Avahi reports each change of its records with FOUND. */
    s->resolver = avahi_service_resolver_new(self->client, interface, protocol, name,
                                             AGPU_DISCOVERY_SERVICE_TYPE, domain, protocol, 0,
                                             agpu_discovery_on_resolve, s);
    if (!s->resolver) {
        agpu_debug("cannot resolve service \"%s\": %s", name,
                   avahi_strerror(avahi_client_errno(self->client)));
        agpu_discovery_service_free(s);
        return;
    }
    agpu_discovery_service_t **end = &self->services;
    while (*end)
        end = &(*end)->next;
    *end = s;
    self->service_count++;
}

static void agpu_discovery_remove_service(agpu_discovery_t *self, AvahiIfIndex interface,
                                          AvahiProtocol protocol, const char *name,
                                          const char *domain)
{
    agpu_discovery_service_t **sp = agpu_discovery_find(self, interface, protocol, name, domain);
    agpu_discovery_service_t *s = *sp;
    if (!s)
        return;
    *sp = s->next;
    self->service_count--;
    if (s->resolved)
        agpu_discovery_reconcile(self, s->info.id);
    agpu_discovery_service_free(s);
}

/* Drops every service, reporting LOST for each peer when `report`. */
static void agpu_discovery_forget(agpu_discovery_t *self, bool report)
{
    while (self->services) {
        agpu_discovery_service_t *s = self->services;
        self->services = s->next;
        agpu_discovery_service_free(s);
    }
    self->service_count = 0;
    while (self->peers) {
        agpu_discovery_peer_t *p = self->peers;
        self->peers = p->next;
        if (report)
            agpu_discovery_emit(self, AGPU_DISCOVERY_LOST, &p->info);
        free(p);
    }
}

static void agpu_discovery_on_browse(AvahiServiceBrowser *b, AvahiIfIndex interface,
                                     AvahiProtocol protocol, AvahiBrowserEvent event,
                                     const char *name, const char *type, const char *domain,
                                     AvahiLookupResultFlags flags, void *userdata)
{
    agpu_discovery_t *self = userdata;
    (void)type, (void)flags;
    switch (event) {
    case AVAHI_BROWSER_NEW:
        agpu_discovery_add_service(self, interface, protocol, name, domain);
        break;
    case AVAHI_BROWSER_REMOVE:
        agpu_discovery_remove_service(self, interface, protocol, name, domain);
        break;
    case AVAHI_BROWSER_FAILURE:
        agpu_warn("mDNS browsing failed: %s; retrying",
                  avahi_strerror(avahi_client_errno(avahi_service_browser_get_client(b))));
        agpu_discovery_forget(self, true);
        avahi_service_browser_free(self->browser);
        self->browser = NULL;
        agpu_discovery_schedule(self, AGPU_DISCOVERY_RETRY_MIN_MS);
        break;
    case AVAHI_BROWSER_ALL_FOR_NOW:
    case AVAHI_BROWSER_CACHE_EXHAUSTED:
        break;
    }
}

/* ---- publishing ---- */

/* "agpu on NAME", the name cut at a character boundary to fit one DNS label. */
static void agpu_discovery_base_name(agpu_discovery_t *self)
{
    const char *name = self->me.name[0] ? self->me.name : self->me.id;
    size_t len = strlen(name), max = sizeof self->service_name - 1 - strlen("agpu on ");
    while (len > max || (len > 0 && (name[len] & 0xc0) == 0x80))
        len--;
    snprintf(self->service_name, sizeof self->service_name, "agpu on %.*s", (int)len, name);
    self->renames = 0;
}

static bool agpu_discovery_rename(agpu_discovery_t *self)
{
    char *next = avahi_alternative_service_name(self->service_name);
    if (!next || ++self->renames > AGPU_DISCOVERY_MAX_RENAMES) {
        agpu_warn("mDNS: no free service name after \"%s\"; not publishing", self->service_name);
        avahi_free(next);
        return false;
    }
    agpu_info("mDNS: service name \"%s\" is taken, trying \"%s\"", self->service_name, next);
    agpu_text_copy(self->service_name, sizeof self->service_name, next);
    avahi_free(next);
    return true;
}

typedef struct {
    char id[sizeof "id=" + AGPU_MSG_ID_MAX];
    char name[sizeof "name=" + AGPU_NAME_MAX];
    char http[sizeof "http=65535"];
    char gossip[sizeof "gossip=65535"];
    char proto[sizeof "proto=4294967295"];
} agpu_discovery_txt_t;

static agpu_discovery_txt_t agpu_discovery_make_txt(const agpu_discovery_info_t *me)
{
    agpu_discovery_txt_t t;
    snprintf(t.id, sizeof t.id, "id=%s", me->id);
    snprintf(t.name, sizeof t.name, "name=%s", me->name);
    snprintf(t.http, sizeof t.http, "http=%u", me->http_port);
    snprintf(t.gossip, sizeof t.gossip, "gossip=%u", me->gossip_port);
    snprintf(t.proto, sizeof t.proto, "proto=%u", me->proto);
    return t;
}

static void agpu_discovery_reset_group(agpu_discovery_t *self)
{
    if (self->group)
        avahi_entry_group_reset(self->group);
    self->published = false;
}

static void agpu_discovery_on_group(AvahiEntryGroup *g, AvahiEntryGroupState state, void *userdata)
{
    agpu_discovery_t *self = userdata;
    if (g != self->group)
        return;
    switch (state) {
    case AVAHI_ENTRY_GROUP_ESTABLISHED:
        agpu_info("mDNS: published \"%s\" (%s) on port %u", self->service_name,
                  AGPU_DISCOVERY_SERVICE_TYPE, self->me.http_port);
        break;
    case AVAHI_ENTRY_GROUP_COLLISION: /* another host took the name: the next one, at once */
        agpu_discovery_reset_group(self);
        if (agpu_discovery_rename(self))
            agpu_discovery_schedule(self, 0);
        break;
    case AVAHI_ENTRY_GROUP_FAILURE:
        agpu_warn("mDNS: publishing \"%s\" failed: %s; retrying", self->service_name,
                  avahi_strerror(avahi_client_errno(avahi_entry_group_get_client(g))));
        agpu_discovery_reset_group(self);
        agpu_discovery_schedule(self, AGPU_DISCOVERY_RETRY_MAX_MS);
        break;
    case AVAHI_ENTRY_GROUP_UNCOMMITED:
    case AVAHI_ENTRY_GROUP_REGISTERING:
        break;
    }
}

/* Registers our service, or brings the registered one up to date. */
static void agpu_discovery_publish(agpu_discovery_t *self)
{
    if (self->reregister)
        agpu_discovery_reset_group(self);
    self->reregister = false;
    if (self->published && !self->txt_dirty)
        return;
    agpu_discovery_txt_t t = agpu_discovery_make_txt(&self->me);
    if (self->published) {
        self->txt_dirty = false;
        if (avahi_entry_group_update_service_txt(self->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                 0, self->service_name, AGPU_DISCOVERY_SERVICE_TYPE,
                                                 NULL, t.id, t.name, t.http, t.gossip, t.proto,
                                                 NULL) >= 0)
            return;
        agpu_discovery_reset_group(self); /* then register it anew */
    }
    self->txt_dirty = false;
    if (self->renames > AGPU_DISCOVERY_MAX_RENAMES)
        return;
    if (!self->group &&
        !(self->group = avahi_entry_group_new(self->client, agpu_discovery_on_group, self))) {
        agpu_warn("mDNS: cannot create an entry group: %s; retrying",
                  avahi_strerror(avahi_client_errno(self->client)));
        agpu_discovery_schedule(self, AGPU_DISCOVERY_RETRY_MAX_MS);
        return;
    }
    int rc;
    while ((rc = avahi_entry_group_add_service(self->group, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC, 0,
                                               self->service_name, AGPU_DISCOVERY_SERVICE_TYPE,
                                               NULL, NULL, self->me.http_port, t.id, t.name, t.http,
                                               t.gossip, t.proto, NULL)) == AVAHI_ERR_COLLISION) {
        /* taken by another service on this host: the next name */
        if (!agpu_discovery_rename(self))
            return;
    }
    if (rc >= 0)
        rc = avahi_entry_group_commit(self->group);
    if (rc < 0) {
        agpu_warn("mDNS: cannot publish \"%s\": %s; retrying", self->service_name,
                  avahi_strerror(rc));
        agpu_discovery_reset_group(self);
        agpu_discovery_schedule(self, AGPU_DISCOVERY_RETRY_MAX_MS);
        return;
    }
    self->published = true;
}

/* ---- the client and its recovery ---- */

static void agpu_discovery_on_client(AvahiClient *c, AvahiClientState state, void *userdata)
{
    agpu_discovery_t *self = userdata;
    (void)c;
    (void)state;
    agpu_discovery_schedule(self, 0);
}

/* Everything tied to the client, the client too. Freeing the client first closes its D-Bus
 * connection, so its browser, group and resolvers go without a call to the daemon each. */
static void agpu_discovery_drop_client(agpu_discovery_t *self, bool report)
{
    if (self->client)
        avahi_client_free(self->client);
    self->client = NULL;
    self->browser = NULL;
    self->group = NULL;
    self->published = false;
    agpu_discovery_base_name(self); /* names taken on the old daemon may be free on the new */
    for (agpu_discovery_service_t *s = self->services; s; s = s->next)
        s->resolver = NULL;
    agpu_discovery_forget(self, report);
}

static void agpu_discovery_log_down(agpu_discovery_t *self, const char *why)
{
    if (self->up)
        agpu_warn("mDNS lost: %s; re-publishing when it is back", why);
    else if (!self->down_logged)
        agpu_warn("mDNS unavailable: %s; carrying on without it, will start when it appears", why);
    else
        agpu_debug("mDNS still unavailable: %s", why);
    self->up = false;
    self->down_logged = true;
}

static void agpu_discovery_connect(agpu_discovery_t *self)
{
    int error = 0;
    /* NO_FAIL: without avahi-daemon the client waits on the bus for it instead of failing. */
    self->client =
        avahi_client_new(self->api, AVAHI_CLIENT_NO_FAIL, agpu_discovery_on_client, self, &error);
    if (!self->client) {
        agpu_discovery_log_down(self, avahi_strerror(error));
        agpu_discovery_schedule(self, self->retry_ms);
        self->retry_ms = self->retry_ms * 2 > AGPU_DISCOVERY_RETRY_MAX_MS
                             ? AGPU_DISCOVERY_RETRY_MAX_MS
                             : self->retry_ms * 2;
        return;
    }
    self->retry_ms = AGPU_DISCOVERY_RETRY_MIN_MS;
    agpu_discovery_schedule(self, 0); /* act on the state it reached */
}

static void agpu_discovery_sync(AvahiTimeout *timer, void *userdata)
{
    agpu_discovery_t *self = userdata;
    (void)timer;
    self->armed = false;
    if (!self->client) {
        agpu_discovery_connect(self);
        return;
    }
    switch (avahi_client_get_state(self->client)) {
    case AVAHI_CLIENT_FAILURE:
        agpu_discovery_log_down(self, avahi_strerror(avahi_client_errno(self->client)));
        agpu_discovery_drop_client(self, true);
        agpu_discovery_connect(self);
        return;
    case AVAHI_CLIENT_CONNECTING:
        agpu_discovery_log_down(self, "avahi-daemon is not running");
        return;
    case AVAHI_CLIENT_S_REGISTERING: /* the daemon is (re)naming its host: publish after */
    case AVAHI_CLIENT_S_COLLISION:
        agpu_discovery_reset_group(self);
        break;
    case AVAHI_CLIENT_S_RUNNING:
        if (!self->up)
            agpu_info("mDNS on: browsing %s, publishing this node as \"%s\"",
                      AGPU_DISCOVERY_SERVICE_TYPE, self->service_name);
        self->up = true;
        self->down_logged = false;
        agpu_discovery_publish(self);
        break;
    }
    if (!self->browser) {
        self->browser = avahi_service_browser_new(self->client, AVAHI_IF_UNSPEC, AVAHI_PROTO_UNSPEC,
                                                  AGPU_DISCOVERY_SERVICE_TYPE, NULL, 0,
                                                  agpu_discovery_on_browse, self);
        if (!self->browser) {
            agpu_warn("mDNS: cannot browse: %s; retrying",
                      avahi_strerror(avahi_client_errno(self->client)));
            agpu_discovery_schedule(self, AGPU_DISCOVERY_RETRY_MAX_MS);
        }
    }
}

/* ---- the API ---- */

static int agpu_discovery_set_me(agpu_discovery_info_t *me, const agpu_discovery_self_t *info)
{
    const char *name = info->name ? info->name : "";
    size_t id_len = info->id ? strlen(info->id) : 0, name_len = strlen(name);
    if (!agpu_discovery_valid_id(info->id, id_len) || !agpu_discovery_valid_name(name, name_len) ||
        info->http_port == 0 || info->gossip_port == 0) {
        agpu_error("cannot publish this node: its id takes 1 to %d printable characters without "
                   "spaces, its name UTF-8 under %d bytes without control characters, its HTTP "
                   "and gossip ports 1 to 65535",
                   AGPU_MSG_ID_MAX, AGPU_NAME_MAX);
        return -1;
    }
    memset(me, 0, sizeof *me);
    memcpy(me->id, info->id, id_len);
    memcpy(me->name, name, name_len);
    me->http_port = info->http_port;
    me->gossip_port = info->gossip_port;
    me->proto = info->proto;
    return 0;
}

agpu_discovery_t *agpu_discovery_new(const agpu_discovery_self_t *info, agpu_discovery_fn *on_event,
                                     void *arg)
{
    assert(info);
    assert(on_event);
    agpu_discovery_t *self = calloc(1, sizeof *self);
    if (!self) {
        agpu_error("out of memory");
        return NULL;
    }
    self->on_event = on_event;
    self->arg = arg;
    self->retry_ms = AGPU_DISCOVERY_RETRY_MIN_MS;
    if (agpu_discovery_set_me(&self->me, info) < 0)
        goto fail;
    agpu_discovery_base_name(self);
    /* The first sync() creates the client on the poll thread: new() never waits on D-Bus. */
    struct timeval now;
    avahi_elapse_time(&now, 0, 0);
    self->due = now;
    self->armed = true;
    if (!(self->poll = avahi_threaded_poll_new()) ||
        !(self->api = avahi_threaded_poll_get(self->poll)) ||
        !(self->timer = self->api->timeout_new(self->api, &now, agpu_discovery_sync, self)) ||
        avahi_threaded_poll_start(self->poll) < 0) {
        agpu_error("cannot start the mDNS thread");
        goto fail;
    }
    self->started = true;
    return self;
fail:
    agpu_discovery_destroy(&self);
    return NULL;
}

int agpu_discovery_update(agpu_discovery_t *self, const agpu_discovery_self_t *info)
{
    assert(self);
    assert(info);
    agpu_discovery_info_t me;
    if (agpu_discovery_set_me(&me, info) < 0)
        return -1;
    if (strcmp(me.id, self->me.id) != 0) {
        agpu_error("the node id cannot change (%s to %s)", self->me.id, me.id);
        return -1;
    }
    /* Only records the change: the poll thread applies it, so this never waits on D-Bus. */
    avahi_threaded_poll_lock(self->poll);
    bool rename = strcmp(me.name, self->me.name) != 0;
    if (rename || me.http_port != self->me.http_port)
        self->reregister = true;
    else if (me.gossip_port != self->me.gossip_port || me.proto != self->me.proto)
        self->txt_dirty = true;
    self->me = me;
    if (rename)
        agpu_discovery_base_name(self);
    agpu_discovery_schedule(self, 0);
    avahi_threaded_poll_unlock(self->poll);
    return 0;
}

void agpu_discovery_destroy(agpu_discovery_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    agpu_discovery_t *self = *self_p;
    if (self->started)
        avahi_threaded_poll_stop(self->poll);
    /* The thread is gone: no callback can run any more, nothing needs the lock. Freeing the
     * client closes its D-Bus connection, and avahi-daemon withdraws our service then. */
    agpu_discovery_drop_client(self, false);
    if (self->timer)
        self->api->timeout_free(self->timer);
    if (self->poll)
        avahi_threaded_poll_free(self->poll);
    free(self);
    *self_p = NULL;
}
