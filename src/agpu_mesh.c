/* The mesh actor. One thread owns the gossip sockets (czmq), the peer table and every timer,
 * and is the only writer of mesh state; it publishes an immutable snapshot after each change.
 *
 * Transport: each node binds one PULL socket (its gossip endpoint) and keeps one PUSH socket
 * ("link") per known endpoint. Push/pull rather than pub/sub because a new node must be
 * heard by the seed it dials: with pub/sub the seed would never learn of a subscriber. A STATE
 * goes out on every heartbeat, at once on a new link, and, debounced, when the load changes;
 * its membership digest makes one seed or one mDNS sighting enough to learn the whole mesh. */
#include "agpu_mesh.h"

#include "agpu_log.h"
#include "agpu_name.h"
#include "agpu_text.h"
#include "agpu_wakeup.h"

#include <czmq.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/eventfd.h>

/* Messages a link queues for a peer that is slow or away; newer ones are dropped after. */
#define MESH_LINK_HWM 16
/* Messages queued from one sender before its newer ones are dropped: bounds what a flooding
 * sender costs (64 x AGPU_MSG_MAX_SIZE); a peer sends one a heartbeat. */
#define MESH_INBOUND_HWM 64
/* Messages handled per wake-up before the timers run, so a flood cannot stop our heartbeat. */
#define MESH_INBOUND_BATCH 64
/* Redial a silent endpoint at 100 ms, backing off to this. */
#define MESH_RECONNECT_MAX_MS 2000
/* The membership digest rides on every STATE when membership changed, on every greeting, and
 * otherwise on one heartbeat in this many (anti-entropy): at 50 nodes it is 95% of a STATE. */
#define MESH_DIGEST_EVERY 5
/* A link made from hearsay (a digest) whose node never spoke is dropped after this. */
#define MESH_HEARSAY_LINK_MS 10000
/* How long a closing link may take to deliver our GOODBYE. */
#define MESH_GOODBYE_LINGER_MS 300

/* A request from another thread, queued for the actor. */
typedef struct command {
    struct command *next;
    enum { CMD_ENDPOINT, CMD_LOCAL, CMD_DRAIN, CMD_SUSPECT } kind;
    char *endpoint; /* CMD_ENDPOINT; CMD_SUSPECT: the node's id */
    bool ollama_up;
    char *version;
    agpu_msg_model_t *models;
    size_t n_models;
} command_t;

struct agpu_mesh {
    zactor_t *actor;
    agpu_mesh_options_t options; /* strings copied below */
    char *id, *name, *bind, *gossip_endpoint, *http_endpoint, **seeds;
    int wake_fd;
    pthread_mutex_t lock; /* guards queue and view */
    command_t *queue_head, *queue_tail;
    agpu_view_t *view;
    pthread_mutex_t count_lock; /* guards counts: request threads count, the actor reads */
    struct {
        char model[AGPU_NAME_KEY_MAX];
        int in_flight;
        double tokens_per_s, ttft_ms; /* moving averages; 0 until measured */
    } counts[AGPU_MSG_MAX_MODELS];
    size_t n_counts;
    atomic_bool load_changed; /* counts changed since the last STATE: the first change wakes */
    atomic_bool draining;
    atomic_uint_fast64_t dropped;
    char error[256];
};

/* The actor's own state: touched by the actor thread only. */
typedef struct {
    agpu_mesh_t *mesh;
    zsock_t *pipe, *inbound;
    zhashx_t *links; /* endpoint -> zsock_t * (PUSH) */
    zhashx_t *peers; /* id -> agpu_peer_t * */
    zhashx_t *hearsay; /* endpoint -> int64_t * when linked, for links no node spoke on yet */
    uint64_t seq;
    bool ollama_up;
    char *version;
    agpu_msg_model_t *models;
    size_t n_models;
    int64_t next_heartbeat, next_tick, state_due;
    bool membership_changed; /* a node joined, moved or was forgotten since the last STATE */
    unsigned beats;
    bool view_dirty;  /* the snapshot is out of date */
    bool view_urgent; /* ... in a way that matters now: a node joined, died, left */
    int64_t next_view;
    uint8_t *buf;
} actor_t;

/* ---- small helpers ---- */

static void free_models(agpu_msg_model_t *models, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        free((char *)models[i].name);
        free((char *)models[i].digest);
    }
    free(models);
}

static void command_free(command_t *cmd)
{
    free(cmd->endpoint);
    free(cmd->version);
    free_models(cmd->models, cmd->n_models);
    free(cmd);
}

static void enqueue(agpu_mesh_t *self, command_t *cmd)
{
    pthread_mutex_lock(&self->lock);
    if (self->queue_tail)
        self->queue_tail->next = cmd;
    else
        self->queue_head = cmd;
    self->queue_tail = cmd;
    pthread_mutex_unlock(&self->lock);
    agpu_wakeup_signal(self->wake_fd);
}

static void destroy_link(void **item)
{
    zsock_t *sock = *item;
    zsock_destroy(&sock);
    *item = NULL;
}

static void destroy_peer(void **item)
{
    agpu_peer_t *peer = *item;
    agpu_peer_destroy(&peer);
    *item = NULL;
}

static void destroy_time(void **item)
{
    free(*item);
    *item = NULL;
}

static bool is_seed(actor_t *a, const char *endpoint)
{
    for (size_t i = 0; i < a->mesh->options.n_seeds; i++)
        if (strcmp(a->mesh->seeds[i], endpoint) == 0)
            return true;
    return false;
}

/* ---- sending ---- */

/* Each local model's requests in flight (counted by the front door) and waiting: Ollama runs
 * `slots` at once per model and queues the rest inside. */
static void fill_load(actor_t *a)
{
    agpu_mesh_t *m = a->mesh;
    pthread_mutex_lock(&m->count_lock);
    for (size_t i = 0; i < a->n_models; i++) {
        char key[AGPU_NAME_KEY_MAX];
        int in_flight = 0;
        a->models[i].tokens_per_s = 0;
        a->models[i].ttft_ms = 0;
        if (agpu_name_key(a->models[i].name, key, sizeof key) == 0)
            for (size_t c = 0; c < m->n_counts; c++)
                if (strcmp(m->counts[c].model, key) == 0) {
                    in_flight = m->counts[c].in_flight;
                    a->models[i].tokens_per_s = m->counts[c].tokens_per_s;
                    a->models[i].ttft_ms = (uint32_t)m->counts[c].ttft_ms;
                }
        a->models[i].in_flight = in_flight > 0 ? (uint32_t)in_flight : 0;
        a->models[i].queued = a->models[i].in_flight > m->options.slots
                                  ? a->models[i].in_flight - m->options.slots
                                  : 0;
    }
    pthread_mutex_unlock(&m->count_lock);
}

/* Our STATE: local models and load, and the digest of the peers we hear from. */
static size_t encode_state(actor_t *a, uint64_t seq, agpu_msg_member_t *members,
                           size_t max_members)
{
    agpu_mesh_t *m = a->mesh;
    size_t n_members = 0;
    for (agpu_peer_t *p = zhashx_first(a->peers); p && n_members < max_members;
         p = zhashx_next(a->peers)) {
        agpu_peer_state_t s = agpu_peer_state(p);
        if ((s == AGPU_PEER_ALIVE || s == AGPU_PEER_SUSPECT) && agpu_peer_gossip_endpoint(p)[0])
            members[n_members++] = (agpu_msg_member_t){agpu_peer_id(p),
                                                       agpu_peer_gossip_endpoint(p),
                                                       agpu_peer_incarnation(p)};
    }
    agpu_msg_t msg = {.kind = AGPU_MSG_STATE, .id = m->id, .incarnation = m->options.incarnation};
    agpu_msg_model_t *models = a->models;
    fill_load(a);
    msg.state = (agpu_msg_state_t){
        .seq = seq,
        .name = m->name,
        .gossip_endpoint = m->gossip_endpoint,
        .http_endpoint = m->http_endpoint,
        .heartbeat_ms = (uint32_t)m->options.timeouts.heartbeat_ms,
        .ollama_up = a->ollama_up,
        .ollama_version = a->version ? a->version : "",
        .slots = m->options.slots,
        .draining = atomic_load(&m->draining),
        .n_models = a->n_models,
        .models = models,
        .n_members = n_members,
        .members = members,
    };
    size_t len = 0;
    int rc = agpu_msg_encode(&msg, a->buf, AGPU_MSG_MAX_SIZE, &len);
    if (rc != AGPU_MSG_OK) {
        agpu_warn("cannot encode our state: %s", agpu_msg_error_name(rc));
        return 0;
    }
    return len;
}

/* The STATE to send now (each one sent gets the next sequence number). */
static size_t current_state(actor_t *a, bool with_digest)
{
    agpu_msg_member_t members[AGPU_MSG_MAX_MEMBERS];
    return encode_state(a, ++a->seq, members, with_digest ? AGPU_MSG_MAX_MEMBERS : 0);
}

static void send_on(zsock_t *link, const uint8_t *buf, size_t len)
{
    zmq_send(zsock_resolve(link), buf, len, ZMQ_DONTWAIT); /* a full link drops it */
}

static int64_t next_beat(int64_t now, int64_t heartbeat_ms)
{
    return agpu_peer_next_beat(now, zclock_time(), heartbeat_ms);
}

static void broadcast_state(actor_t *a, int64_t now)
{
    bool with_digest = a->membership_changed || ++a->beats % MESH_DIGEST_EVERY == 0;
    /* cleared before the counts are read: a change from now on wakes us for another STATE */
    atomic_store(&a->mesh->load_changed, false);
    size_t len = current_state(a, with_digest);
    if (len == 0)
        return;
    a->membership_changed = false;
    for (zsock_t *link = zhashx_first(a->links); link; link = zhashx_next(a->links))
        send_on(link, a->buf, len);
    a->next_heartbeat = next_beat(now, a->mesh->options.timeouts.heartbeat_ms);
    a->state_due = -1;
    a->view_dirty = true; /* our own entry changed with it */
}

/* A link to endpoint, made (and greeted with our STATE) if it is new. */
static void ensure_link(actor_t *a, const char *endpoint)
{
    if (!endpoint[0] || strcmp(endpoint, a->mesh->gossip_endpoint) == 0 ||
        zhashx_lookup(a->links, endpoint))
        return;
    zsock_t *link = zsock_new(ZMQ_PUSH);
    if (!link)
        return;
    zsock_set_sndhwm(link, MESH_LINK_HWM);
    zsock_set_reconnect_ivl_max(link, MESH_RECONNECT_MAX_MS);
    zsock_set_linger(link, 0);
    zsock_set_maxmsgsize(link, AGPU_MSG_MAX_SIZE);
    if (zsock_connect(link, "%s", endpoint) != 0) {
        agpu_warn("cannot connect to gossip endpoint %s", endpoint);
        zsock_destroy(&link);
        return;
    }
    zhashx_insert(a->links, endpoint, link);
    agpu_debug("linked to %s", endpoint);
    size_t len = current_state(a, true); /* a greeting: everything we know */
    if (len)
        send_on(link, a->buf, len);
}

/* Drops the link to endpoint unless a seed or a remaining peer still uses it. */
static void release_link(actor_t *a, const char *endpoint)
{
    if (is_seed(a, endpoint))
        return;
    for (agpu_peer_t *p = zhashx_first(a->peers); p; p = zhashx_next(a->peers))
        if (strcmp(agpu_peer_gossip_endpoint(p), endpoint) == 0)
            return;
    zhashx_delete(a->links, endpoint);
}

/* ---- receiving ---- */

/* A change to the mesh: the snapshot must follow, at once when a node's lifecycle moved, else
 * within a tick (a busy mesh changes load many times a second; readers need not see each). */
static void note_change(actor_t *a, agpu_peer_change_t change)
{
    a->view_dirty |= change.what != 0;
    a->view_urgent |= (change.what & AGPU_PEER_MOVED) != 0;
    a->membership_changed |= (change.what & (AGPU_PEER_MOVED | AGPU_PEER_RESTARTED)) != 0;
}

static void log_change(agpu_peer_t *peer, agpu_peer_change_t change)
{
    if (change.what & AGPU_PEER_MOVED)
        agpu_info("peer %s (%s) %s -> %s", agpu_peer_name(peer)[0] ? agpu_peer_name(peer) : "?",
                  agpu_peer_id(peer), agpu_peer_state_name(change.from),
                  agpu_peer_state_name(change.to));
}

static void on_members(actor_t *a, const agpu_msg_state_t *st, int64_t now)
{
    for (size_t i = 0; i < st->n_members; i++) {
        const agpu_msg_member_t *member = &st->members[i];
        if (strcmp(member->id, a->mesh->id) == 0)
            continue;
        agpu_peer_t *peer = zhashx_lookup(a->peers, member->id);
        if (peer) {
            agpu_peer_change_t change = agpu_peer_on_member(peer, member, now);
            log_change(peer, change);
            note_change(a, change);
        } else if (!zhashx_lookup(a->links, member->endpoint)) {
            ensure_link(a, member->endpoint); /* it introduces itself once linked */
            int64_t *since = malloc(sizeof *since);
            if (since) {
                *since = now;
                if (zhashx_insert(a->hearsay, member->endpoint, since) != 0)
                    free(since);
            }
        }
    }
}

static void on_state(actor_t *a, agpu_msg_t *msg, int64_t now)
{
    agpu_peer_t *peer = zhashx_lookup(a->peers, msg->id);
    if (!peer) {
        peer = agpu_peer_new(msg->id, msg->state.gossip_endpoint, msg->incarnation,
                             &a->mesh->options.timeouts, now);
        if (!peer)
            return;
        zhashx_insert(a->peers, msg->id, peer);
        agpu_info("peer %s (%s) joined at %s", msg->state.name, msg->id,
                  msg->state.gossip_endpoint);
        a->view_dirty = a->view_urgent = a->membership_changed = true;
        /* tell everyone soon (our digest now names it, which is how the others learn it), but
         * at most a few times a heartbeat however many join: a mesh starting cold would
         * otherwise resend to everyone on every join */
        if (a->state_due < 0)
            a->state_due = now + a->mesh->options.timeouts.heartbeat_ms / 4;
    }
    char old_endpoint[AGPU_MSG_ENDPOINT_MAX + 1];
    agpu_text_copy(old_endpoint, sizeof old_endpoint, agpu_peer_gossip_endpoint(peer));
    ensure_link(a, msg->state.gossip_endpoint);
    zhashx_delete(a->hearsay, msg->state.gossip_endpoint); /* its node spoke */
    on_members(a, &msg->state, now); /* before the peer may take the message */
    agpu_peer_change_t change = agpu_peer_on_message(peer, msg, now);
    log_change(peer, change);
    note_change(a, change);
    if (change.what & AGPU_PEER_ENDPOINT)
        release_link(a, old_endpoint);
}

static void on_inbound(actor_t *a, int64_t now)
{
    zmq_msg_t frame;
    zmq_msg_init(&frame);
    for (int n = 0; n < MESH_INBOUND_BATCH &&
                    zmq_msg_recv(&frame, zsock_resolve(a->inbound), ZMQ_DONTWAIT) >= 0;
         n++) {
        agpu_msg_t msg;
        int rc = zmq_msg_more(&frame) ? AGPU_MSG_EMALFORMED
                                      : agpu_msg_decode(zmq_msg_data(&frame), zmq_msg_size(&frame),
                                                        &msg);
        if (rc != AGPU_MSG_OK) {
            atomic_fetch_add(&a->mesh->dropped, 1);
            agpu_debug("dropped a gossip message: %s", agpu_msg_error_name(rc));
            continue;
        }
        if (strcmp(msg.id, a->mesh->id) == 0) {
            /* our own echo (a seed that is ourselves): ignore */
        } else if (msg.kind == AGPU_MSG_STATE) {
            on_state(a, &msg, now);
        } else if (msg.kind == AGPU_MSG_GOODBYE) {
            agpu_peer_t *peer = zhashx_lookup(a->peers, msg.id);
            if (peer) {
                agpu_peer_change_t change = agpu_peer_on_goodbye(peer, &msg, now);
                log_change(peer, change);
                note_change(a, change);
            }
        }
        agpu_msg_reset(&msg);
    }
    zmq_msg_close(&frame);
}

/* ---- other threads' requests ---- */

static void on_commands(actor_t *a, int64_t now)
{
    agpu_wakeup_drain(a->mesh->wake_fd);
    if (atomic_load(&a->mesh->load_changed) && a->state_due < 0)
        a->state_due = now + a->mesh->options.timeouts.debounce_ms;
    pthread_mutex_lock(&a->mesh->lock);
    command_t *cmd = a->mesh->queue_head;
    a->mesh->queue_head = a->mesh->queue_tail = NULL;
    pthread_mutex_unlock(&a->mesh->lock);
    while (cmd) {
        command_t *next = cmd->next;
        if (cmd->kind == CMD_ENDPOINT) {
            ensure_link(a, cmd->endpoint);
        } else if (cmd->kind == CMD_DRAIN) {
            a->state_due = now; /* peers stop (or start) sending work at once */
            a->view_dirty = a->view_urgent = true;
        } else if (cmd->kind == CMD_SUSPECT) {
            agpu_peer_t *peer = zhashx_lookup(a->peers, cmd->endpoint);
            if (peer) {
                agpu_peer_change_t change = agpu_peer_mark_suspect(peer, now);
                log_change(peer, change);
                note_change(a, change);
            }
        } else {
            bool changed = a->ollama_up != cmd->ollama_up || a->n_models != cmd->n_models;
            for (size_t i = 0; !changed && i < cmd->n_models; i++)
                changed = strcmp(a->models[i].name, cmd->models[i].name) != 0 ||
                          a->models[i].loaded != cmd->models[i].loaded;
            a->ollama_up = cmd->ollama_up;
            free(a->version);
            a->version = cmd->version;
            free_models(a->models, a->n_models);
            a->models = cmd->models;
            a->n_models = cmd->n_models;
            cmd->version = NULL;
            cmd->models = NULL;
            cmd->n_models = 0;
            if (changed && a->state_due < 0)
                a->state_due = now + a->mesh->options.timeouts.debounce_ms;
            a->view_dirty = true;
        }
        command_free(cmd);
        cmd = next;
    }
}

/* ---- timers and the snapshot ---- */

static void tick(actor_t *a, int64_t now)
{
    zlistx_t *forget = zlistx_new();
    for (agpu_peer_t *p = zhashx_first(a->peers); p; p = zhashx_next(a->peers)) {
        agpu_peer_change_t change = agpu_peer_tick(p, now);
        log_change(p, change);
        note_change(a, change);
        if (change.what & AGPU_PEER_FORGET)
            zlistx_add_end(forget, (void *)zhashx_cursor(a->peers));
    }
    for (const char *id = zlistx_first(forget); id; id = zlistx_next(forget)) {
        agpu_peer_t *p = zhashx_lookup(a->peers, id);
        char endpoint[AGPU_MSG_ENDPOINT_MAX + 1];
        agpu_text_copy(endpoint, sizeof endpoint, agpu_peer_gossip_endpoint(p));
        zhashx_delete(a->peers, id);
        release_link(a, endpoint);
    }
    zlistx_destroy(&forget);
    zlistx_t *stale = zlistx_new();
    for (int64_t *since = zhashx_first(a->hearsay); since; since = zhashx_next(a->hearsay))
        if (now - *since >= MESH_HEARSAY_LINK_MS)
            zlistx_add_end(stale, (void *)zhashx_cursor(a->hearsay));
    for (const char *endpoint = zlistx_first(stale); endpoint; endpoint = zlistx_next(stale)) {
        char copy[AGPU_MSG_ENDPOINT_MAX + 1];
        agpu_text_copy(copy, sizeof copy, endpoint);
        zhashx_delete(a->hearsay, copy);
        agpu_debug("nobody spoke from %s: dropping that link", copy);
        release_link(a, copy);
    }
    zlistx_destroy(&stale);
    /* sleep until the first peer's deadline: an idle mesh wakes for messages, not for a clock */
    a->next_tick = now + a->mesh->options.timeouts.heartbeat_ms;
    for (agpu_peer_t *p = zhashx_first(a->peers); p; p = zhashx_next(a->peers)) {
        int64_t due = agpu_peer_next_deadline(p);
        a->next_tick = due > now && due < a->next_tick ? due : a->next_tick;
    }
}

static void publish_view(actor_t *a, int64_t now)
{
    agpu_mesh_t *m = a->mesh;
    agpu_view_t *view = agpu_view_new(m->id);
    if (!view)
        return;
    agpu_msg_member_t none[1];
    /* our own entry: our state as peers get it, decoded back */
    size_t len = encode_state(a, a->seq, none, 0);
    agpu_msg_t own = {0};
    if (len && agpu_msg_decode(a->buf, len, &own) == AGPU_MSG_OK)
        agpu_view_add(view, m->id, m->gossip_endpoint, true, AGPU_PEER_ALIVE, now, &own.state);
    agpu_msg_reset(&own);
    for (agpu_peer_t *p = zhashx_first(a->peers); p; p = zhashx_next(a->peers))
        agpu_view_add(view, agpu_peer_id(p), agpu_peer_gossip_endpoint(p), false, agpu_peer_state(p),
                      agpu_peer_last_seen(p), agpu_peer_latest(p));
    pthread_mutex_lock(&m->lock);
    agpu_view_t *old = m->view;
    m->view = view;
    pthread_mutex_unlock(&m->lock);
    agpu_view_unref(&old);
    a->view_dirty = a->view_urgent = false;
    a->next_view = now + a->mesh->options.timeouts.tick_ms;
}

static int64_t min_due(int64_t a, int64_t b)
{
    return a < 0 ? b : b < 0 ? a : a < b ? a : b;
}

static void say_goodbye(actor_t *a)
{
    agpu_msg_t bye = {.kind = AGPU_MSG_GOODBYE, .id = a->mesh->id,
                      .incarnation = a->mesh->options.incarnation};
    size_t len = 0;
    if (agpu_msg_encode(&bye, a->buf, AGPU_MSG_MAX_SIZE, &len) != AGPU_MSG_OK)
        return;
    for (zsock_t *link = zhashx_first(a->links); link; link = zhashx_next(a->links)) {
        zsock_set_linger(link, MESH_GOODBYE_LINGER_MS);
        send_on(link, a->buf, len);
    }
}

static void mesh_actor(zsock_t *pipe, void *arg)
{
    actor_t a = {.mesh = arg, .pipe = pipe, .state_due = -1};
    agpu_mesh_t *m = a.mesh;
    a.buf = malloc(AGPU_MSG_MAX_SIZE);
    a.links = zhashx_new();
    a.peers = zhashx_new();
    a.hearsay = zhashx_new();
    a.inbound = zsock_new(ZMQ_PULL);
    if (!a.buf || !a.links || !a.peers || !a.hearsay || !a.inbound) {
        snprintf(m->error, sizeof m->error, "out of memory");
        goto fail;
    }
    zhashx_set_destructor(a.links, destroy_link);
    zhashx_set_destructor(a.peers, destroy_peer);
    zhashx_set_destructor(a.hearsay, destroy_time);
    zsock_set_maxmsgsize(a.inbound, AGPU_MSG_MAX_SIZE); /* larger ones never reach us */
    zsock_set_rcvhwm(a.inbound, MESH_INBOUND_HWM);
    if (zsock_bind(a.inbound, "%s", m->bind) < 0) {
        snprintf(m->error, sizeof m->error, "cannot bind gossip endpoint %s: %s", m->bind,
                 zmq_strerror(zmq_errno()));
        goto fail;
    }
    int64_t now = zclock_mono();
    for (size_t i = 0; i < m->options.n_seeds; i++)
        ensure_link(&a, m->seeds[i]);
    a.next_heartbeat = next_beat(now, m->options.timeouts.heartbeat_ms);
    a.next_tick = now + m->options.timeouts.tick_ms;
    publish_view(&a, now);
    zsock_signal(pipe, 0);

    zmq_pollitem_t items[] = {{zsock_resolve(pipe), 0, ZMQ_POLLIN, 0},
                              {zsock_resolve(a.inbound), 0, ZMQ_POLLIN, 0},
                              {NULL, m->wake_fd, ZMQ_POLLIN, 0}};
    while (true) {
        now = zclock_mono();
        int64_t due = min_due(min_due(a.next_heartbeat, a.next_tick), a.state_due);
        if (a.view_dirty)
            due = min_due(due, a.next_view);
        long timeout = due > now ? (long)(due - now) : 0;
        if (zmq_poll(items, 3, timeout) < 0 && zmq_errno() != EINTR)
            break;
        now = zclock_mono();
        if (items[0].revents & ZMQ_POLLIN) {
            char *command = zstr_recv(pipe);
            bool stop = !command || streq(command, "$TERM");
            zstr_free(&command);
            if (stop)
                break;
        }
        if (items[1].revents & ZMQ_POLLIN)
            on_inbound(&a, now);
        if (items[2].revents & ZMQ_POLLIN)
            on_commands(&a, now);
        if (now >= a.next_tick)
            tick(&a, now);
        if (now >= a.next_heartbeat || (a.state_due >= 0 && now >= a.state_due))
            broadcast_state(&a, now);
        if (a.view_dirty && (a.view_urgent || now >= a.next_view))
            publish_view(&a, now);
    }
    say_goodbye(&a);
    goto done;
fail:
    zsock_signal(pipe, 1);
done:
    zsock_destroy(&a.inbound);
    zhashx_destroy(&a.links); /* lingers up to MESH_GOODBYE_LINGER_MS per link */
    zhashx_destroy(&a.peers);
    zhashx_destroy(&a.hearsay);
    free_models(a.models, a.n_models);
    free(a.version);
    free(a.buf);
}

/* ---- public ---- */

static char *copy(const char *s)
{
    return strdup(s ? s : "");
}

agpu_mesh_t *agpu_mesh_new(const agpu_mesh_options_t *options, char *error, size_t error_size)
{
    agpu_mesh_t *self = calloc(1, sizeof *self);
    if (!self) {
        snprintf(error, error_size, "out of memory");
        return NULL;
    }
    self->options = *options;
    self->id = copy(options->id);
    self->name = copy(options->name);
    self->bind = copy(options->bind);
    self->gossip_endpoint = copy(options->gossip_endpoint);
    self->http_endpoint = copy(options->http_endpoint);
    self->seeds = calloc(options->n_seeds + 1, sizeof(char *));
    for (size_t i = 0; self->seeds && i < options->n_seeds; i++)
        self->seeds[i] = copy(options->seeds[i]);
    pthread_mutex_init(&self->lock, NULL);
    pthread_mutex_init(&self->count_lock, NULL);
    self->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    zsys_handler_set(NULL); /* signals are the main thread's business */
    if (self->wake_fd >= 0)
        self->actor = zactor_new(mesh_actor, self);
    /* zactor_new returns once the actor has signalled: bound, or failed with error set */
    if (!self->actor || self->error[0] || !self->view) {
        agpu_text_copy(error, error_size, self->error[0] ? self->error : "cannot start the mesh");
        agpu_mesh_destroy(&self);
        return NULL;
    }
    return self;
}

void agpu_mesh_leave(agpu_mesh_t *self)
{
    zactor_destroy(&self->actor); /* the actor says goodbye on its way out */
}

void agpu_mesh_destroy(agpu_mesh_t **self_p)
{
    agpu_mesh_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    agpu_mesh_leave(self);
    while (self->queue_head) {
        command_t *next = self->queue_head->next;
        command_free(self->queue_head);
        self->queue_head = next;
    }
    agpu_view_unref(&self->view);
    if (self->wake_fd >= 0)
        close(self->wake_fd);
    pthread_mutex_destroy(&self->lock);
    pthread_mutex_destroy(&self->count_lock);
    for (size_t i = 0; self->seeds && i < self->options.n_seeds; i++)
        free(self->seeds[i]);
    free(self->seeds);
    free(self->id);
    free(self->name);
    free(self->bind);
    free(self->gossip_endpoint);
    free(self->http_endpoint);
    free(self);
}

/* Queues a command that carries one string (or none) for the actor. */
static void enqueue_text(agpu_mesh_t *self, int kind, const char *text)
{
    command_t *cmd = calloc(1, sizeof *cmd);
    if (!cmd || (text && !(cmd->endpoint = strdup(text)))) {
        free(cmd);
        return;
    }
    cmd->kind = kind;
    enqueue(self, cmd);
}

void agpu_mesh_add_endpoint(agpu_mesh_t *self, const char *gossip_endpoint)
{
    enqueue_text(self, CMD_ENDPOINT, gossip_endpoint);
}

void agpu_mesh_set_draining(agpu_mesh_t *self, bool draining)
{
    if (atomic_exchange(&self->draining, draining) != draining)
        enqueue_text(self, CMD_DRAIN, NULL); /* tell the mesh at once */
}

bool agpu_mesh_draining(agpu_mesh_t *self)
{
    return atomic_load(&self->draining);
}

void agpu_mesh_suspect(agpu_mesh_t *self, const char *node_id)
{
    enqueue_text(self, CMD_SUSPECT, node_id);
}

void agpu_mesh_set_local(agpu_mesh_t *self, bool ollama_up, const char *ollama_version,
                         const agpu_msg_model_t *models, size_t n_models)
{
    command_t *cmd = calloc(1, sizeof *cmd);
    if (!cmd)
        return;
    cmd->kind = CMD_LOCAL;
    cmd->ollama_up = ollama_up;
    cmd->version = copy(ollama_version);
    cmd->models = n_models ? calloc(n_models, sizeof *cmd->models) : NULL;
    for (size_t i = 0; cmd->models && i < n_models; i++) {
        cmd->models[i] = models[i];
        cmd->models[i].name = copy(models[i].name);
        cmd->models[i].digest = copy(models[i].digest);
        cmd->n_models++;
    }
    enqueue(self, cmd);
}

/* The entry counting model_key (count_lock held): found, or made when create is set (reusing
 * one no longer busy and never measured); -1 when there is none and no room. */
static long count_entry(agpu_mesh_t *self, const char *model_key, bool create)
{
    size_t i = 0, free_slot = self->n_counts;
    for (; i < self->n_counts; i++) {
        if (strcmp(self->counts[i].model, model_key) == 0)
            return (long)i;
        if (self->counts[i].in_flight == 0 && self->counts[i].tokens_per_s == 0 &&
            free_slot == self->n_counts)
            free_slot = i;
    }
    if (!create)
        return -1;
    if (free_slot < self->n_counts)
        i = free_slot;
    else if (self->n_counts < AGPU_MSG_MAX_MODELS)
        i = self->n_counts++;
    else
        return -1;
    memset(&self->counts[i], 0, sizeof self->counts[i]);
    agpu_text_copy(self->counts[i].model, sizeof self->counts[i].model, model_key);
    return (long)i;
}

void agpu_mesh_count_request(agpu_mesh_t *self, const char *model_key, int delta)
{
    pthread_mutex_lock(&self->count_lock);
    long i = count_entry(self, model_key, delta > 0);
    if (i >= 0)
        self->counts[i].in_flight += delta;
    pthread_mutex_unlock(&self->count_lock);
    if (!atomic_exchange(&self->load_changed, true)) /* the first change since the last STATE */
        agpu_wakeup_signal(self->wake_fd);
}

uint32_t agpu_mesh_in_flight(agpu_mesh_t *self, const char *model_key)
{
    pthread_mutex_lock(&self->count_lock);
    long i = count_entry(self, model_key, false);
    int in_flight = i >= 0 ? self->counts[i].in_flight : 0;
    pthread_mutex_unlock(&self->count_lock);
    return in_flight > 0 ? (uint32_t)in_flight : 0;
}

/* Weight of the newest measurement in the moving averages: recent enough to follow a node
 * that slows down under load, steady enough that one odd answer does not swing routing. */
#define MESH_SPEED_WEIGHT 0.3

void agpu_mesh_record_speed(agpu_mesh_t *self, const char *model_key, uint32_t ttft_ms,
                            double tokens_per_s)
{
    pthread_mutex_lock(&self->count_lock);
    long i = count_entry(self, model_key, true);
    if (i >= 0) {
        bool first = self->counts[i].tokens_per_s == 0;
        double w = first ? 1.0 : MESH_SPEED_WEIGHT;
        self->counts[i].tokens_per_s += w * (tokens_per_s - self->counts[i].tokens_per_s);
        self->counts[i].ttft_ms += w * ((double)ttft_ms - self->counts[i].ttft_ms);
    }
    pthread_mutex_unlock(&self->count_lock);
}

agpu_view_t *agpu_mesh_view(agpu_mesh_t *self)
{
    pthread_mutex_lock(&self->lock);
    agpu_view_t *view = self->view;
    if (view)
        agpu_view_ref(view);
    pthread_mutex_unlock(&self->lock);
    return view;
}

uint64_t agpu_mesh_dropped(agpu_mesh_t *self)
{
    return atomic_load(&self->dropped);
}
