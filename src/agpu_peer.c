/* One peer of the mesh and its lifecycle (alive, suspect, dead, left), driven by given time. */
#include "agpu_peer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

const agpu_peer_timeouts_t agpu_peer_timeouts_default = {
    /* The issue asks for one a second: a 1-3 KiB message per peer per second is nothing on a
     * LAN, and it sets the pace of everything below. */
    .heartbeat_ms = 1000,
    /* Load changes reach other routers within 50 ms, yet a burst of 100 requests costs one
     * message, not 100 ("tens of ms" in design.md). */
    .debounce_ms = 50,
    /* Bounds how late a timeout is noticed; ten wake-ups a second cost nothing. */
    .tick_ms = 100,
    /* Two heartbeats missed: one late message never demotes a peer, and a suspect is still
     * routed to (last), so an early suspicion costs little. */
    .suspect_ms = 2000,
    /* "A killed node is dead within 3 s": its last message came before it died, so it is
     * declared dead at most dead_ms + tick_ms = 2.9 s after, with 100 ms left for delivery. */
    .dead_ms = 2800,
    /* Long enough that a peer whose front door fails is not handed a failing request on every
     * heartbeat; short enough that a peer that recovered is soon used fully again. */
    .forward_hold_ms = 5000,
    /* A dead or left record stays a minute so `agpu peers` shows what happened and a late
     * message of the old life is recognised as stale; after that a returning node is simply
     * learned again. */
    .forget_ms = 60000,
};

struct agpu_peer {
    char id[AGPU_MSG_ID_MAX + 1];
    char endpoint[AGPU_MSG_ENDPOINT_MAX + 1]; /* gossip */
    char name[AGPU_NAME_MAX + 1];             /* these two outlive a restart, for display */
    char http[AGPU_MSG_ENDPOINT_MAX + 1];
    uint64_t incarnation;
    agpu_peer_state_t state;
    int64_t since;     /* when it entered state */
    int64_t last_seen; /* its own last message, or the start of a new life */
    bool held;         /* suspect because a forward failed, until hold_until */
    int64_t hold_until;
    bool has_latest;
    agpu_msg_t latest; /* its last STATE in this incarnation */
    agpu_peer_timeouts_t t;
};

int agpu_peer_timeouts_check(const agpu_peer_timeouts_t *t)
{
    bool ok = t->debounce_ms > 0 && t->debounce_ms < t->heartbeat_ms && t->tick_ms > 0 &&
              t->tick_ms <= t->heartbeat_ms && t->heartbeat_ms < t->suspect_ms &&
              t->suspect_ms < t->dead_ms && t->dead_ms < t->forget_ms && t->forward_hold_ms >= 0;
    return ok ? 0 : -1;
}

int64_t agpu_peer_next_beat(int64_t now_ms, int64_t wall_ms, int64_t heartbeat_ms)
{
    int64_t wait = heartbeat_ms - wall_ms % heartbeat_ms;
    return now_ms + (wait < heartbeat_ms / 2 ? wait + heartbeat_ms : wait);
}

/* Copies src if it fits (with its NUL) in size bytes; otherwise leaves dst as it was. */
static bool copy_str(char *dst, size_t size, const char *src)
{
    size_t n = strnlen(src, size);
    if (n == size)
        return false;
    memcpy(dst, src, n + 1);
    return true;
}

agpu_peer_t *agpu_peer_new(const char *id, const char *gossip_endpoint, uint64_t incarnation,
                           const agpu_peer_timeouts_t *timeouts, int64_t now_ms)
{
    assert(id && gossip_endpoint);
    agpu_peer_t *self = *id ? calloc(1, sizeof *self) : NULL;
    if (!self)
        return NULL;
    if (!copy_str(self->id, sizeof self->id, id) ||
        !copy_str(self->endpoint, sizeof self->endpoint, gossip_endpoint)) {
        free(self);
        return NULL;
    }
    self->incarnation = incarnation;
    self->state = AGPU_PEER_ALIVE;
    self->since = self->last_seen = now_ms;
    self->t = timeouts ? *timeouts : agpu_peer_timeouts_default;
    assert(agpu_peer_timeouts_check(&self->t) == 0);
    return self;
}

void agpu_peer_destroy(agpu_peer_t **self_p)
{
    if (!self_p || !*self_p)
        return;
    agpu_msg_reset(&(*self_p)->latest);
    free(*self_p);
    *self_p = NULL;
}

/* ---- The transitions: each public entry point reads top to bottom as its table row. ---- */

static agpu_peer_change_t unchanged(const agpu_peer_t *self)
{
    return (agpu_peer_change_t){self->state, self->state, 0};
}

static void enter(agpu_peer_t *self, agpu_peer_change_t *c, agpu_peer_state_t to, int64_t now)
{
    if (self->state != to) {
        self->state = to;
        self->since = now;
        c->what |= AGPU_PEER_MOVED;
    }
    if (to != AGPU_PEER_SUSPECT)
        self->held = false;
    c->to = to;
}

/* A newer incarnation: the old life's advertised state and any hold go with it. */
static void new_life(agpu_peer_t *self, agpu_peer_change_t *c, uint64_t incarnation)
{
    self->incarnation = incarnation;
    self->held = false;
    if (self->has_latest) {
        agpu_msg_reset(&self->latest);
        self->has_latest = false;
        c->what |= AGPU_PEER_CONTENT;
    }
    c->what |= AGPU_PEER_RESTARTED;
}

static void set_endpoint(agpu_peer_t *self, agpu_peer_change_t *c, const char *endpoint)
{
    if (strcmp(self->endpoint, endpoint) != 0 &&
        copy_str(self->endpoint, sizeof self->endpoint, endpoint))
        c->what |= AGPU_PEER_ENDPOINT;
}

agpu_peer_change_t agpu_peer_on_message(agpu_peer_t *self, agpu_msg_t *msg, int64_t now_ms)
{
    assert(msg->kind == AGPU_MSG_STATE && strcmp(msg->id, self->id) == 0);
    assert(msg->arena); /* kept as it is, so it must own its strings: a decoded message */
    agpu_peer_change_t c = unchanged(self);
    bool same = msg->incarnation == self->incarnation;
    if (msg->incarnation < self->incarnation || (same && self->state == AGPU_PEER_LEFT) ||
        (same && self->has_latest && msg->state.seq <= self->latest.state.seq)) {
        c.what = AGPU_PEER_STALE;
        return c;
    }
    if (!same)
        new_life(self, &c, msg->incarnation);
    agpu_msg_reset(&self->latest);
    agpu_msg_move(&self->latest, msg);
    self->has_latest = true;
    c.what |= AGPU_PEER_CONTENT;
    copy_str(self->name, sizeof self->name, self->latest.state.name);
    copy_str(self->http, sizeof self->http, self->latest.state.http_endpoint);
    set_endpoint(self, &c, self->latest.state.gossip_endpoint);
    self->last_seen = now_ms;
    bool held = self->held && now_ms < self->hold_until;
    enter(self, &c, held ? AGPU_PEER_SUSPECT : AGPU_PEER_ALIVE, now_ms);
    return c;
}

agpu_peer_change_t agpu_peer_on_goodbye(agpu_peer_t *self, const agpu_msg_t *msg, int64_t now_ms)
{
    assert(msg->kind == AGPU_MSG_GOODBYE && strcmp(msg->id, self->id) == 0);
    agpu_peer_change_t c = unchanged(self);
    if (msg->incarnation < self->incarnation) {
        c.what = AGPU_PEER_STALE;
        return c;
    }
    if (msg->incarnation > self->incarnation)
        new_life(self, &c, msg->incarnation);
    enter(self, &c, AGPU_PEER_LEFT, now_ms);
    return c;
}

agpu_peer_change_t agpu_peer_on_member(agpu_peer_t *self, const agpu_msg_member_t *member,
                                       int64_t now_ms)
{
    assert(strcmp(member->id, self->id) == 0);
    agpu_peer_change_t c = unchanged(self);
    if (member->incarnation < self->incarnation)
        c.what = AGPU_PEER_STALE;
    if (member->incarnation <= self->incarnation)
        return c; /* hearsay about a life we know: its own messages speak for it */
    new_life(self, &c, member->incarnation);
    set_endpoint(self, &c, member->endpoint);
    self->last_seen = now_ms;
    enter(self, &c, AGPU_PEER_ALIVE, now_ms);
    return c;
}

agpu_peer_change_t agpu_peer_mark_suspect(agpu_peer_t *self, int64_t now_ms)
{
    agpu_peer_change_t c = unchanged(self);
    if (self->state == AGPU_PEER_DEAD || self->state == AGPU_PEER_LEFT)
        return c;
    enter(self, &c, AGPU_PEER_SUSPECT, now_ms);
    self->held = true;
    self->hold_until = now_ms + self->t.forward_hold_ms;
    return c;
}

/* Silence allowed before suspect and dead: a slower peer gets the same number of heartbeats. */
static void silence_limits(const agpu_peer_t *self, int64_t *suspect, int64_t *dead)
{
    *suspect = self->t.suspect_ms;
    *dead = self->t.dead_ms;
    int64_t hb = self->has_latest ? (int64_t)self->latest.state.heartbeat_ms : 0;
    if (hb > self->t.heartbeat_ms) {
        *suspect = *suspect * hb / self->t.heartbeat_ms;
        *dead = *dead * hb / self->t.heartbeat_ms;
    }
}

int64_t agpu_peer_next_deadline(const agpu_peer_t *self)
{
    int64_t suspect, dead;
    silence_limits(self, &suspect, &dead);
    switch (self->state) {
    case AGPU_PEER_ALIVE:
        return self->last_seen + suspect;
    case AGPU_PEER_SUSPECT: {
        int64_t due = self->last_seen + dead;
        return self->held && self->hold_until < due ? self->hold_until : due;
    }
    case AGPU_PEER_DEAD:
    case AGPU_PEER_LEFT:
        return self->since + self->t.forget_ms;
    }
    return self->last_seen + suspect;
}

agpu_peer_change_t agpu_peer_tick(agpu_peer_t *self, int64_t now_ms)
{
    agpu_peer_change_t c = unchanged(self);
    int64_t silence = now_ms > self->last_seen ? now_ms - self->last_seen : 0;
    int64_t suspect, dead;
    silence_limits(self, &suspect, &dead);
    switch (self->state) {
    case AGPU_PEER_ALIVE:
    case AGPU_PEER_SUSPECT:
        if (silence >= dead)
            enter(self, &c, AGPU_PEER_DEAD, now_ms);
        else if (silence >= suspect)
            enter(self, &c, AGPU_PEER_SUSPECT, now_ms);
        else if (!self->held || now_ms >= self->hold_until)
            enter(self, &c, AGPU_PEER_ALIVE, now_ms); /* a hold ran out, heard lately */
        break;
    case AGPU_PEER_DEAD:
    case AGPU_PEER_LEFT:
        if (now_ms - self->since >= self->t.forget_ms)
            c.what |= AGPU_PEER_FORGET;
        break;
    }
    return c;
}

/* ---- Reading a peer. ---- */

const char *agpu_peer_id(const agpu_peer_t *self)
{
    return self->id;
}

const char *agpu_peer_gossip_endpoint(const agpu_peer_t *self)
{
    return self->endpoint;
}

uint64_t agpu_peer_incarnation(const agpu_peer_t *self)
{
    return self->incarnation;
}

agpu_peer_state_t agpu_peer_state(const agpu_peer_t *self)
{
    return self->state;
}

int64_t agpu_peer_since(const agpu_peer_t *self)
{
    return self->since;
}

int64_t agpu_peer_last_seen(const agpu_peer_t *self)
{
    return self->last_seen;
}

const char *agpu_peer_name(const agpu_peer_t *self)
{
    return self->name;
}

const char *agpu_peer_http_endpoint(const agpu_peer_t *self)
{
    return self->http;
}

const agpu_msg_state_t *agpu_peer_latest(const agpu_peer_t *self)
{
    return self->has_latest ? &self->latest.state : NULL;
}

const char *agpu_peer_state_name(agpu_peer_state_t state)
{
    static const char *const names[AGPU_PEER_NSTATES] = {"alive", "suspect", "dead", "left"};
    return (unsigned)state < AGPU_PEER_NSTATES ? names[state] : "unknown";
}
