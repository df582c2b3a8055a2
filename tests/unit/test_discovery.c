/* Unit tests of agpu_discovery against a real, private avahi-daemon (tests/lib/avahi-lo.sh). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "agpu_discovery.h"

/*
 * Run as root with avahi-daemon, avahi-utils and dbus installed, the tests start their own
 * dbus-daemon + avahi-daemon pair in a temporary directory (nothing else on the machine is
 * touched; mDNS stays on a lo of its own) and point DBUS_SYSTEM_BUS_ADDRESS at it. Otherwise
 * the tests that need it are skipped. AGPU_TEST_AVAHI=0 skips them always; AGPU_TEST_AVAHI=1
 * fails instead of skipping when they cannot run. AGPU_AVAHI_LO overrides the script's path
 * (default: AGPU_TEST_LIBDIR, set at build time, else $srcdir/tests/lib).
 */

#define WAIT_FOUND_MS 10000 /* a first sighting: probing takes ~1 s, a reconnect up to 4 s */
#define WAIT_LOST_MS 5000   /* a goodbye travels at once on lo */
#define QUIET_MS 1000       /* how long "nothing happens" is watched */

static struct {
    bool ready; /* the pair can run here */
    char dir[64];
    char script[1024];
    char addr[128];
    int seq;
} env;

/* ---- recording events ---- */

typedef struct {
    agpu_discovery_kind_t kind;
    char id[AGPU_MSG_ID_MAX + 1];
    char name[AGPU_NAME_MAX];
    char address[AGPU_DISCOVERY_ADDRESS_MAX];
    uint16_t http_port, gossip_port;
    unsigned proto;
} rec_t;

typedef struct {
    pthread_mutex_t lock;
    char self_id[AGPU_MSG_ID_MAX + 1];
    bool saw_self;
    size_t count;
    rec_t events[256];
} recorder_t;

static void on_event(const agpu_discovery_event_t *e, void *arg)
{
    recorder_t *r = arg;
    pthread_mutex_lock(&r->lock);
    if (strcmp(e->id, r->self_id) == 0)
        r->saw_self = true;
    if (r->count < sizeof r->events / sizeof r->events[0]) {
        rec_t *x = &r->events[r->count++];
        x->kind = e->kind;
        snprintf(x->id, sizeof x->id, "%s", e->id);
        snprintf(x->name, sizeof x->name, "%s", e->name);
        snprintf(x->address, sizeof x->address, "%s", e->address);
        x->http_port = e->http_port;
        x->gossip_port = e->gossip_port;
        x->proto = e->proto;
    }
    pthread_mutex_unlock(&r->lock);
}

static void sleep_ms(long ms)
{
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&t, &t) != 0)
        ;
}

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000L + t.tv_nsec / 1000000L;
}

/* Waits for an event of `kind` about `id` at index >= *from; copies it, moves *from past it. */
static bool wait_event(recorder_t *r, agpu_discovery_kind_t kind, const char *id, size_t *from,
                       long timeout_ms, rec_t *out)
{
    long deadline = now_ms() + timeout_ms;
    for (;;) {
        pthread_mutex_lock(&r->lock);
        for (size_t i = *from; i < r->count; i++) {
            if (r->events[i].kind == kind && strcmp(r->events[i].id, id) == 0) {
                if (out)
                    *out = r->events[i];
                *from = i + 1;
                pthread_mutex_unlock(&r->lock);
                return true;
            }
        }
        pthread_mutex_unlock(&r->lock);
        if (now_ms() >= deadline)
            return false;
        sleep_ms(20);
    }
}

static size_t event_count(recorder_t *r)
{
    pthread_mutex_lock(&r->lock);
    size_t n = r->count;
    pthread_mutex_unlock(&r->lock);
    return n;
}

/* ---- one node under test ---- */

typedef struct {
    recorder_t rec;
    char id[AGPU_MSG_ID_MAX + 1];
    agpu_discovery_self_t self;
    agpu_discovery_t *disc;
} node_t;

/* Asserts nothing (stderr may be redirected): the caller checks n->disc. */
static node_t *node_start(const char *name, uint16_t http, uint16_t gossip)
{
    node_t *n = calloc(1, sizeof *n);
    if (!n)
        abort();
    pthread_mutex_init(&n->rec.lock, NULL);
    snprintf(n->id, sizeof n->id, "test-%d-%d", (int)getpid(), ++env.seq);
    snprintf(n->rec.self_id, sizeof n->rec.self_id, "%s", n->id);
    n->self = (agpu_discovery_self_t){
        .id = n->id, .name = name, .http_port = http, .gossip_port = gossip, .proto = 1};
    n->disc = agpu_discovery_new(&n->self, on_event, &n->rec);
    return n;
}

static node_t *node_new(const char *name, uint16_t http, uint16_t gossip)
{
    node_t *n = node_start(name, http, gossip);
    assert_non_null(n->disc);
    return n;
}

static void node_destroy(node_t **np)
{
    node_t *n = *np;
    if (!n)
        return;
    agpu_discovery_destroy(&n->disc);
    assert_null(n->disc);
    assert_false(n->rec.saw_self);
    pthread_mutex_destroy(&n->rec.lock);
    free(n);
    *np = NULL;
}

/* a sees b FOUND with b's details, on 127.0.0.1. */
static void expect_found(node_t *a, node_t *b, size_t *from, const char *name)
{
    rec_t e;
    if (!wait_event(&a->rec, AGPU_DISCOVERY_FOUND, b->id, from, WAIT_FOUND_MS, &e))
        fail_msg("%s never saw %s FOUND", a->id, b->id);
    assert_string_equal(e.address, "127.0.0.1");
    assert_string_equal(e.name, name);
    assert_int_equal(e.http_port, b->self.http_port);
    assert_int_equal(e.gossip_port, b->self.gossip_port);
    assert_int_equal(e.proto, 1);
}

static void expect_lost(node_t *a, const char *id, size_t *from)
{
    long t0 = now_ms();
    if (!wait_event(&a->rec, AGPU_DISCOVERY_LOST, id, from, WAIT_LOST_MS, NULL))
        fail_msg("%s never saw %s LOST", a->id, id);
    print_message("      LOST after %ld ms\n", now_ms() - t0);
}

/* ---- the daemon pair ---- */

static int pair(const char *cmd)
{
    char line[1200];
    snprintf(line, sizeof line, "'%s' %s '%s' >/dev/null", env.script, cmd, env.dir);
    return system(line);
}

static void need_daemon(bool running)
{
    if (!env.ready)
        skip();
    assert_int_equal(pair(running ? "start" : "stop"), 0);
}

/* Kills avahi-daemon alone: the bus stays, clients wait on it for the daemon's return. */
static void kill_avahi(void)
{
    char path[128];
    snprintf(path, sizeof path, "%s/run/avahi-daemon/pid", env.dir);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int pid = 0;
    assert_int_equal(fscanf(f, "%d", &pid), 1);
    fclose(f);
    assert_true(pid > 1);
    assert_int_equal(kill(pid, SIGTERM), 0);
}

/* avahi-publish SERVICE-NAME PORT TXT... in the background; returns its PID. */
static pid_t publish_external(const char *name, const char *port, const char *txt1,
                              const char *txt2, const char *txt3)
{
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        int null = open("/dev/null", O_WRONLY);
        dup2(null, 1);
        dup2(null, 2);
        execlp("avahi-publish", "avahi-publish", "-s", name, AGPU_DISCOVERY_SERVICE_TYPE, port,
               txt1, txt2, txt3, (char *)NULL);
        _exit(127);
    }
    return pid;
}

/* ---- tests ---- */

static void test_rejects_invalid_self(void **state)
{
    (void)state;
    recorder_t r = {.lock = PTHREAD_MUTEX_INITIALIZER};
    const agpu_discovery_self_t bad[] = {
        {.id = NULL, .name = "x", .http_port = 1, .gossip_port = 2},
        {.id = "", .name = "x", .http_port = 1, .gossip_port = 2},
        {.id = "has space", .name = "x", .http_port = 1, .gossip_port = 2},
        {.id = "ok", .name = "bad\nname", .http_port = 1, .gossip_port = 2},
        {.id = "ok", .name = "bad \xff utf8", .http_port = 1, .gossip_port = 2},
        {.id = "ok", .name = "x", .http_port = 0, .gossip_port = 2},
        {.id = "ok", .name = "x", .http_port = 1, .gossip_port = 0},
        {.id = "0123456789012345678901234567890123456789012345678901234567890123456789",
         .name = "x",
         .http_port = 1,
         .gossip_port = 2},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        agpu_discovery_t *d = agpu_discovery_new(&bad[i], on_event, &r);
        if (d)
            fail_msg("case %zu accepted", i);
    }
    agpu_discovery_destroy(NULL);
}

/* No daemon (its socket does not exist): new() works, says so once, and finds peers once the
 * daemon starts. */
static void test_starts_without_daemon_and_logs_once(void **state)
{
    (void)state;
    need_daemon(false);
    char logpath[128];
    snprintf(logpath, sizeof logpath, "%s/stderr.log", env.dir);
    int saved = dup(2), fd = open(logpath, O_CREAT | O_TRUNC | O_WRONLY, 0600);
    assert_true(saved >= 0 && fd >= 0);
    dup2(fd, 2);
    node_t *a = node_start("alpha", 18080, 18081);
    node_t *b = node_start("beta", 18090, 18091);
    sleep_ms(1200); /* the first try and one retry (after 1 s) */
    dup2(saved, 2);
    close(saved);
    close(fd);
    assert_non_null(a->disc);
    assert_non_null(b->disc);
    FILE *f = fopen(logpath, "r");
    assert_non_null(f);
    char line[1100];
    int said = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, "mDNS unavailable"))
            said++;
    fclose(f);
    assert_int_equal(said, 2); /* once per node */
    assert_int_equal(event_count(&a->rec), 0);

    long t0 = now_ms();
    assert_int_equal(pair("start"), 0);
    size_t ia = 0, ib = 0;
    expect_found(a, b, &ia, "beta");
    expect_found(b, a, &ib, "alpha");
    print_message("      found each other %ld ms after the daemon started\n", now_ms() - t0);
    node_destroy(&a);
    node_destroy(&b);
}

/* Two nodes with one name both publish (one as "agpu on twin #2"); a destroyed one is LOST. */
static void test_same_name_and_destroy_reports_lost(void **state)
{
    (void)state;
    need_daemon(true);
    node_t *a = node_new("twin", 18100, 18101);
    node_t *b = node_new("twin", 18110, 18111);
    size_t ia = 0, ib = 0;
    expect_found(a, b, &ia, "twin");
    expect_found(b, a, &ib, "twin");
    char b_id[sizeof b->id];
    memcpy(b_id, b->id, sizeof b_id);
    node_destroy(&b);
    expect_lost(a, b_id, &ia);
    node_destroy(&a);
}

static void test_update_propagates(void **state)
{
    (void)state;
    need_daemon(true);
    node_t *a = node_new("epsilon", 18120, 18121);
    node_t *b = node_new("zeta", 18130, 18131);
    size_t ia = 0;
    expect_found(a, b, &ia, "zeta");

    long t0 = now_ms();
    b->self.gossip_port = 18139; /* TXT only: updated in place */
    assert_int_equal(agpu_discovery_update(b->disc, &b->self), 0);
    expect_found(a, b, &ia, "zeta");
    print_message("      new TXT seen after %ld ms\n", now_ms() - t0);

    b->self.name = "zeta-renamed"; /* instance name: registered again */
    b->self.http_port = 18138;
    t0 = now_ms();
    assert_int_equal(agpu_discovery_update(b->disc, &b->self), 0);
    expect_found(a, b, &ia, "zeta-renamed");
    print_message("      new name seen after %ld ms\n", now_ms() - t0);

    agpu_discovery_self_t other = b->self;
    other.id = "another-id";
    assert_int_equal(agpu_discovery_update(b->disc, &other), -1);
    node_destroy(&a);
    node_destroy(&b);
}

/* Services that break the TXT rules are not peers; a well-formed one from another publisher is. */
static void test_ignores_bad_txt(void **state)
{
    (void)state;
    need_daemon(true);
    node_t *a = node_new("eta", 18160, 18161);
    char good_id[64];
    snprintf(good_id, sizeof good_id, "id=ext-good-%d", (int)getpid());
    pid_t pubs[] = {
        publish_external("bad no gossip", "18170", "id=bad-1", "proto=1", "name=x"),
        publish_external("bad id", "18171", "id=bad 2", "gossip=1", "proto=1"),
        publish_external("bad gossip", "18172", "id=bad-3", "gossip=70000", "proto=1"),
        publish_external("bad proto", "18173", "id=bad-4", "gossip=1", "proto=1x"),
        publish_external("good one", "18174", good_id, "gossip=18175", "proto=1"),
    };
    size_t ia = 0;
    rec_t e;
    assert_true(wait_event(&a->rec, AGPU_DISCOVERY_FOUND, good_id + 3, &ia, WAIT_FOUND_MS, &e));
    assert_string_equal(e.address, "127.0.0.1");
    assert_int_equal(e.http_port, 18174);
    assert_int_equal(e.gossip_port, 18175);
    assert_string_equal(e.name, "");
    sleep_ms(500);
    pthread_mutex_lock(&a->rec.lock);
    for (size_t i = 0; i < a->rec.count; i++)
        if (strncmp(a->rec.events[i].id, "bad", 3) == 0)
            fail_msg("reported %s", a->rec.events[i].id);
    pthread_mutex_unlock(&a->rec.lock);
    for (size_t i = 0; i < sizeof pubs / sizeof pubs[0]; i++) {
        kill(pubs[i], SIGTERM);
        waitpid(pubs[i], NULL, 0);
    }
    assert_true(wait_event(&a->rec, AGPU_DISCOVERY_LOST, good_id + 3, &ia, WAIT_LOST_MS, NULL));
    node_destroy(&a);
}

static void restart_case(bool whole_pair)
{
    need_daemon(true);
    node_t *a = node_new("theta", 18180, 18181);
    node_t *b = node_new("iota", 18190, 18191);
    size_t ia = 0, ib = 0;
    expect_found(a, b, &ia, "iota");
    expect_found(b, a, &ib, "theta");
    if (whole_pair)
        assert_int_equal(pair("stop"), 0);
    else
        kill_avahi();
    expect_lost(a, b->id, &ia);
    expect_lost(b, a->id, &ib);
    if (!whole_pair) { /* down is down: nothing found meanwhile */
        size_t before = event_count(&a->rec);
        sleep_ms(QUIET_MS);
        assert_int_equal(event_count(&a->rec), before);
    }
    long t0 = now_ms();
    assert_int_equal(pair("start"), 0);
    expect_found(a, b, &ia, "iota");
    expect_found(b, a, &ib, "theta");
    print_message("      found again %ld ms after the restart\n", now_ms() - t0);
    node_destroy(&a);
    node_destroy(&b);
}

static void test_survives_avahi_restart(void **state)
{
    (void)state;
    restart_case(false);
}

static void test_survives_dbus_and_avahi_restart(void **state)
{
    (void)state;
    restart_case(true);
}

/* ---- setup ---- */

static bool on_path(const char *prog)
{
    char cmd[256];
    snprintf(cmd, sizeof cmd, "command -v %s >/dev/null 2>&1", prog);
    return system(cmd) == 0;
}

static bool find_script(void)
{
    const char *explicit_path = getenv("AGPU_AVAHI_LO"), *srcdir = getenv("srcdir");
    if (explicit_path)
        snprintf(env.script, sizeof env.script, "%s", explicit_path);
#ifdef AGPU_TEST_LIBDIR
    else if (access(AGPU_TEST_LIBDIR "/avahi-lo.sh", X_OK) == 0)
        snprintf(env.script, sizeof env.script, "%s", AGPU_TEST_LIBDIR "/avahi-lo.sh");
#endif
    else
        snprintf(env.script, sizeof env.script, "%s/tests/lib/avahi-lo.sh", srcdir ? srcdir : ".");
    return access(env.script, X_OK) == 0;
}

static int group_setup(void **state)
{
    (void)state;
    const char *want = getenv("AGPU_TEST_AVAHI");
    const char *why = NULL;
    if (want && strcmp(want, "0") == 0)
        why = "AGPU_TEST_AVAHI=0";
    else if (geteuid() != 0)
        why = "not root (the tests start their own dbus-daemon and avahi-daemon)";
    else if (!on_path("avahi-daemon") || !on_path("dbus-daemon") || !on_path("avahi-publish"))
        why = "avahi-daemon, dbus-daemon or avahi-publish missing (apt-get install avahi-daemon "
              "avahi-utils dbus)";
    else if (!find_script())
        why = "tests/lib/avahi-lo.sh not found (set AGPU_AVAHI_LO)";
    if (why) {
        print_message("mDNS tests skipped: %s\n", why);
        return want && strcmp(want, "1") == 0 ? -1 : 0;
    }
    snprintf(env.dir, sizeof env.dir, "/tmp/agpu-test-discovery-XXXXXX");
    if (!mkdtemp(env.dir))
        return -1;
    /* Before anything connects to D-Bus: libdbus reads the address once per process. */
    snprintf(env.addr, sizeof env.addr, "unix:path=%s/run/dbus/system_bus_socket", env.dir);
    setenv("DBUS_SYSTEM_BUS_ADDRESS", env.addr, 1);
    env.ready = true;
    return 0;
}

static int group_teardown(void **state)
{
    (void)state;
    if (!env.ready)
        return 0;
    int rc = pair("stop");
    char cmd[200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", env.dir);
    if (system(cmd) != 0)
        rc = -1;
    return rc == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rejects_invalid_self),
        cmocka_unit_test(test_starts_without_daemon_and_logs_once),
        cmocka_unit_test(test_same_name_and_destroy_reports_lost),
        cmocka_unit_test(test_update_propagates),
        cmocka_unit_test(test_ignores_bad_txt),
        cmocka_unit_test(test_survives_avahi_restart),
        cmocka_unit_test(test_survives_dbus_and_avahi_restart),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
