/* Unit tests of agpu_exchange: the flow rules between the front door and the forwarder, driven
 * through fake ops that count each suspend, resume and kick. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agpu_exchange.h"
#include "agpu_limits.h"

/* ---- fake sides ---- */

typedef struct {
    int suspends, resumes, kicks;
    agpu_exchange_t *kicked;
    void (*on_kick)(agpu_exchange_t *ex); /* run inside the kick, as a stopping forwarder */
    agpu_exchange_flow_t flow_seen;       /* what on_kick saw */
} fake_t;

static fake_t front, forwarder;

static void fake_suspend(void *p)
{
    ((fake_t *)p)->suspends++;
}

static void fake_resume(void *p)
{
    ((fake_t *)p)->resumes++;
}

static void fake_kick(void *p, agpu_exchange_t *ex)
{
    fake_t *f = p;
    f->kicks++;
    f->kicked = ex;
    if (f->on_kick)
        f->on_kick(ex);
}

static const agpu_exchange_ops_t ops = {fake_suspend, fake_resume, fake_kick};

static const char *const request_headers[] = {"Content-Type: application/json",
                                              "Authorization: Bearer x"};

static agpu_request_t default_request(void)
{
    agpu_request_t r = {.method = "POST",
                        .url = "http://127.0.0.1:11434/api/chat",
                        .headers = request_headers,
                        .header_count = 2,
                        .has_body = true,
                        .body_length = -1};
    return r;
}

static int setup(void **state)
{
    memset(&front, 0, sizeof front);
    memset(&forwarder, 0, sizeof forwarder);
    agpu_request_t r = default_request();
    agpu_exchange_t *ex = agpu_exchange_new(&r, &ops, &front, &forwarder);
    assert_non_null(ex);
    *state = ex;
    return 0;
}

static int teardown(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_unref(&ex);
    return 0;
}

/* ---- helpers ---- */

static char chunk[64 * 1024];

/* Pushes 64 KiB chunks until the pipe refuses one; returns the bytes taken. */
static size_t fill_request_pipe(agpu_exchange_t *ex)
{
    size_t taken = 0;
    for (;;) {
        agpu_push_t r = agpu_exchange_push_body(ex, chunk, sizeof chunk);
        if (r != AGPU_PUSH_TAKEN) {
            assert_int_equal(r, AGPU_PUSH_WAIT);
            return taken;
        }
        taken += sizeof chunk;
        assert_true(taken <= AGPU_PIPE_SOFT_CAP);
    }
}

/* Offers 64 KiB chunks of response until one is refused; returns the bytes taken. */
static size_t fill_response_pipe(agpu_exchange_t *ex)
{
    size_t taken = 0;
    while (agpu_exchange_take_response(ex, chunk, sizeof chunk)) {
        taken += sizeof chunk;
        assert_true(taken <= AGPU_PIPE_SOFT_CAP);
    }
    return taken;
}

static void add_header(agpu_exchange_t *ex, const char *name, const char *value)
{
    agpu_exchange_add_header(ex, name, strlen(name), value, strlen(value));
}

/* The upstream answers status with this Content-Type (NULL: none) and Content-Length. */
static void answer(agpu_exchange_t *ex, int status, const char *type, const char *length)
{
    agpu_exchange_set_status(ex, status);
    if (type)
        add_header(ex, "Content-Type", type);
    if (length)
        add_header(ex, "Content-Length", length);
    agpu_exchange_head_done(ex);
}

static agpu_response_head_t ready_head(agpu_exchange_t *ex)
{
    agpu_response_head_t head;
    memset(&head, 0, sizeof head);
    char error[64];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_READY);
    return head;
}

/* The value of a kept response header, or NULL. */
static const char *head_value(const agpu_response_head_t *head, const char *name)
{
    for (size_t i = 0; i < head->count; i++)
        if (strcmp(head->names[i], name) == 0)
            return head->values[i];
    return NULL;
}

/* Reads one response result into buf (NUL-terminated when bytes came). */
static long read_into(agpu_exchange_t *ex, char *buf, size_t max)
{
    long n = agpu_exchange_read_response(ex, buf, max - 1);
    if (n > 0)
        buf[n] = '\0';
    return n;
}

/* ---- lifetime and the request ---- */

static void test_new_copies_request(void **state)
{
    char method[] = "POST", url[] = "http://h:1/api/generate?x=1", h0[] = "X-A: 1";
    const char *headers[] = {h0};
    agpu_request_t r = {method, url, headers, 1, true, 42};
    agpu_exchange_t *ex = agpu_exchange_new(&r, &ops, &front, &forwarder);
    assert_non_null(ex);
    method[0] = url[0] = h0[0] = '#';
    const agpu_request_t *got = agpu_exchange_request(ex);
    assert_string_equal(got->method, "POST");
    assert_string_equal(got->url, "http://h:1/api/generate?x=1");
    assert_int_equal(got->header_count, 1);
    assert_string_equal(got->headers[0], "X-A: 1");
    assert_true(got->has_body);
    assert_int_equal(got->body_length, 42);
    agpu_exchange_unref(&ex);
    assert_null(ex);
}

static void test_new_without_headers(void **state)
{
    agpu_request_t r = {"GET", "http://h:1/api/tags", NULL, 0, false, 0};
    agpu_exchange_t *ex = agpu_exchange_new(&r, &ops, &front, &forwarder);
    assert_non_null(ex);
    assert_int_equal(agpu_exchange_request(ex)->header_count, 0);
    assert_false(agpu_exchange_request(ex)->has_body);
    agpu_exchange_unref(&ex);
}

static void test_new_fails_without_method_or_url(void **state)
{
    agpu_request_t r = default_request();
    r.url = NULL;
    assert_null(agpu_exchange_new(&r, &ops, &front, &forwarder));
    r = default_request();
    r.method = NULL;
    assert_null(agpu_exchange_new(&r, &ops, &front, &forwarder));
}

static void test_unref_null_is_harmless(void **state)
{
    agpu_exchange_t *ex = NULL;
    agpu_exchange_unref(&ex);
    assert_null(ex);
}

static void test_forwarder_ref_outlives_front(void **state)
{
    agpu_exchange_t *ex = *state, *fwd_ref = ex;
    agpu_exchange_ref(fwd_ref);
    agpu_exchange_unref((agpu_exchange_t **)state); /* the front lets go */
    assert_null(*state);
    /* the forwarder still drives it */
    answer(fwd_ref, 200, "application/x-ndjson", NULL);
    assert_true(agpu_exchange_take_response(fwd_ref, "x\n", 2));
    agpu_exchange_finish(fwd_ref, NULL);
    assert_true(agpu_exchange_flow(fwd_ref).finished);
    agpu_exchange_unref(&fwd_ref);
    assert_null(fwd_ref);
}

static void test_unref_frees_buffered_data(void **state)
{
    /* both pipes and the kept headers hold memory when the last reference goes */
    agpu_exchange_t *ex = *state;
    assert_int_equal(agpu_exchange_push_body(ex, "body", 4), AGPU_PUSH_TAKEN);
    add_header(ex, "X-One", "1");
    add_header(ex, "Content-Type", "application/x-ndjson");
    agpu_exchange_head_done(ex);
    assert_true(agpu_exchange_take_response(ex, "resp", 4));
    agpu_exchange_ref(ex);
    agpu_exchange_unref(&ex);
    /* teardown drops the last reference: valgrind and ASan check nothing leaks */
}

static void test_transfer_round_trip(void **state)
{
    agpu_exchange_t *ex = *state;
    int handle;
    assert_null(agpu_exchange_transfer(ex));
    agpu_exchange_set_transfer(ex, &handle);
    assert_ptr_equal(agpu_exchange_transfer(ex), &handle);
}

/* ---- request body: front -> forwarder ---- */

static void test_push_then_give_body(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[16];
    assert_int_equal(agpu_exchange_push_body(ex, "abc", 3), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_push_body(ex, "de", 2), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 5);
    assert_memory_equal(out, "abcde", 5);
    assert_int_equal(front.suspends + front.resumes + forwarder.kicks, 0);
}

static void test_give_body_respects_max(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[4];
    assert_int_equal(agpu_exchange_push_body(ex, "abcdef", 6), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_give_body(ex, out, 4), 4);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(agpu_exchange_give_body(ex, out, 4), 2);
    assert_memory_equal(out, "ef", 2);
}

static void test_push_until_full_waits_and_suspends_once(void **state)
{
    agpu_exchange_t *ex = *state;
    size_t taken = fill_request_pipe(ex);
    assert_int_equal(taken, AGPU_PIPE_SOFT_CAP);
    assert_int_equal(front.suspends, 1);
    assert_int_equal(front.resumes, 0);
    assert_int_equal(forwarder.kicks, 0);
    /* the refused chunk was not taken */
    agpu_exchange_end_body(ex);
    size_t given = 0;
    long n;
    while ((n = agpu_exchange_give_body(ex, chunk, sizeof chunk)) > 0)
        given += (size_t)n;
    assert_int_equal(n, 0);
    assert_int_equal(given, AGPU_PIPE_SOFT_CAP);
}

static void test_give_body_resumes_front_when_room(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_request_pipe(ex);
    char out[1024];
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), sizeof out);
    assert_int_equal(front.resumes, 0); /* noted inside the callback... */
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1); /* ...done when the forwarder's batch ends */
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), sizeof out);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1); /* once per wait */
    assert_int_equal(agpu_exchange_push_body(ex, "x", 1), AGPU_PUSH_TAKEN);
}

static void test_give_body_no_resume_while_still_full(void **state)
{
    agpu_exchange_t *ex = *state;
    static char big[AGPU_PIPE_SOFT_CAP + 100];
    /* a write always takes its whole chunk, so the pipe can go past the cap */
    assert_int_equal(agpu_exchange_push_body(ex, big, sizeof big), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_push_body(ex, "x", 1), AGPU_PUSH_WAIT);
    char out[100];
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), sizeof out);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0); /* exactly at the cap: still full */
    assert_int_equal(agpu_exchange_give_body(ex, out, 1), 1);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1);
}

static void test_give_body_without_waiting_front_does_not_resume(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_push_body(ex, "abc", 3), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 3);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0);
}

static void test_give_body_empty_pauses_send(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_PAUSE);
    assert_true(agpu_exchange_flow(ex).pause_send);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_push_after_pause_kicks_forwarder_once(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_PAUSE);
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_TAKEN);
    assert_int_equal(forwarder.kicks, 1);
    assert_ptr_equal(forwarder.kicked, ex);
    assert_false(agpu_exchange_flow(ex).pause_send);
    assert_int_equal(agpu_exchange_push_body(ex, "b", 1), AGPU_PUSH_TAKEN);
    assert_int_equal(forwarder.kicks, 1);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 2);
}

static void test_push_without_pause_does_not_kick(void **state)
{
    agpu_exchange_t *ex = *state;
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_TAKEN);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_end_body_then_give_returns_zero(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_push_body(ex, "ab", 2), AGPU_PUSH_TAKEN);
    agpu_exchange_end_body(ex);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 2); /* data before the end */
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 0);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 0);
}

static void test_end_body_kicks_paused_sender(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_PAUSE);
    agpu_exchange_end_body(ex);
    assert_int_equal(forwarder.kicks, 1);
    assert_false(agpu_exchange_flow(ex).pause_send);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 0);
}

static void test_end_body_without_pause_does_not_kick(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_end_body(ex);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_push_after_finish_is_dropped(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_DROPPED);
    assert_int_equal(front.suspends, 0);
}

static void test_push_to_full_pipe_after_finish_is_dropped_not_wait(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_request_pipe(ex);
    agpu_exchange_finish(ex, "upstream went away");
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_DROPPED);
    assert_int_equal(front.suspends, 1); /* only the first WAIT */
}

/* ---- response head ---- */

static void test_head_waits_then_head_done_resumes(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[64];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_WAIT);
    assert_int_equal(front.suspends, 1);
    answer(ex, 200, "application/json", "2");
    assert_int_equal(front.resumes, 0);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1);
    head = ready_head(ex);
    assert_int_equal(head.status, 200);
}

static void test_head_done_without_waiting_front_does_not_resume(void **state)
{
    agpu_exchange_t *ex = *state;
    answer(ex, 200, NULL, NULL);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0);
    assert_int_equal(ready_head(ex).status, 200);
}

static void test_head_done_does_not_wake_a_data_wait(void **state)
{
    /* a front waiting for room in the request pipe is not woken by the head */
    agpu_exchange_t *ex = *state;
    fill_request_pipe(ex);
    answer(ex, 200, NULL, NULL);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0);
}

static void test_head_fields(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_set_status(ex, 201);
    add_header(ex, "Content-Type", "application/x-ndjson");
    add_header(ex, "X-Ollama-Thing", "yes");
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.status, 201);
    assert_int_equal(head.count, 2);
    assert_string_equal(head.names[0], "Content-Type");
    assert_string_equal(head.values[0], "application/x-ndjson");
    assert_string_equal(head.names[1], "X-Ollama-Thing");
    assert_string_equal(head.values[1], "yes");
    assert_int_equal(head.content_length, -1);
    assert_int_equal(head.kind, AGPU_BODY_NDJSON);
}

static void test_head_drops_hop_by_hop_and_own_headers(void **state)
{
    agpu_exchange_t *ex = *state;
    add_header(ex, "Connection", "keep-alive");
    add_header(ex, "Transfer-Encoding", "chunked");
    add_header(ex, "keep-alive", "timeout=5");
    add_header(ex, "Date", "Mon, 01 Jan 2024 00:00:00 GMT");
    add_header(ex, "Content-Length", "10");
    add_header(ex, "Vary", "Origin");
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.count, 1);
    assert_string_equal(head.names[0], "Vary");
    assert_int_equal(head.content_length, 10); /* noted, not passed on */
}

static void test_head_header_name_and_value_use_lengths(void **state)
{
    agpu_exchange_t *ex = *state;
    const char *line = "X-Trace: abc123\r\n";
    agpu_exchange_add_header(ex, line, 7, line + 9, 6);
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.count, 1);
    assert_string_equal(head.names[0], "X-Trace");
    assert_string_equal(head.values[0], "abc123");
}

static void test_head_content_type_kinds(void **state)
{
    const struct {
        const char *type;
        agpu_body_kind_t kind;
    } cases[] = {
        {"application/x-ndjson", AGPU_BODY_NDJSON},
        {"application/x-ndjson; charset=utf-8", AGPU_BODY_NDJSON},
        {"Application/X-NDJSON", AGPU_BODY_NDJSON},
        {"text/event-stream", AGPU_BODY_SSE},
        {"text/event-stream; charset=utf-8", AGPU_BODY_SSE},
        {"application/json", AGPU_BODY_OTHER},
        {"application/json; charset=utf-8", AGPU_BODY_OTHER},
        {"text/plain", AGPU_BODY_OTHER},
        {"", AGPU_BODY_OTHER},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agpu_request_t r = default_request();
        agpu_exchange_t *ex = agpu_exchange_new(&r, &ops, &front, &forwarder);
        assert_non_null(ex);
        answer(ex, 200, cases[i].type, NULL);
        if (ready_head(ex).kind != cases[i].kind)
            fail_msg("Content-Type '%s': kind %d, want %d", cases[i].type, ready_head(ex).kind,
                     cases[i].kind);
        agpu_exchange_unref(&ex);
    }
}

static void test_head_content_type_name_case_insensitive(void **state)
{
    agpu_exchange_t *ex = *state;
    add_header(ex, "content-type", "text/event-stream");
    agpu_exchange_head_done(ex);
    assert_int_equal(ready_head(ex).kind, AGPU_BODY_SSE);
}

static void test_head_content_length_parsing(void **state)
{
    const struct {
        const char *value;
        int64_t length;
    } cases[] = {{"0", 0},    {"123", 123}, {"68719476736", 68719476736LL},
                 {"abc", -1}, {"-5", -1},   {"", -1}};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        agpu_request_t r = default_request();
        agpu_exchange_t *ex = agpu_exchange_new(&r, &ops, &front, &forwarder);
        assert_non_null(ex);
        add_header(ex, "content-length", cases[i].value);
        agpu_exchange_head_done(ex);
        if (ready_head(ex).content_length != cases[i].length)
            fail_msg("Content-Length '%s': got %lld", cases[i].value,
                     (long long)ready_head(ex).content_length);
        agpu_exchange_unref(&ex);
    }
}

static void test_head_header_count_capped(void **state)
{
    agpu_exchange_t *ex = *state;
    for (int i = 0; i < AGPU_MAX_UPSTREAM_HEADERS + 6; i++) {
        char name[16];
        snprintf(name, sizeof name, "X-H%d", i);
        add_header(ex, name, "v");
    }
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.count, AGPU_MAX_UPSTREAM_HEADERS);
    assert_string_equal(head.names[AGPU_MAX_UPSTREAM_HEADERS - 1], "X-H63");
}

static void test_head_header_bytes_capped(void **state)
{
    agpu_exchange_t *ex = *state;
    static char value[10000];
    memset(value, 'v', sizeof value - 1);
    for (int i = 0; i < 4; i++)
        add_header(ex, "X-Big", value); /* 3 fit in 32 KiB, the 4th does not */
    add_header(ex, "X-Small", "s");     /* a small one still fits */
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.count, 4);
    assert_string_equal(head.names[3], "X-Small");
}

static void test_head_long_header_name_is_kept(void **state)
{
    agpu_exchange_t *ex = *state;
    const char *name = "X-A-Very-Long-Header-Name-Over-32-Bytes";
    add_header(ex, name, "1");
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.count, 1);
    assert_string_equal(head.names[0], name);
}

static void test_reset_head_forgets_interim_headers(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_set_status(ex, 100);
    add_header(ex, "X-Interim", "1");
    add_header(ex, "Content-Type", "text/event-stream");
    add_header(ex, "Content-Length", "5");
    agpu_exchange_reset_head(ex);
    agpu_exchange_set_status(ex, 200);
    add_header(ex, "X-Final", "2");
    agpu_exchange_head_done(ex);
    agpu_response_head_t head = ready_head(ex);
    assert_int_equal(head.status, 200);
    assert_int_equal(head.count, 1);
    assert_string_equal(head.names[0], "X-Final");
    assert_int_equal(head.kind, AGPU_BODY_OTHER);
    assert_int_equal(head.content_length, -1);
}

static void test_reset_head_frees_byte_budget(void **state)
{
    agpu_exchange_t *ex = *state;
    static char value[30000];
    memset(value, 'v', sizeof value - 1);
    add_header(ex, "X-Big", value);
    agpu_exchange_reset_head(ex);
    add_header(ex, "X-Big", value);
    agpu_exchange_head_done(ex);
    assert_int_equal(ready_head(ex).count, 1);
}

static void test_head_failed_with_error(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[64] = "";
    agpu_exchange_finish(ex, "upstream http://h:1 failed: Connection refused");
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_FAILED);
    assert_string_equal(error, "upstream http://h:1 failed: Connection refused");
    assert_int_equal(front.suspends, 0);
}

static void test_head_failed_without_answer(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[64] = "";
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_FAILED);
    assert_string_equal(error, "upstream sent no answer");
}

static void test_head_failed_error_fits_buffer(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[8];
    memset(error, '#', sizeof error);
    agpu_exchange_finish(ex, "connection refused");
    assert_int_equal(agpu_exchange_head(ex, &head, error, 5), AGPU_HEAD_FAILED);
    assert_string_equal(error, "conn");
    assert_int_equal(error[5], '#');
}

static void test_finish_resumes_front_waiting_for_head(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[64];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_WAIT);
    agpu_exchange_finish(ex, "boom");
    assert_int_equal(front.resumes, 1);
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_FAILED);
}

static void test_finished_with_head_is_ready(void **state)
{
    /* a whole small answer can arrive before the front asks */
    agpu_exchange_t *ex = *state;
    answer(ex, 404, "application/json", "2");
    assert_true(agpu_exchange_take_response(ex, "{}", 2));
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(ready_head(ex).status, 404);
}

static void test_error_message_truncated_to_error_max(void **state)
{
    agpu_exchange_t *ex = *state;
    static char message[AGPU_ERROR_MAX + 100], error[AGPU_ERROR_MAX + 100];
    memset(message, 'e', sizeof message - 1);
    agpu_exchange_finish(ex, message);
    agpu_response_head_t head;
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_FAILED);
    assert_int_equal(strlen(error), AGPU_ERROR_MAX - 1);
}

/* ---- response body: forwarder -> front ---- */

static void test_read_response_waits_then_take_resumes(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[64];
    answer(ex, 200, "application/x-ndjson", NULL);
    assert_int_equal(read_into(ex, buf, sizeof buf), 0);
    assert_int_equal(front.suspends, 1);
    assert_true(agpu_exchange_take_response(ex, "{\"a\":1}\n", 8));
    assert_int_equal(front.resumes, 0);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1);
    assert_int_equal(read_into(ex, buf, sizeof buf), 8);
    assert_string_equal(buf, "{\"a\":1}\n");
}

static void test_take_without_waiting_front_does_not_resume(void **state)
{
    agpu_exchange_t *ex = *state;
    answer(ex, 200, NULL, NULL);
    assert_true(agpu_exchange_take_response(ex, "abc", 3));
    assert_true(agpu_exchange_take_response(ex, "def", 3));
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0);
    char buf[16];
    assert_int_equal(read_into(ex, buf, sizeof buf), 6);
    assert_string_equal(buf, "abcdef");
}

static void test_read_response_respects_max(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[4];
    assert_true(agpu_exchange_take_response(ex, "abcdef", 6));
    assert_int_equal(agpu_exchange_read_response(ex, buf, 4), 4);
    assert_memory_equal(buf, "abcd", 4);
    assert_int_equal(agpu_exchange_read_response(ex, buf, 4), 2);
    assert_memory_equal(buf, "ef", 2);
}

static void test_take_response_pauses_recv_when_full(void **state)
{
    agpu_exchange_t *ex = *state;
    assert_int_equal(fill_response_pipe(ex), AGPU_PIPE_SOFT_CAP);
    agpu_exchange_flow_t flow = agpu_exchange_flow(ex);
    assert_true(flow.pause_recv);
    assert_false(flow.finished);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_drain_below_cap_kicks_once(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_response_pipe(ex);
    static char out[AGPU_RESPONSE_BLOCK];
    assert_int_equal(agpu_exchange_read_response(ex, out, 1), 1);
    assert_int_equal(forwarder.kicks, 1);
    assert_ptr_equal(forwarder.kicked, ex);
    assert_false(agpu_exchange_flow(ex).pause_recv);
    assert_int_equal(agpu_exchange_read_response(ex, out, sizeof out), sizeof out);
    assert_int_equal(forwarder.kicks, 1);
    assert_true(agpu_exchange_take_response(ex, "more", 4)); /* room again */
}

static void test_drain_without_pause_does_not_kick(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_true(agpu_exchange_take_response(ex, "abc", 3));
    assert_int_equal(agpu_exchange_read_response(ex, out, sizeof out), 3);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_drain_after_finish_does_not_kick(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_response_pipe(ex);
    agpu_exchange_finish(ex, NULL);
    static char out[AGPU_RESPONSE_BLOCK];
    assert_int_equal(agpu_exchange_read_response(ex, out, sizeof out), sizeof out);
    assert_int_equal(forwarder.kicks, 0);
}

static void test_clean_finish_ends_after_data(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[64];
    answer(ex, 200, "application/x-ndjson", NULL);
    assert_true(agpu_exchange_take_response(ex, "{\"done\":true}\n", 14));
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(read_into(ex, buf, sizeof buf), 14);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
    assert_int_equal(front.suspends, 0);
}

static void test_finish_resumes_waiting_reader(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[8];
    answer(ex, 200, NULL, NULL);
    assert_int_equal(read_into(ex, buf, sizeof buf), 0);
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(front.resumes, 1);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_finish_resumes_front_waiting_for_room(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_request_pipe(ex);
    agpu_exchange_finish(ex, "upstream closed early");
    assert_int_equal(front.resumes, 1);
}

static void test_finish_without_waiting_front_does_not_resume(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(front.resumes, 0);
    assert_true(agpu_exchange_flow(ex).finished);
}

static void test_ndjson_error_mid_stream_gives_error_line_then_end(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[256];
    answer(ex, 200, "application/x-ndjson", NULL);
    assert_true(agpu_exchange_take_response(ex, "{\"response\":\"Hi\"}\n", 18));
    agpu_exchange_finish(ex, "upstream http://h:1 failed: connection reset");
    assert_int_equal(read_into(ex, buf, sizeof buf), 18);
    long n = read_into(ex, buf, sizeof buf);
    assert_string_equal(buf, "{\"error\":\"upstream http://h:1 failed: connection reset\"}\n");
    assert_int_equal(n, (long)strlen(buf));
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_sse_error_mid_stream_gives_data_line_then_end(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[256];
    answer(ex, 200, "text/event-stream", NULL);
    assert_true(agpu_exchange_take_response(ex, "data: {}\n\n", 10));
    agpu_exchange_finish(ex, "boom");
    assert_int_equal(read_into(ex, buf, sizeof buf), 10);
    long n = read_into(ex, buf, sizeof buf);
    assert_string_equal(buf, "data: {\"error\":{\"message\":\"boom\",\"type\":\"api_error\","
                             "\"param\":null,\"code\":null}}\n\n");
    assert_int_equal(n, (long)strlen(buf));
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_error_line_without_any_body(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "application/x-ndjson", NULL);
    agpu_exchange_finish(ex, "x");
    assert_true(read_into(ex, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"error\":\"x\"}\n");
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_error_line_escapes_message(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "application/x-ndjson", NULL);
    agpu_exchange_finish(ex, "say \"hi\"\nnow");
    assert_true(read_into(ex, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"error\":\"say \\\"hi\\\"\\nnow\"}\n");
}

static void test_error_after_waiting_reader_resumes_and_gives_line(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "application/x-ndjson", NULL);
    assert_int_equal(read_into(ex, buf, sizeof buf), 0);
    agpu_exchange_finish(ex, "gone");
    assert_int_equal(front.resumes, 1);
    assert_true(read_into(ex, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"error\":\"gone\"}\n");
}

static void test_sized_stream_error_is_broken(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "application/x-ndjson", "100");
    assert_true(agpu_exchange_take_response(ex, "{}\n", 3));
    agpu_exchange_finish(ex, "cut short");
    assert_int_equal(read_into(ex, buf, sizeof buf), 3);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_BROKEN);
}

static void test_sized_sse_error_is_broken(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "text/event-stream", "0");
    agpu_exchange_finish(ex, "cut short");
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_BROKEN);
}

static void test_non_stream_error_is_broken(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[128];
    answer(ex, 200, "application/json", NULL);
    assert_true(agpu_exchange_take_response(ex, "{\"mod", 5));
    agpu_exchange_finish(ex, "cut short");
    assert_int_equal(read_into(ex, buf, sizeof buf), 5);
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_BROKEN);
}

static void test_error_line_too_big_for_read_is_broken(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[8];
    answer(ex, 200, "application/x-ndjson", NULL);
    agpu_exchange_finish(ex, "a message longer than the buffer");
    assert_int_equal(agpu_exchange_read_response(ex, buf, sizeof buf), AGPU_BODY_BROKEN);
}

/* ---- batched wakes (agpu_exchange_wake) ---- */

static void test_wake_without_due_does_nothing(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_wake(ex);
    char buf[8];
    assert_int_equal(read_into(ex, buf, sizeof buf), 0); /* waits for data */
    agpu_exchange_wake(ex);                              /* nothing arrived */
    assert_int_equal(front.resumes, 0);
}

static void test_wake_twice_resumes_once(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[8];
    assert_int_equal(read_into(ex, buf, sizeof buf), 0);
    assert_true(agpu_exchange_take_response(ex, "a", 1));
    agpu_exchange_wake(ex);
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 1);
}

static void test_head_and_body_in_one_batch_resume_once(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[16], buf[32];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_WAIT);
    answer(ex, 200, "application/json", "2");
    assert_true(agpu_exchange_take_response(ex, "{}", 2));
    agpu_exchange_wake(ex);
    assert_int_equal(front.suspends, 1);
    assert_int_equal(front.resumes, 1);
    assert_int_equal(ready_head(ex).content_length, 2);
    assert_int_equal(read_into(ex, buf, sizeof buf), 2);
    assert_string_equal(buf, "{}");
}

static void test_wake_after_cancel_does_not_resume(void **state)
{
    agpu_exchange_t *ex = *state;
    char buf[8];
    assert_int_equal(read_into(ex, buf, sizeof buf), 0);
    agpu_exchange_cancel(ex);
    assert_true(agpu_exchange_take_response(ex, "a", 1)); /* discarded */
    agpu_exchange_wake(ex);
    assert_int_equal(front.resumes, 0);
}

/* ---- whole body in one write (agpu_exchange_whole_body) ---- */

static void test_whole_body_when_finished_and_fits(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = NULL;
    size_t len = 99;
    answer(ex, 200, "application/json", "11");
    assert_true(agpu_exchange_take_response(ex, "{\"a\":", 5));
    assert_true(agpu_exchange_take_response(ex, "\"bcd\"}", 6));
    agpu_exchange_finish(ex, NULL);
    assert_true(agpu_exchange_whole_body(ex, 32, &body, &len));
    assert_int_equal(len, 11);
    assert_memory_equal(body, "{\"a\":\"bcd\"}", 11);
    free(body);
    char buf[8];
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END); /* all moved out */
}

static void test_whole_body_empty(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = (char *)"unset";
    size_t len = 99;
    answer(ex, 204, NULL, NULL);
    agpu_exchange_finish(ex, NULL);
    assert_true(agpu_exchange_whole_body(ex, 4, &body, &len));
    assert_int_equal(len, 0);
    assert_null(body);
}

static void test_whole_body_exact_fit(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = NULL;
    size_t len = 0;
    assert_true(agpu_exchange_take_response(ex, "abcd", 4));
    agpu_exchange_finish(ex, NULL);
    assert_true(agpu_exchange_whole_body(ex, 4, &body, &len));
    assert_int_equal(len, 4);
    assert_memory_equal(body, "abcd", 4);
    free(body);
}

static void test_whole_body_not_while_streaming(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = NULL, buf[32];
    size_t len = 99;
    assert_true(agpu_exchange_take_response(ex, "abc", 3));
    assert_false(agpu_exchange_whole_body(ex, 32, &body, &len));
    assert_int_equal(len, 99);
    assert_null(body);
    assert_int_equal(read_into(ex, buf, sizeof buf), 3); /* still there to stream */
}

static void test_whole_body_not_when_too_big(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = NULL, buf[32];
    size_t len = 99;
    assert_true(agpu_exchange_take_response(ex, "abcde", 5));
    agpu_exchange_finish(ex, NULL);
    assert_false(agpu_exchange_whole_body(ex, 4, &body, &len));
    assert_null(body);
    assert_int_equal(read_into(ex, buf, sizeof buf), 5);
    assert_string_equal(buf, "abcde");
    assert_int_equal(read_into(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_whole_body_not_after_failure(void **state)
{
    agpu_exchange_t *ex = *state;
    char *body = NULL, buf[64];
    size_t len = 99;
    answer(ex, 200, "application/x-ndjson", NULL);
    assert_true(agpu_exchange_take_response(ex, "{}\n", 3));
    agpu_exchange_finish(ex, "broke");
    assert_false(agpu_exchange_whole_body(ex, 64, &body, &len));
    assert_null(body);
    assert_int_equal(read_into(ex, buf, sizeof buf), 3);
    assert_true(read_into(ex, buf, sizeof buf) > 0);
    assert_string_equal(buf, "{\"error\":\"broke\"}\n");
}

/* ---- cancel ---- */

static void test_cancel_kicks_forwarder_once(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_cancel(ex);
    assert_int_equal(forwarder.kicks, 1);
    assert_ptr_equal(forwarder.kicked, ex);
    assert_true(agpu_exchange_flow(ex).canceled);
    agpu_exchange_cancel(ex);
    assert_int_equal(forwarder.kicks, 1);
}

static void test_cancel_makes_give_body_abort(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    assert_int_equal(agpu_exchange_push_body(ex, "abc", 3), AGPU_PUSH_TAKEN);
    agpu_exchange_cancel(ex);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_ABORT);
    agpu_exchange_end_body(ex);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_ABORT);
}

static void test_cancel_drops_later_pushes(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_cancel(ex);
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_DROPPED);
}

static void test_cancel_after_finish_does_not_kick(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_finish(ex, NULL);
    agpu_exchange_cancel(ex);
    assert_int_equal(forwarder.kicks, 0);
    assert_true(agpu_exchange_flow(ex).canceled);
}

static void test_cancel_forgets_front_wait(void **state)
{
    /* the front is gone: nothing may resume it afterwards */
    agpu_exchange_t *ex = *state;
    agpu_response_head_t head;
    char error[16];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_WAIT);
    agpu_exchange_cancel(ex);
    answer(ex, 200, NULL, NULL);
    agpu_exchange_wake(ex);
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(front.resumes, 0);
}

static void test_take_response_after_cancel_discards(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_cancel(ex);
    for (int i = 0; i < 8; i++) /* never pauses: more than the cap is swallowed */
        assert_true(agpu_exchange_take_response(ex, chunk, sizeof chunk));
    assert_false(agpu_exchange_flow(ex).pause_recv);
    agpu_exchange_finish(ex, NULL);
    char buf[8];
    assert_int_equal(agpu_exchange_read_response(ex, buf, sizeof buf), AGPU_BODY_END);
}

static void test_cancel_while_recv_paused(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_response_pipe(ex);
    agpu_exchange_cancel(ex);
    assert_int_equal(forwarder.kicks, 1);
    agpu_exchange_flow_t flow = agpu_exchange_flow(ex);
    assert_true(flow.canceled);
}

/* ---- the kick runs unlocked ---- */

static void finish_from_kick(agpu_exchange_t *ex)
{
    forwarder.flow_seen = agpu_exchange_flow(ex); /* would deadlock if the lock were held */
    agpu_exchange_finish(ex, "agpu is shutting down");
}

static void test_kick_may_finish_exchange_at_once(void **state)
{
    agpu_exchange_t *ex = *state;
    forwarder.on_kick = finish_from_kick;
    agpu_exchange_cancel(ex);
    assert_int_equal(forwarder.kicks, 1);
    assert_true(forwarder.flow_seen.canceled);
    assert_true(agpu_exchange_flow(ex).finished);
}

static void test_kick_from_push_may_read_flow(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[8];
    forwarder.on_kick = finish_from_kick;
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_PAUSE);
    assert_int_equal(agpu_exchange_push_body(ex, "a", 1), AGPU_PUSH_TAKEN);
    assert_int_equal(forwarder.kicks, 1);
    assert_false(forwarder.flow_seen.pause_send);
}

static void test_kick_from_read_may_read_flow(void **state)
{
    agpu_exchange_t *ex = *state;
    fill_response_pipe(ex);
    forwarder.on_kick = finish_from_kick;
    char out[16];
    assert_true(agpu_exchange_read_response(ex, out, sizeof out) > 0);
    assert_int_equal(forwarder.kicks, 1);
    assert_false(forwarder.flow_seen.pause_recv);
}

/* ---- references ---- */

static void test_refs_balance(void **state)
{
    agpu_exchange_t *ex = *state;
    agpu_exchange_t *held[3];
    for (size_t i = 0; i < 3; i++) {
        held[i] = ex;
        agpu_exchange_ref(held[i]);
    }
    for (size_t i = 0; i < 3; i++) {
        agpu_exchange_unref(&held[i]);
        assert_null(held[i]);
    }
    /* still exactly one reference: the exchange is alive and teardown frees it */
    assert_false(agpu_exchange_flow(ex).finished);
}

/* ---- a whole exchange ---- */

static void test_whole_streamed_exchange(void **state)
{
    agpu_exchange_t *ex = *state;
    char out[256];
    /* front: body arrives in two parts */
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), AGPU_UPLOAD_PAUSE);
    assert_int_equal(agpu_exchange_push_body(ex, "{\"model\":", 9), AGPU_PUSH_TAKEN);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 9);
    assert_int_equal(agpu_exchange_push_body(ex, "\"m\"}", 4), AGPU_PUSH_TAKEN);
    agpu_exchange_end_body(ex);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 4);
    assert_int_equal(agpu_exchange_give_body(ex, out, sizeof out), 0);
    /* head */
    agpu_response_head_t head;
    char error[32];
    assert_int_equal(agpu_exchange_head(ex, &head, error, sizeof error), AGPU_HEAD_WAIT);
    answer(ex, 200, "application/x-ndjson", NULL);
    agpu_exchange_wake(ex);
    head = ready_head(ex);
    assert_int_equal(head.kind, AGPU_BODY_NDJSON);
    assert_string_equal(head_value(&head, "Content-Type"), "application/x-ndjson");
    /* body */
    assert_int_equal(read_into(ex, out, sizeof out), 0);
    assert_true(agpu_exchange_take_response(ex, "{\"done\":false}\n", 15));
    agpu_exchange_wake(ex);
    assert_int_equal(read_into(ex, out, sizeof out), 15);
    assert_true(agpu_exchange_take_response(ex, "{\"done\":true}\n", 14));
    agpu_exchange_finish(ex, NULL);
    assert_int_equal(read_into(ex, out, sizeof out), 14);
    assert_int_equal(read_into(ex, out, sizeof out), AGPU_BODY_END);
    /* every suspend was answered by exactly one resume */
    assert_int_equal(front.suspends, 2);
    assert_int_equal(front.resumes, 2);
    assert_int_equal(forwarder.kicks, 1); /* only the push after the upload paused */
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    alarm(120); /* a lock held across a kick would hang: fail instead */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_copies_request),
        cmocka_unit_test(test_new_without_headers),
        cmocka_unit_test(test_new_fails_without_method_or_url),
        cmocka_unit_test(test_unref_null_is_harmless),
        T(test_forwarder_ref_outlives_front),
        T(test_unref_frees_buffered_data),
        T(test_transfer_round_trip),
        T(test_push_then_give_body),
        T(test_give_body_respects_max),
        T(test_push_until_full_waits_and_suspends_once),
        T(test_give_body_resumes_front_when_room),
        T(test_give_body_no_resume_while_still_full),
        T(test_give_body_without_waiting_front_does_not_resume),
        T(test_give_body_empty_pauses_send),
        T(test_push_after_pause_kicks_forwarder_once),
        T(test_push_without_pause_does_not_kick),
        T(test_end_body_then_give_returns_zero),
        T(test_end_body_kicks_paused_sender),
        T(test_end_body_without_pause_does_not_kick),
        T(test_push_after_finish_is_dropped),
        T(test_push_to_full_pipe_after_finish_is_dropped_not_wait),
        T(test_head_waits_then_head_done_resumes),
        T(test_head_done_without_waiting_front_does_not_resume),
        T(test_head_done_does_not_wake_a_data_wait),
        T(test_head_fields),
        T(test_head_drops_hop_by_hop_and_own_headers),
        T(test_head_header_name_and_value_use_lengths),
        T(test_head_content_type_kinds),
        T(test_head_content_type_name_case_insensitive),
        T(test_head_content_length_parsing),
        T(test_head_header_count_capped),
        T(test_head_header_bytes_capped),
        T(test_head_long_header_name_is_kept),
        T(test_reset_head_forgets_interim_headers),
        T(test_reset_head_frees_byte_budget),
        T(test_head_failed_with_error),
        T(test_head_failed_without_answer),
        T(test_head_failed_error_fits_buffer),
        T(test_finish_resumes_front_waiting_for_head),
        T(test_finished_with_head_is_ready),
        T(test_error_message_truncated_to_error_max),
        T(test_read_response_waits_then_take_resumes),
        T(test_take_without_waiting_front_does_not_resume),
        T(test_read_response_respects_max),
        T(test_take_response_pauses_recv_when_full),
        T(test_drain_below_cap_kicks_once),
        T(test_drain_without_pause_does_not_kick),
        T(test_drain_after_finish_does_not_kick),
        T(test_clean_finish_ends_after_data),
        T(test_finish_resumes_waiting_reader),
        T(test_finish_resumes_front_waiting_for_room),
        T(test_finish_without_waiting_front_does_not_resume),
        T(test_ndjson_error_mid_stream_gives_error_line_then_end),
        T(test_sse_error_mid_stream_gives_data_line_then_end),
        T(test_error_line_without_any_body),
        T(test_error_line_escapes_message),
        T(test_error_after_waiting_reader_resumes_and_gives_line),
        T(test_sized_stream_error_is_broken),
        T(test_sized_sse_error_is_broken),
        T(test_non_stream_error_is_broken),
        T(test_error_line_too_big_for_read_is_broken),
        T(test_wake_without_due_does_nothing),
        T(test_wake_twice_resumes_once),
        T(test_head_and_body_in_one_batch_resume_once),
        T(test_wake_after_cancel_does_not_resume),
        T(test_whole_body_when_finished_and_fits),
        T(test_whole_body_empty),
        T(test_whole_body_exact_fit),
        T(test_whole_body_not_while_streaming),
        T(test_whole_body_not_when_too_big),
        T(test_whole_body_not_after_failure),
        T(test_cancel_kicks_forwarder_once),
        T(test_cancel_makes_give_body_abort),
        T(test_cancel_drops_later_pushes),
        T(test_cancel_after_finish_does_not_kick),
        T(test_cancel_forgets_front_wait),
        T(test_take_response_after_cancel_discards),
        T(test_cancel_while_recv_paused),
        T(test_kick_may_finish_exchange_at_once),
        T(test_kick_from_push_may_read_flow),
        T(test_kick_from_read_may_read_flow),
        T(test_refs_balance),
        T(test_whole_streamed_exchange),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
