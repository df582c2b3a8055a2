/* Unit tests of the peer state machine: every transition, with times, as scenario tables. */
#include "agpu_peer.h"

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#define ID "p1"
#define EP "tcp://10.0.0.9:7447"

/* A decoded STATE from the peer (the peer keeps only messages that own their strings). */
static agpu_msg_t state_msg(uint64_t inc, uint64_t seq, uint32_t hb, const char *gep)
{
    agpu_msg_model_t model = {.name = "llama3:8b", .loaded = true};
    agpu_msg_t m = {.kind = AGPU_MSG_STATE, .id = ID, .incarnation = inc};
    m.state = (agpu_msg_state_t){.seq = seq,
                                 .name = "box-9",
                                 .gossip_endpoint = gep ? gep : EP,
                                 .http_endpoint = "http://10.0.0.9:11435",
                                 .heartbeat_ms = hb,
                                 .n_models = 1,
                                 .models = &model};
    uint8_t buf[1024];
    size_t len;
    agpu_msg_t out;
    assert_int_equal(agpu_msg_encode(&m, buf, sizeof buf, &len), AGPU_MSG_OK);
    assert_int_equal(agpu_msg_decode(buf, len, &out), AGPU_MSG_OK);
    return out;
}

/* ---- Scenarios: a fresh peer ("p1", incarnation inc0, created at t=0), then steps. ---- */

enum { END, MSG, BYE, MEMBER, SUSPECT, TICK };

typedef struct {
    int ev;
    int64_t t;
    uint64_t inc, seq; /* MSG, BYE, MEMBER */
    uint32_t hb;       /* MSG: advertised heartbeat */
    const char *ep;    /* MSG, MEMBER: gossip endpoint (NULL: EP) */
    agpu_peer_state_t to;
    unsigned what;
} step_t;

#define NSTEPS 14

typedef struct {
    const char *name;
    uint64_t inc0;
    step_t steps[NSTEPS]; /* ended by the first END, or full */
} scenario_t;

#define A AGPU_PEER_ALIVE
#define S AGPU_PEER_SUSPECT
#define D AGPU_PEER_DEAD
#define L AGPU_PEER_LEFT
#define MOVED AGPU_PEER_MOVED
#define CONTENT AGPU_PEER_CONTENT
#define RESTARTED AGPU_PEER_RESTARTED
#define ENDPOINT AGPU_PEER_ENDPOINT
#define STALE AGPU_PEER_STALE
#define FORGET AGPU_PEER_FORGET
// clang-format off
/* Steps: when, what happens, then the state expected and the change bits reported. */
#define M(t, inc, seq, to, what) {MSG, t, inc, seq, 0, NULL, to, what}
#define M_HB(t, inc, seq, hb, to, what) {MSG, t, inc, seq, hb, NULL, to, what}
#define M_EP(t, inc, seq, ep, to, what) {MSG, t, inc, seq, 0, ep, to, what}
#define B(t, inc, to, what) {BYE, t, inc, 0, 0, NULL, to, what}
#define G(t, inc, ep, to, what) {MEMBER, t, inc, 0, 0, ep, to, what}
#define F(t, to, what) {SUSPECT, t, 0, 0, 0, NULL, to, what}
#define T(t, to, what) {TICK, t, 0, 0, 0, NULL, to, what}

static const scenario_t scenarios[] = {
    {"heartbeats keep it alive; two missed make it suspect", 5,
     {M(0, 5, 1, A, CONTENT), T(999, A, 0), M(1000, 5, 2, A, CONTENT), T(2999, A, 0),
      T(3000, S, MOVED)}},
    {"silence: suspect at 2000, dead at 2800, forgotten a minute later", 5,
     {M(0, 5, 1, A, CONTENT), T(1999, A, 0), T(2000, S, MOVED), T(2799, S, 0),
      T(2800, D, MOVED), T(62799, D, 0), T(62800, D, FORGET), T(70000, D, FORGET)}},
    {"a late tick goes straight from alive to dead", 5,
     {M(0, 5, 1, A, CONTENT), T(5000, D, MOVED)}},
    {"never heard directly: the same clock runs from creation", 5,
     {T(1999, A, 0), T(2000, S, MOVED), T(2800, D, MOVED)}},
    {"a suspect that speaks is alive again", 5,
     {M(0, 5, 1, A, CONTENT), T(2500, S, MOVED), M(2600, 5, 2, A, MOVED | CONTENT),
      T(4599, A, 0), T(4600, S, MOVED)}},
    {"a dead peer heard directly is alive, no new incarnation needed", 5,
     {M(0, 5, 1, A, CONTENT), T(3000, D, MOVED), M(3500, 5, 2, A, MOVED | CONTENT)}},
    {"goodbye: left at once, later states of that life are replays", 5,
     {M(0, 5, 1, A, CONTENT), B(100, 5, L, MOVED), M(200, 5, 2, L, STALE), B(300, 5, L, 0),
      T(60099, L, 0), T(60100, L, FORGET)}},
    {"goodbye from suspect and from dead", 5,
     {M(0, 5, 1, A, CONTENT), T(2000, S, MOVED), B(2100, 5, L, MOVED)}},
    {"goodbye from dead", 5, {T(2800, D, MOVED), B(2900, 5, L, MOVED), T(62899, L, 0),
                              T(62900, L, FORGET)}},
    {"goodbye of a newer life: left, the old state dropped", 5,
     {M(0, 5, 1, A, CONTENT), B(100, 6, L, MOVED | RESTARTED | CONTENT)}},
    {"anything from an older incarnation is ignored", 5,
     {M(0, 5, 1, A, CONTENT), M(10, 4, 99, A, STALE), B(20, 4, A, STALE),
      G(30, 4, NULL, A, STALE), T(2800, D, MOVED), M(2900, 4, 1, D, STALE)}},
    {"within one life, only a newer seq counts", 5,
     {M(0, 5, 3, A, CONTENT), M(10, 5, 3, A, STALE), M(20, 5, 2, A, STALE),
      M(30, 5, 4, A, CONTENT), T(2029, A, 0), T(2030, S, MOVED)}},
    {"a restart: the new life's state replaces the old, whatever its seq", 5,
     {M(0, 5, 9, A, CONTENT), M(100, 6, 1, A, RESTARTED | CONTENT), M(200, 5, 10, A, STALE)}},
    {"a newer life revives a left peer", 5,
     {B(0, 5, L, MOVED), M(1000, 6, 1, A, MOVED | RESTARTED | CONTENT)}},
    {"a newer life revives a dead peer", 5,
     {M(0, 5, 1, A, CONTENT), T(3000, D, MOVED), M(4000, 6, 1, A, MOVED | RESTARTED | CONTENT)}},
    {"first contact after mDNS (incarnation unknown)", 0,
     {M(0, 7, 1, A, RESTARTED | CONTENT), M(1000, 7, 2, A, CONTENT)}},
    {"digest: hearsay of the same life never keeps a silent peer alive", 5,
     {M(0, 5, 1, A, CONTENT), G(1500, 5, NULL, A, 0), T(2000, S, MOVED),
      G(2500, 5, NULL, S, 0), T(2800, D, MOVED), G(3000, 5, NULL, D, 0)}},
    {"digest: a newer life gives a dead peer one fresh start", 5,
     {M(0, 5, 1, A, CONTENT), T(2800, D, MOVED), G(3100, 6, NULL, A, MOVED | RESTARTED | CONTENT),
      T(5099, A, 0), T(5100, S, MOVED), T(5900, D, MOVED), G(6000, 6, NULL, D, 0),
      M(6100, 6, 1, A, MOVED | CONTENT)}},
    {"digest: a newer life at a new endpoint", 5,
     {M(0, 5, 1, A, CONTENT), G(100, 6, "tcp://10.0.0.9:9999", A, RESTARTED | ENDPOINT | CONTENT),
      G(200, 7, "tcp://10.0.0.9:9999", A, RESTARTED), B(300, 7, L, MOVED),
      G(400, 8, NULL, A, MOVED | RESTARTED | ENDPOINT)}},
    {"digest: a newer life lifts suspicion", 5,
     {M(0, 5, 1, A, CONTENT), T(2000, S, MOVED), G(2100, 6, NULL, A, MOVED | RESTARTED | CONTENT)}},
    {"its own message moves its endpoint", 5,
     {M(0, 5, 1, A, CONTENT), M_EP(100, 5, 2, "tcp://h:1", A, CONTENT | ENDPOINT),
      M_EP(200, 5, 3, "tcp://h:1", A, CONTENT)}},
    {"a failed forward: held suspect while it gossips, alive when the hold ends", 5,
     {M(0, 5, 1, A, CONTENT), F(100, S, MOVED), M(1000, 5, 2, S, CONTENT),
      M(2000, 5, 3, S, CONTENT), M(3000, 5, 4, S, CONTENT), M(4000, 5, 5, S, CONTENT),
      M(5000, 5, 6, S, CONTENT), T(5099, S, 0), T(5100, A, MOVED)}},
    {"a message after the hold ended, before any tick, is alive", 5,
     {M(0, 5, 1, A, CONTENT), F(100, S, MOVED), M(1000, 5, 2, S, CONTENT),
      M(2000, 5, 3, S, CONTENT), M(3000, 5, 4, S, CONTENT), M(4000, 5, 5, S, CONTENT),
      M(5100, 5, 6, A, MOVED | CONTENT)}},
    {"a failed forward, then silence: dead on time", 5,
     {M(0, 5, 1, A, CONTENT), F(100, S, MOVED), T(2799, S, 0), T(2800, D, MOVED)}},
    {"a second failed forward extends the hold", 5,
     {M(0, 5, 1, A, CONTENT), F(100, S, MOVED), M(1000, 5, 2, S, CONTENT), F(1500, S, 0),
      M(2500, 5, 3, S, CONTENT), M(4500, 5, 4, S, CONTENT), T(5100, S, 0),
      M(6400, 5, 5, S, CONTENT), T(6499, S, 0), T(6500, A, MOVED)}},
    {"a failed forward to a suspect holds it; a restart lifts the hold", 5,
     {M(0, 5, 1, A, CONTENT), T(2000, S, MOVED), F(2100, S, 0), M(2200, 5, 2, S, CONTENT),
      M(2300, 6, 1, A, MOVED | RESTARTED | CONTENT)}},
    {"a failed forward to a dead or left peer changes nothing", 5,
     {T(2800, D, MOVED), F(2900, D, 0), B(3000, 5, L, MOVED), F(3100, L, 0)}},
    {"a slower peer (2 s heartbeat) gets stretched timeouts", 5,
     {M_HB(0, 5, 1, 2000, A, CONTENT), T(3999, A, 0), T(4000, S, MOVED), T(5599, S, 0),
      T(5600, D, MOVED)}},
    {"a faster peer does not shrink them", 5,
     {M_HB(0, 5, 1, 500, A, CONTENT), T(1999, A, 0), T(2000, S, MOVED), T(2800, D, MOVED)}},
    {"a clock that steps back counts as no silence", 5,
     {M(1000, 5, 1, A, CONTENT), T(500, A, 0), T(2999, A, 0), T(3000, S, MOVED)}},
};
// clang-format on

static void apply(agpu_peer_t *p, const step_t *s, agpu_peer_change_t *c)
{
    agpu_msg_t m;
    switch (s->ev) {
    case MSG:
        m = state_msg(s->inc, s->seq, s->hb, s->ep);
        *c = agpu_peer_on_message(p, &m, s->t);
        if (c->what & AGPU_PEER_CONTENT)
            assert_null(m.arena); /* moved into the peer */
        agpu_msg_reset(&m);
        break;
    case BYE:
        m = (agpu_msg_t){.kind = AGPU_MSG_GOODBYE, .id = ID, .incarnation = s->inc};
        *c = agpu_peer_on_goodbye(p, &m, s->t);
        break;
    case MEMBER:
        *c = agpu_peer_on_member(p, &(agpu_msg_member_t){ID, s->ep ? s->ep : EP, s->inc}, s->t);
        break;
    case SUSPECT:
        *c = agpu_peer_mark_suspect(p, s->t);
        break;
    case TICK:
        *c = agpu_peer_tick(p, s->t);
        break;
    }
}

static void test_scenarios(void **unused)
{
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        const scenario_t *sc = &scenarios[i];
        agpu_peer_t *p = agpu_peer_new(ID, EP, sc->inc0, NULL, 0);
        assert_non_null(p);
        for (const step_t *s = sc->steps; s < sc->steps + NSTEPS && s->ev != END; s++) {
            agpu_peer_state_t from = agpu_peer_state(p);
            agpu_peer_change_t c = {0, 0, 0};
            apply(p, s, &c);
            if (c.from != from || c.to != s->to || c.what != s->what || agpu_peer_state(p) != s->to)
                fail_msg("\"%s\", step %td at t=%lld: got %s->%s what=%#x, want %s->%s what=%#x",
                         sc->name, s - sc->steps, (long long)s->t, agpu_peer_state_name(c.from),
                         agpu_peer_state_name(c.to), c.what, agpu_peer_state_name(from),
                         agpu_peer_state_name(s->to), s->what);
            assert_int_equal(!!(c.what & AGPU_PEER_MOVED), c.from != c.to);
        }
        agpu_peer_destroy(&p);
        assert_null(p);
    }
}

/* The promise: a node killed at any moment is dead within 3 s everywhere, and one
 * that keeps its heartbeat is never suspected, whatever the phase of the tick timer. */
static void test_killed_node_dead_within_3s(void **unused)
{
    const agpu_peer_timeouts_t *t = &agpu_peer_timeouts_default;
    const int64_t delay = 30; /* delivery on a busy LAN */
    for (int64_t kill = 10000; kill < 11000; kill += 7) {
        for (int64_t phase = 0; phase < t->tick_ms; phase += 9) {
            agpu_peer_t *p = agpu_peer_new(ID, EP, 1, NULL, 0);
            int64_t sent = 0, dead_at = -1;
            uint64_t seq = 0;
            for (int64_t now = phase; now < kill + 5000 && dead_at < 0; now += t->tick_ms) {
                for (; sent <= now - delay && sent < kill; sent += t->heartbeat_ms) {
                    agpu_msg_t m = state_msg(1, ++seq, 0, NULL);
                    agpu_peer_on_message(p, &m, sent + delay);
                    agpu_msg_reset(&m);
                }
                agpu_peer_change_t c = agpu_peer_tick(p, now);
                if (now < kill)
                    assert_int_equal(c.to, AGPU_PEER_ALIVE);
                if (c.to == AGPU_PEER_DEAD)
                    dead_at = now;
            }
            assert_true(dead_at >= 0 && dead_at - kill <= 3000);
            agpu_peer_destroy(&p);
        }
    }
}

static void test_new_and_accessors(void **unused)
{
    char long_id[AGPU_MSG_ID_MAX + 2], long_ep[AGPU_MSG_ENDPOINT_MAX + 2];
    memset(long_id, 'i', sizeof long_id - 1), long_id[sizeof long_id - 1] = 0;
    memset(long_ep, 'e', sizeof long_ep - 1), long_ep[sizeof long_ep - 1] = 0;
    assert_null(agpu_peer_new("", EP, 1, NULL, 0));
    assert_null(agpu_peer_new(long_id, EP, 1, NULL, 0));
    assert_null(agpu_peer_new(ID, long_ep, 1, NULL, 0));
    long_id[AGPU_MSG_ID_MAX] = 0;
    agpu_peer_t *p = agpu_peer_new(long_id, "", 0, NULL, 42);
    assert_non_null(p);
    assert_string_equal(agpu_peer_id(p), long_id);
    assert_string_equal(agpu_peer_gossip_endpoint(p), "");
    agpu_peer_destroy(&p);

    agpu_peer_timeouts_t fast = agpu_peer_timeouts_default;
    fast.suspect_ms = 1500, fast.dead_ms = 1800;
    p = agpu_peer_new(ID, EP, 3, &fast, 100);
    assert_int_equal(agpu_peer_state(p), AGPU_PEER_ALIVE);
    assert_int_equal(agpu_peer_incarnation(p), 3);
    assert_int_equal(agpu_peer_since(p), 100);
    assert_int_equal(agpu_peer_last_seen(p), 100);
    assert_null(agpu_peer_latest(p));
    assert_string_equal(agpu_peer_name(p), "");
    assert_string_equal(agpu_peer_http_endpoint(p), "");
    agpu_msg_t m = state_msg(3, 1, 0, NULL);
    agpu_peer_on_message(p, &m, 500);
    agpu_msg_reset(&m);
    assert_int_equal(agpu_peer_last_seen(p), 500);
    assert_int_equal(agpu_peer_since(p), 100); /* still in the state it entered at 100 */
    const agpu_msg_state_t *st = agpu_peer_latest(p);
    assert_non_null(st);
    assert_int_equal(st->n_models, 1);
    assert_string_equal(st->models[0].name, "llama3:8b");
    assert_string_equal(agpu_peer_name(p), "box-9");
    assert_string_equal(agpu_peer_http_endpoint(p), "http://10.0.0.9:11435");
    assert_int_equal(agpu_peer_tick(p, 2000).to, AGPU_PEER_SUSPECT); /* its own timeouts */
    assert_int_equal(agpu_peer_since(p), 2000);
    agpu_peer_on_member(p, &(agpu_msg_member_t){ID, EP, 4}, 2100); /* a restart seen */
    assert_null(agpu_peer_latest(p));
    assert_string_equal(agpu_peer_name(p), "box-9"); /* kept for display */
    assert_int_equal(agpu_peer_incarnation(p), 4);
    assert_int_equal(agpu_peer_last_seen(p), 2100);
    agpu_peer_destroy(&p);
    agpu_peer_destroy(&p);
    agpu_peer_destroy(NULL);
}

static void test_timeouts_check(void **unused)
{
    const agpu_peer_timeouts_t d = agpu_peer_timeouts_default;
    assert_int_equal(agpu_peer_timeouts_check(&d), 0);
    agpu_peer_timeouts_t t;
#define BAD(field, value)                                                                          \
    do {                                                                                           \
        t = d;                                                                                     \
        t.field = value;                                                                           \
        assert_int_equal(agpu_peer_timeouts_check(&t), -1);                                        \
    } while (0)
    BAD(debounce_ms, 0);
    BAD(debounce_ms, d.heartbeat_ms);
    BAD(tick_ms, 0);
    BAD(tick_ms, d.heartbeat_ms + 1);
    BAD(heartbeat_ms, d.suspect_ms);
    BAD(suspect_ms, d.dead_ms);
    BAD(dead_ms, d.forget_ms);
    BAD(forward_hold_ms, -1);
#undef BAD
    /* The default promise holds by construction. */
    assert_true(d.dead_ms + d.tick_ms < 3000);
    assert_true(d.suspect_ms >= 2 * d.heartbeat_ms);
}

static void test_next_beat(void **unused)
{
    static const struct {
        int64_t now, wall, heartbeat, due;
    } cases[] = {
        {1000, 5000, 1000, 2000},    /* on a multiple: the next one */
        {1000, 5300, 1000, 1700},    /* mid-way: the coming multiple */
        {1000, 5499, 1000, 1501},    /* half a beat or more away: that one */
        {1000, 5501, 1000, 2499},    /* less than half: the one after */
        {1000, 5999, 1000, 2001},    /* a hair short of a multiple: not 1 ms later */
        {0, 1234567, 1500, 1433},    /* other heartbeats: multiples of themselves */
        {7, 0, 3, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        assert_int_equal(agpu_peer_next_beat(cases[i].now, cases[i].wall, cases[i].heartbeat),
                         cases[i].due);
    /* beats stay a heartbeat apart, whatever the offset between the clocks */
    for (int64_t offset = 0; offset < 1000; offset += 37) {
        int64_t now = 0, previous = 0;
        for (int beat = 0; beat < 20; beat++) {
            now = agpu_peer_next_beat(now, now + offset, 1000);
            if (beat > 0)
                assert_int_equal(now - previous, 1000);
            assert_int_equal((now + offset) % 1000, 0);
            previous = now;
        }
    }
    (void)unused;
}

static void test_state_names(void **unused)
{
    assert_string_equal(agpu_peer_state_name(AGPU_PEER_ALIVE), "alive");
    assert_string_equal(agpu_peer_state_name(AGPU_PEER_SUSPECT), "suspect");
    assert_string_equal(agpu_peer_state_name(AGPU_PEER_DEAD), "dead");
    assert_string_equal(agpu_peer_state_name(AGPU_PEER_LEFT), "left");
    assert_string_equal(agpu_peer_state_name((agpu_peer_state_t)AGPU_PEER_NSTATES), "unknown");
    assert_string_equal(agpu_peer_state_name((agpu_peer_state_t)-1), "unknown");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scenarios),         cmocka_unit_test(test_killed_node_dead_within_3s),
        cmocka_unit_test(test_new_and_accessors), cmocka_unit_test(test_timeouts_check),
        cmocka_unit_test(test_next_beat),         cmocka_unit_test(test_state_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
