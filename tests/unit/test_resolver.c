/* Unit tests of agpu_resolver: IP literals at once, names by the resolver's thread (here a
 * fake lookup the test holds, fails or changes), the cache's freshness and its bound, and the
 * wake-ups of those who wait. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "agpu_resolver.h"

/* How long a test waits for the resolver's thread before failing. */
#define WAIT_MS 5000

/* ---- the fake lookup: answers fake.address, or fails; waits while fake.held ---- */

static struct {
    pthread_mutex_t lock;
    pthread_cond_t changed;
    bool held, fail;
    const char *address;
    int calls, wakes, other_wakes;
} fake = {.lock = PTHREAD_MUTEX_INITIALIZER, .changed = PTHREAD_COND_INITIALIZER};

static int fake_resolve(const char *host, const char *port, agpu_addresses_t *out,
                        char *reason, size_t reason_size)
{
    pthread_mutex_lock(&fake.lock);
    fake.calls++;
    pthread_cond_broadcast(&fake.changed);
    while (fake.held)
        pthread_cond_wait(&fake.changed, &fake.lock);
    bool fail = fake.fail;
    const char *address = fake.address;
    pthread_mutex_unlock(&fake.lock);
    if (fail) {
        snprintf(reason, reason_size, "cannot resolve %s: fake failure", host);
        return -1;
    }
    struct sockaddr_in *in = (struct sockaddr_in *)&out->items[0].addr;
    memset(in, 0, sizeof *in);
    in->sin_family = AF_INET;
    in->sin_port = htons((uint16_t)atoi(port));
    inet_pton(AF_INET, address, &in->sin_addr);
    out->items[0].len = sizeof *in;
    out->count = 1;
    return 0;
}

static void on_wake(void *arg)
{
    pthread_mutex_lock(&fake.lock);
    if (arg == &fake.wakes)
        fake.wakes++;
    else
        fake.other_wakes++;
    pthread_cond_broadcast(&fake.changed);
    pthread_mutex_unlock(&fake.lock);
}

/* Waits until *counter reaches at least n; false after WAIT_MS. */
static bool wait_for(int *counter, int n)
{
    struct timespec due;
    clock_gettime(CLOCK_REALTIME, &due);
    due.tv_sec += WAIT_MS / 1000;
    pthread_mutex_lock(&fake.lock);
    int rc = 0;
    while (*counter < n && rc == 0)
        rc = pthread_cond_timedwait(&fake.changed, &fake.lock, &due);
    bool reached = *counter >= n;
    pthread_mutex_unlock(&fake.lock);
    return reached;
}

static void set_fake(bool held, bool fail, const char *address)
{
    pthread_mutex_lock(&fake.lock);
    fake.held = held;
    fake.fail = fail;
    fake.address = address;
    pthread_cond_broadcast(&fake.changed);
    pthread_mutex_unlock(&fake.lock);
}

static agpu_resolver_t *new_resolver(int64_t fresh_ms, int64_t failed_ms)
{
    set_fake(false, false, "127.0.0.5");
    fake.calls = fake.wakes = fake.other_wakes = 0;
    agpu_resolver_options_t options = {fake_resolve, fresh_ms, failed_ms};
    agpu_resolver_t *r = agpu_resolver_new(&options);
    assert_non_null(r);
    assert_true(agpu_resolver_subscribe(r, on_wake, &fake.wakes));
    return r;
}

static void assert_ipv4(const agpu_addresses_t *a, const char *text, unsigned port)
{
    assert_int_equal(a->count, 1);
    const struct sockaddr_in *in = (const struct sockaddr_in *)&a->items[0].addr;
    assert_int_equal(in->sin_family, AF_INET);
    assert_int_equal(ntohs(in->sin_port), port);
    char got[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &in->sin_addr, got, sizeof got);
    assert_string_equal(got, text);
}

/* ---- tests ---- */

static void test_ip_literals_are_read_at_once(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, "127.0.0.1", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.1", 11434);
    assert_int_equal(agpu_resolver_lookup(r, "::1", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_int_equal(a.count, 1);
    assert_int_equal(a.items[0].addr.ss_family, AF_INET6);
    assert_int_equal(agpu_resolver_numeric("::1", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_int_equal(agpu_resolver_numeric("ollama.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_FAILED);
    assert_int_equal(fake.calls, 0); /* no lookup at all */
    agpu_resolver_destroy(&r);
    assert_null(r);
}

static void test_name_is_looked_up_by_the_thread_once(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    set_fake(true, false, "127.0.0.5");
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, "ollama.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.calls, 1));
    /* asked again while the lookup runs: still pending, and no second lookup */
    assert_int_equal(agpu_resolver_lookup(r, "ollama.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    set_fake(false, false, "127.0.0.5");
    assert_true(wait_for(&fake.wakes, 1));
    assert_int_equal(agpu_resolver_lookup(r, "ollama.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.5", 11434);
    /* another port of the same host is its own entry */
    assert_int_equal(agpu_resolver_lookup(r, "ollama.lan", "8080", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 2));
    assert_int_equal(agpu_resolver_lookup(r, "ollama.lan", "8080", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.5", 8080);
    assert_int_equal(fake.calls, 2);
    agpu_resolver_destroy(&r);
}

static void test_failed_name_is_remembered_for_a_while(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    set_fake(false, true, NULL);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX] = "";
    assert_int_equal(agpu_resolver_lookup(r, "gone.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 1));
    assert_int_equal(agpu_resolver_lookup(r, "gone.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_FAILED);
    assert_string_equal(reason, "cannot resolve gone.lan: fake failure");
    assert_int_equal(agpu_resolver_lookup(r, "gone.lan", "11434", &a, reason, sizeof reason),
                     AGPU_RESOLVE_FAILED);
    assert_int_equal(fake.calls, 1);
    agpu_resolver_destroy(&r);
}

static void test_failed_name_is_asked_again_later(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 0);
    set_fake(false, true, NULL);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, "late.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 1));
    set_fake(false, false, "127.0.0.9"); /* the name exists now */
    assert_int_equal(agpu_resolver_lookup(r, "late.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 2));
    assert_int_equal(agpu_resolver_lookup(r, "late.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.9", 80);
    agpu_resolver_destroy(&r);
}

static void test_stale_name_is_served_while_looked_up_again(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(0, 60000); /* every answer is stale at once */
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, "moving.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 1));
    set_fake(true, false, "127.0.0.7"); /* it moved; hold the new lookup */
    assert_int_equal(agpu_resolver_lookup(r, "moving.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.5", 80); /* the old answer, without waiting */
    assert_true(wait_for(&fake.calls, 2));
    set_fake(false, false, "127.0.0.7");
    assert_true(wait_for(&fake.wakes, 2));
    set_fake(false, true, NULL); /* from now on the name server fails */
    assert_int_equal(agpu_resolver_lookup(r, "moving.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.7", 80);
    assert_true(wait_for(&fake.wakes, 3));
    /* a failed refresh keeps the last addresses */
    assert_int_equal(agpu_resolver_lookup(r, "moving.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_ipv4(&a, "127.0.0.7", 80);
    agpu_resolver_destroy(&r);
}

static void test_unsubscribed_waiter_is_not_woken(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    assert_true(agpu_resolver_subscribe(r, on_wake, &fake.other_wakes));
    agpu_resolver_unsubscribe(r, &fake.other_wakes);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, "one.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    assert_true(wait_for(&fake.wakes, 1));
    assert_int_equal(fake.other_wakes, 0);
    agpu_resolver_destroy(&r);
}

static void test_cache_keeps_the_most_recently_used_names(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX], host[32];
    for (int i = 0; i <= AGPU_RESOLVER_MAX_NAMES; i++) {
        snprintf(host, sizeof host, "node%d.lan", i);
        assert_int_equal(agpu_resolver_lookup(r, host, "80", &a, reason, sizeof reason),
                         AGPU_RESOLVE_PENDING);
        assert_true(wait_for(&fake.wakes, i + 1));
        if (i == 0)
            continue;
        /* node0 is asked for all along: node1, used once, is the one that makes room */
        assert_int_equal(agpu_resolver_lookup(r, "node0.lan", "80", &a, reason, sizeof reason),
                         AGPU_RESOLVE_DONE);
    }
    assert_int_equal(fake.calls, AGPU_RESOLVER_MAX_NAMES + 1);
    assert_int_equal(agpu_resolver_lookup(r, "node2.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_DONE);
    assert_int_equal(agpu_resolver_lookup(r, "node1.lan", "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_PENDING);
    agpu_resolver_destroy(&r);
}

static void test_long_name_fails_at_once(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    char host[300];
    memset(host, 'a', sizeof host - 1);
    host[sizeof host - 1] = '\0';
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    assert_int_equal(agpu_resolver_lookup(r, host, "80", &a, reason, sizeof reason),
                     AGPU_RESOLVE_FAILED);
    assert_non_null(strstr(reason, "name too long"));
    agpu_resolver_destroy(&r);
}

static void test_destroy_while_a_lookup_is_queued(void **state)
{
    (void)state;
    agpu_resolver_t *r = new_resolver(60000, 60000);
    agpu_addresses_t a;
    char reason[AGPU_RESOLVER_REASON_MAX];
    for (int i = 0; i < 8; i++) {
        char host[32];
        snprintf(host, sizeof host, "queued%d.lan", i);
        agpu_resolver_lookup(r, host, "80", &a, reason, sizeof reason);
    }
    agpu_resolver_destroy(&r); /* joins after at most the lookup under way; frees all */
    assert_null(r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ip_literals_are_read_at_once),
        cmocka_unit_test(test_name_is_looked_up_by_the_thread_once),
        cmocka_unit_test(test_failed_name_is_remembered_for_a_while),
        cmocka_unit_test(test_failed_name_is_asked_again_later),
        cmocka_unit_test(test_stale_name_is_served_while_looked_up_again),
        cmocka_unit_test(test_unsubscribed_waiter_is_not_woken),
        cmocka_unit_test(test_cache_keeps_the_most_recently_used_names),
        cmocka_unit_test(test_long_name_fails_at_once),
        cmocka_unit_test(test_destroy_while_a_lookup_is_queued),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
