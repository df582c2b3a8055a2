/* mDNS discovery: publish this node as _agpu._tcp and report the agpu peers on the LAN. */
#ifndef AGPU_DISCOVERY_H
#define AGPU_DISCOVERY_H

#include "agpu_limits.h"

#include <stdint.h>

/*
 * What goes on the wire. One service per node, type _agpu._tcp, instance name "agpu on NAME"
 * (made unique with " #2", " #3"... when two nodes share a name), port = the HTTP front door,
 * and these TXT records:
 *   id=ID        the node id: 1..AGPU_MSG_ID_MAX printable ASCII characters, no spaces
 *   name=NAME    the node name: UTF-8, no control characters, under AGPU_NAME_MAX bytes
 *   http=PORT    the HTTP port (the SRV port says the same; a reader takes this one if present)
 *   gossip=PORT  the gossip PUB port, on the same address
 *   proto=N      the gossip protocol version (AGPU_MSG_VERSION), a decimal integer
 * A service whose TXT breaks these rules, or lacks id, gossip or proto, is ignored (logged at
 * debug level). Keys a reader does not know are ignored, so keys can be added.
 */
#define AGPU_DISCOVERY_SERVICE_TYPE "_agpu._tcp"

/* Longest numeric address in an event, NUL included: an IPv6 address (45) + '%' + an interface
 * name (IF_NAMESIZE) for link-local ones. */
#define AGPU_DISCOVERY_ADDRESS_MAX 64

/* _agpu._tcp services tracked at once (one per node, interface and IP version that sees it).
 * Bounds the memory a LAN flooded with fake services can make us spend; more are ignored. */
#define AGPU_DISCOVERY_MAX_SERVICES 1024

/* Without a D-Bus system bus, reconnecting is retried after 1 s, doubling up to 16 s: cheap (one
 * failed connect() on a unix socket), and a node started before dbus finds the mesh at most
 * 16 s after it. A running bus tells Avahi clients when avahi-daemon appears: no polling then. */
#define AGPU_DISCOVERY_RETRY_MIN_MS 1000U
#define AGPU_DISCOVERY_RETRY_MAX_MS 16000U

/* What this node publishes. Strings are copied. */
typedef struct {
    const char *id;       /* unique node id, as in the TXT rules above */
    const char *name;     /* node name; NULL or "" publishes the id as the name */
    uint16_t http_port;   /* the service port: where peers and clients reach the front door */
    uint16_t gossip_port; /* the gossip PUB socket's port */
    unsigned proto;       /* gossip protocol version */
} agpu_discovery_self_t;

typedef enum {
    AGPU_DISCOVERY_FOUND = 1, /* a peer appeared, or what we know of it changed */
    AGPU_DISCOVERY_LOST = 2,  /* mDNS no longer shows it */
} agpu_discovery_kind_t;

/* One event. Every string is valid only during the callback: copy what you keep. */
typedef struct {
    agpu_discovery_kind_t kind;
    const char *id;      /* the peer's node id (never this node's own) */
    const char *name;    /* its name ("" if it published none) */
    const char *address; /* numeric: "10.0.0.7", or "fe80::1%eth0"; IPv4 when it has one */
    uint16_t http_port;  /* for LOST, the last values FOUND reported */
    uint16_t gossip_port;
    unsigned proto;
} agpu_discovery_event_t;

/*
 * Called from the discovery thread (Avahi's threaded poll, holding its lock), never from the
 * caller's: forward the event (e.g. into an actor's pipe) and return. It must not block for
 * long, must not call agpu_discovery_update or agpu_discovery_destroy, and must not wait for a
 * lock the caller holds while calling them (they wait for that thread: deadlock).
 * Events for one id come in order; FOUND for an id already found carries changed details.
 * LOST only means mDNS lost sight of the peer: it said goodbye (a clean exit: LOST within
 * about a second), its records expired (a crash or a cut cable: about 2 minutes, the TTL of
 * its SRV record), or our own avahi-daemon went away (LOST for every peer at once, FOUND again
 * once it is back). Once a cut-off peer is LOST, mDNS sees it again only at Avahi's next query,
 * which backs off (1 s doubling up to an hour): after a partition heals, FOUND may take about
 * as long as the partition lasted. Whether a peer is alive is the mesh's business.
 */
typedef void(agpu_discovery_fn)(const agpu_discovery_event_t *event, void *arg);

typedef struct agpu_discovery_t agpu_discovery_t;

/* Starts publishing and browsing on a thread of its own. Needs no running avahi-daemon or
 * dbus: without them it says so once in the log, carries on, and starts when they appear; it
 * re-publishes and re-browses after an avahi-daemon restart. Returns NULL (logged) only if
 * self breaks the TXT rules or resources run out. Caller owns return value. */
agpu_discovery_t *agpu_discovery_new(const agpu_discovery_self_t *self, agpu_discovery_fn *on_event,
                                     void *arg);

/* Publishes changed details (same id; name, ports or proto may change). A change of name or
 * HTTP port re-registers the service (peers may see LOST then FOUND); the rest updates the TXT
 * record in place. Returns 0, or -1 (logged) if info is invalid or has another id. */
int agpu_discovery_update(agpu_discovery_t *self, const agpu_discovery_self_t *info);

/* Stops the thread and withdraws the service (avahi-daemon sends the goodbye). The callback is
 * never called once this returns. No-op on NULL; nulls the pointer. */
void agpu_discovery_destroy(agpu_discovery_t **self_p);

#endif
