/* One peer of the mesh: what we know of it, and its lifecycle as an explicit state machine. */
#ifndef AGPU_PEER_H
#define AGPU_PEER_H

#include "agpu_msg.h"

#include <stdbool.h>
#include <stdint.h>

/*
 * Lifecycle. Pure: no clock, no I/O, no locks; time (monotonic milliseconds) is an argument,
 * so every transition is a table-driven test. The mesh actor owns every record.
 *
 *   event \ state          alive        suspect          dead           left
 *   its STATE, same inc    alive        alive (1)        alive (2)      ignored (3)
 *   its STATE, newer inc   alive        alive            alive          alive
 *   its GOODBYE            left         left             left           left
 *   member, newer inc (4)  alive        alive            alive          alive
 *   silence >= suspect     suspect      -                -              -
 *   silence >= dead        dead         dead             -              -
 *   a forward failed       suspect (1)  suspect (1)      -              -
 *   dead/left >= forget    -            -                forget         forget
 *
 * Anything from an older incarnation (or, within one, a STATE whose seq is not newer) is
 * ignored and flagged AGPU_PEER_STALE.
 * (1) A failed forward holds the peer suspect for forward_hold_ms even while it keeps
 *     gossiping: it is alive on the bus but its front door failed, so it is routed last.
 * (2) Only silence made it dead, and there is nothing for it to refute: hearing it directly
 *     is proof enough, no new incarnation needed.
 * (3) It said goodbye in this life; a STATE after that is a replay. Only a new life returns.
 * (4) Peers in another node's membership digest. Hearsay never refreshes liveness (else a
 *     killed node would be kept alive by the digests of others), but a newer incarnation is a
 *     restart that node has seen: the peer gets a fresh start (last seen = now) to speak
 *     for itself, once per incarnation. Same or older incarnations change nothing.
 */
typedef enum {
    AGPU_PEER_ALIVE,   /* heard from lately: routed to */
    AGPU_PEER_SUSPECT, /* quiet, or a forward to it failed: routed to last */
    AGPU_PEER_DEAD,    /* silent too long: not routed to, kept to recognise a restart */
    AGPU_PEER_LEFT,    /* said goodbye: not routed to */
} agpu_peer_state_t;

#define AGPU_PEER_NSTATES 4

/*
 * Every timing of the mesh, in one place. Silence is measured from the last message the peer
 * itself sent us. A peer that advertises a slower heartbeat than ours ("hb") gets suspect_ms
 * and dead_ms stretched in proportion, so a mesh with mixed settings does not flap.
 */
typedef struct {
    int64_t heartbeat_ms;    /* how often a node sends its STATE */
    int64_t debounce_ms;     /* how long a change waits to go out with the changes after it */
    int64_t tick_ms;         /* how often the mesh calls agpu_peer_tick */
    int64_t suspect_ms;      /* silence before alive -> suspect */
    int64_t dead_ms;         /* silence before -> dead */
    int64_t forward_hold_ms; /* a failed forward keeps a peer suspect this long */
    int64_t forget_ms;       /* dead or left this long: the record is dropped */
} agpu_peer_timeouts_t;

/* The defaults: each value with its reason is in agpu_peer.c. */
extern const agpu_peer_timeouts_t agpu_peer_timeouts_default;

/* 0 if the timeouts make sense together (0 < debounce < heartbeat, 0 < tick <= heartbeat <
 * suspect < dead < forget, hold >= 0), else -1. For the config module to check user values. */
int agpu_peer_timeouts_check(const agpu_peer_timeouts_t *timeouts);

/* When the next heartbeat is due after one sent now (now_ms on the monotonic clock, wall_ms
 * the wall clock read at the same moment): at the first multiple of heartbeat_ms on the wall
 * clock at least half a heartbeat away. Nodes whose clocks agree (NTP) then beat together,
 * and each wakes once a heartbeat for a burst of its peers' messages rather than once for
 * every peer. Half, not zero: the two clocks' milliseconds do not tick at the same instant,
 * so a beat due at a multiple can find the wall clock a hair short of it. */
int64_t agpu_peer_next_beat(int64_t now_ms, int64_t wall_ms, int64_t heartbeat_ms);

/* What one call did, for the mesh to act on. */
enum {
    AGPU_PEER_MOVED = 1 << 0,     /* the lifecycle state changed (from != to): log, snapshot */
    AGPU_PEER_CONTENT = 1 << 1,   /* its advertised state was replaced or dropped: snapshot */
    AGPU_PEER_RESTARTED = 1 << 2, /* its incarnation moved forward */
    AGPU_PEER_ENDPOINT = 1 << 3,  /* its gossip endpoint changed: reconnect the SUB socket */
    AGPU_PEER_STALE = 1 << 4,     /* ignored as older than what we know: count it */
    AGPU_PEER_FORGET = 1 << 5,    /* dead or left for forget_ms: destroy the record */
};

typedef struct {
    agpu_peer_state_t from, to;
    unsigned what; /* AGPU_PEER_* bits; 0 = nothing changed */
} agpu_peer_change_t;

typedef struct agpu_peer agpu_peer_t;

/* A peer in state alive, last seen now, with no advertised state yet. The gossip endpoint
 * may be "" if not known yet; incarnation 0 means unknown (any real one is newer). timeouts
 * are copied (NULL: the defaults). Returns NULL if id is empty or a string is over its
 * AGPU_MSG_* limit, or out of memory. Caller owns return value. */
agpu_peer_t *agpu_peer_new(const char *id, const char *gossip_endpoint, uint64_t incarnation,
                           const agpu_peer_timeouts_t *timeouts, int64_t now_ms);

/* Frees the peer and its latest state, and nulls *self_p. No-op on NULL or *self_p NULL. */
void agpu_peer_destroy(agpu_peer_t **self_p);

/* A STATE message this peer sent (decoded, kind STATE, same id). When it is kept
 * (AGPU_PEER_CONTENT) its contents move into the peer and msg is left empty; either way the
 * caller may agpu_msg_reset(msg) after. */
agpu_peer_change_t agpu_peer_on_message(agpu_peer_t *self, agpu_msg_t *msg, int64_t now_ms);

/* A GOODBYE message this peer sent (kind GOODBYE, same id). */
agpu_peer_change_t agpu_peer_on_goodbye(agpu_peer_t *self, const agpu_msg_t *msg, int64_t now_ms);

/* An entry naming this peer in another node's membership digest. */
agpu_peer_change_t agpu_peer_on_member(agpu_peer_t *self, const agpu_msg_member_t *member,
                                       int64_t now_ms);

/* A forward to this peer failed before the first byte. */
agpu_peer_change_t agpu_peer_mark_suspect(agpu_peer_t *self, int64_t now_ms);

/* Applies the timeouts. Call at agpu_peer_next_deadline (or every tick_ms); a late call goes
 * straight to the right state. */
agpu_peer_change_t agpu_peer_tick(agpu_peer_t *self, int64_t now_ms);

/* When agpu_peer_tick could next change something, if nothing is heard meanwhile. */
int64_t agpu_peer_next_deadline(const agpu_peer_t *self);

const char *agpu_peer_id(const agpu_peer_t *self);
const char *agpu_peer_gossip_endpoint(const agpu_peer_t *self);
uint64_t agpu_peer_incarnation(const agpu_peer_t *self);
agpu_peer_state_t agpu_peer_state(const agpu_peer_t *self);
int64_t agpu_peer_since(const agpu_peer_t *self);     /* when it entered its state */
int64_t agpu_peer_last_seen(const agpu_peer_t *self); /* last message from it, or a new life */

/* From its last kept STATE, kept across a restart until the next one; "" before any. */
const char *agpu_peer_name(const agpu_peer_t *self);
const char *agpu_peer_http_endpoint(const agpu_peer_t *self);

/* Its last STATE in its current incarnation, or NULL: valid until the next call that
 * reports AGPU_PEER_CONTENT, or destroy. */
const agpu_msg_state_t *agpu_peer_latest(const agpu_peer_t *self);

/* "alive", "suspect", "dead", "left" (as in JSON and on the CLI); "unknown" otherwise. */
const char *agpu_peer_state_name(agpu_peer_state_t state);

#endif
