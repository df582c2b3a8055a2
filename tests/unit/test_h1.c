/* Unit tests of agpu_h1: the upstream URL, the request head, chunk framing, and the response
 * parser fed whole, split at every byte boundary, byte by byte, and with a sink that refuses
 * body bytes (pause and resume). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agpu_h1.h"

/* ---- URL ---- */

/* text parses into these parts. */
static void check_url(const char *text, const char *host, const char *port,
                      const char *authority, const char *target)
{
    agpu_h1_url_t url;
    assert_int_equal(agpu_h1_parse_url(text, &url), 0);
    assert_string_equal(url.host, host);
    assert_string_equal(url.port, port);
    assert_string_equal(url.authority, authority);
    assert_string_equal(url.target, target);
}

static void test_url_splits_host_port_and_target(void **state)
{
    check_url("http://127.0.0.1:11434/api/tags?x=1", "127.0.0.1", "11434", "127.0.0.1:11434",
              "/api/tags?x=1");
    check_url("http://[::1]:8080/v1/models", "::1", "8080", "[::1]:8080", "/v1/models");
    check_url("HTTP://ollama.lan", "ollama.lan", "80", "ollama.lan", "");
    check_url("http://h:1?q", "h", "1", "h:1", "?q");
}

static void test_url_rejects_what_agpu_cannot_use(void **state)
{
    static const char *const bad[] = {
        "https://127.0.0.1:443/", "127.0.0.1:11434", "http://:80/", "http://h:0/",
        "http://h:65536/",        "http://h:12a/",   "http://h:/",  "http://[::1/",
        "http://[::1]x/",         "http:///path",
    };
    agpu_h1_url_t url;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        if (agpu_h1_parse_url(bad[i], &url) == 0)
            fail_msg("accepted %s", bad[i]);
    }
    char long_host[400] = "http://";
    memset(long_host + 7, 'a', 300);
    strcpy(long_host + 307, ":80/");
    assert_int_equal(agpu_h1_parse_url(long_host, &url), -1);
}

/* ---- request head ---- */

static void check_head(const char *method, const char *url_text, int64_t body_length,
                       const char *expected)
{
    static const char *const headers[] = {"Content-Type: application/json", "X-Extra: 1"};
    agpu_h1_url_t url;
    assert_int_equal(agpu_h1_parse_url(url_text, &url), 0);
    size_t len = 0;
    char *head = agpu_h1_request_head(method, &url, headers, 2, body_length, &len);
    assert_non_null(head);
    assert_string_equal(head, expected);
    assert_int_equal(len, strlen(expected));
    free(head);
}

static void test_request_head_frames_each_kind_of_body(void **state)
{
    check_head("GET", "http://127.0.0.1:11434/api/version", AGPU_H1_NO_BODY,
               "GET /api/version HTTP/1.1\r\nHost: 127.0.0.1:11434\r\n"
               "Content-Type: application/json\r\nX-Extra: 1\r\n\r\n");
    check_head("POST", "http://[::1]:1/api/chat?a=b", 17,
               "POST /api/chat?a=b HTTP/1.1\r\nHost: [::1]:1\r\n"
               "Content-Type: application/json\r\nX-Extra: 1\r\nContent-Length: 17\r\n\r\n");
    check_head("POST", "http://h:2", 0,
               "POST / HTTP/1.1\r\nHost: h:2\r\n"
               "Content-Type: application/json\r\nX-Extra: 1\r\nContent-Length: 0\r\n\r\n");
    check_head("POST", "http://h:65535/api/blobs/x", 10737418240LL,
               "POST /api/blobs/x HTTP/1.1\r\nHost: h:65535\r\n"
               "Content-Type: application/json\r\nX-Extra: 1\r\nContent-Length: 10737418240\r\n\r\n");
    check_head(
        "PUT", "http://h:2?q=1", AGPU_H1_CHUNKED,
        "PUT /?q=1 HTTP/1.1\r\nHost: h:2\r\n"
        "Content-Type: application/json\r\nX-Extra: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
}

static void test_chunk_prefix(void **state)
{
    char out[AGPU_H1_CHUNK_PREFIX_MAX];
    assert_int_equal(agpu_h1_chunk_prefix(out, 0x1f), 4);
    assert_memory_equal(out, "1f\r\n", 4);
    assert_int_equal(agpu_h1_chunk_prefix(out, 0), 5);
    assert_memory_equal(out, "0\r\n\r\n", 5);
    assert_int_equal(agpu_h1_chunk_prefix(out, 65536), 7);
    assert_memory_equal(out, "10000\r\n", 7);
}

/* ---- response parser ---- */

/* A sink that writes down what it was told. */
typedef struct {
    int status, done_status;
    int heads_begun, heads_done;
    char headers[1024]; /* "name=value;" for the current head */
    char body[256];
    size_t body_len;
    bool refuse_odd; /* refuse the 1st, 3rd, ... body call (the next one, a resume, takes) */
    unsigned body_calls;
} record_t;

static void rec_head_begin(void *arg, int status)
{
    record_t *r = arg;
    r->status = status;
    r->heads_begun++;
    r->headers[0] = '\0';
}

static void rec_header(void *arg, const char *name, size_t name_len, const char *value,
                       size_t value_len)
{
    record_t *r = arg;
    size_t used = strlen(r->headers);
    snprintf(r->headers + used, sizeof r->headers - used, "%.*s=%.*s;", (int)name_len, name,
             (int)value_len, value);
}

static void rec_head_done(void *arg, int status)
{
    record_t *r = arg;
    r->done_status = status;
    r->heads_done++;
}

static bool rec_body(void *arg, const char *data, size_t len)
{
    record_t *r = arg;
    r->body_calls++;
    if (r->refuse_odd && r->body_calls % 2 == 1)
        return false;
    assert_true(r->body_len + len < sizeof r->body);
    memcpy(r->body + r->body_len, data, len);
    r->body_len += len;
    r->body[r->body_len] = '\0';
    return true;
}

static const agpu_h1_sink_t rec_sink = {rec_head_begin, rec_header, rec_head_done, rec_body};

typedef struct {
    const char *name;
    const char *answer;
    bool head_request;
    bool then_eof;          /* the server closes after the bytes */
    agpu_h1_state_t expect; /* after every byte (and the close, if any) */
    int status;             /* final status, when DONE */
    const char *headers;
    const char *body;
    bool keep_alive;
    size_t trailing;        /* bytes after the answer, left unparsed */
    const char *error_part; /* when FAILED: a part of the error */
} answer_case_t;

static const answer_case_t cases[] = {
    {"content-length",
     "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
     "Content-Length: 5\r\n\r\nhello",
     false, false, AGPU_H1_DONE, 200, "Content-Type=application/json;Content-Length=5;", "hello",
     true, 0, NULL},
    {"chunked",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n"
     "6;ext=1\r\n world\r\n0\r\n\r\n",
     false, false, AGPU_H1_DONE, 200, "Transfer-Encoding=chunked;", "hello world", true, 0, NULL},
    {"chunked trailers ignored",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
     "3\r\nabc\r\n0\r\nX-Trailer: t\r\n\r\n",
     false, false, AGPU_H1_DONE, 200, "Transfer-Encoding=chunked;", "abc", true, 0, NULL},
    {"1xx then the answer",
     "HTTP/1.1 100 Continue\r\nX-Interim: 1\r\n\r\n"
     "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok",
     false, false, AGPU_H1_DONE, 201, "Content-Length=2;", "ok", true, 0, NULL},
    {"HEAD has no body", "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n\r\n", true, false, AGPU_H1_DONE,
     200, "Content-Length=42;", "", true, 0, NULL},
    {"204", "HTTP/1.1 204 No Content\r\nX-A: b\r\n\r\n", false, false, AGPU_H1_DONE, 204, "X-A=b;",
     "", true, 0, NULL},
    {"304 ignores its length", "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n", false,
     false, AGPU_H1_DONE, 304, "Content-Length=10;", "", true, 0, NULL},
    {"read until close", "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the end", false,
     true, AGPU_H1_DONE, 200, "Content-Type=text/plain;", "until the end", false, 0, NULL},
    {"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nx", false, false, AGPU_H1_DONE, 200,
     "Content-Length=1;", "x", false, 0, NULL},
    {"Connection: close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx",
     false, false, AGPU_H1_DONE, 200, "Connection=close;Content-Length=1;", "x", false, 0, NULL},
    {"values trimmed, empty kept",
     "HTTP/1.1 200 OK\r\nX-Pad:   padded  \r\nX-Empty:\r\n"
     "Content-Length: 0\r\n\r\n",
     false, false, AGPU_H1_DONE, 200, "X-Pad=padded;X-Empty=;Content-Length=0;", "", true, 0, NULL},
    {"bytes after the answer", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA", false, false,
     AGPU_H1_DONE, 200, "Content-Length=2;", "ok", true, 5, NULL},
    {"not HTTP", "SSH-2.0-OpenSSH_9.2\r\n\r\n", false, false, AGPU_H1_FAILED, 0, NULL, NULL, false,
     0, "malformed answer"},
    {"bad status", "HTTP/1.1 2x0 OK\r\n\r\n", false, false, AGPU_H1_FAILED, 0, NULL, NULL, false, 0,
     "malformed answer"},
    {"control byte in a header name", "HTTP/1.1 200 OK\r\nBad\001Name: x\r\n\r\n", false, false,
     AGPU_H1_FAILED, 0, NULL, NULL, false, 0, "malformed answer"},
    {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, false,
     AGPU_H1_FAILED, 0, NULL, NULL, false, 0, "malformed answer"},
    {"switching protocols",
     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n"
     "Connection: upgrade\r\n\r\n",
     false, false, AGPU_H1_FAILED, 0, NULL, NULL, false, 0, "switched protocols"},
    {"closed mid-body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, true,
     AGPU_H1_FAILED, 0, NULL, NULL, false, 0, "mid-answer"},
    {"closed mid-head", "HTTP/1.1 200 OK\r\nContent-Le", false, true, AGPU_H1_FAILED, 0, NULL, NULL,
     false, 0, "mid-answer"},
    {"closed before an answer", "", false, true, AGPU_H1_FAILED, 0, NULL, NULL, false, 0,
     "before an answer"},
};

/* Feeds answer in pieces cut at the given offsets (ascending, in (0, len)); resumes whenever
 * the sink refused. Returns the final state; *unparsed: bytes left after DONE. */
static agpu_h1_state_t feed_pieces(agpu_h1_response_t *resp, const answer_case_t *c,
                                   const size_t *cuts, size_t n_cuts, size_t *unparsed)
{
    const char *data = c->answer;
    size_t len = strlen(data), start = 0;
    agpu_h1_state_t state = AGPU_H1_MORE;
    *unparsed = 0;
    for (size_t piece = 0; piece <= n_cuts; piece++) {
        size_t end = piece < n_cuts ? cuts[piece] : len;
        while (start < end) {
            size_t used;
            state = agpu_h1_response_feed(resp, data + start, end - start, &used);
            start += used;
            if (state == AGPU_H1_DONE) {
                *unparsed = len - start;
                return state;
            }
            if (state == AGPU_H1_FAILED)
                return state;
            while (state == AGPU_H1_PAUSED)
                state = agpu_h1_response_resume(resp);
            if (state == AGPU_H1_DONE) {
                *unparsed = len - start;
                return state;
            }
        }
    }
    if (c->then_eof)
        state = agpu_h1_response_eof(resp);
    return state;
}

static void check_case(const answer_case_t *c, const size_t *cuts, size_t n_cuts, bool refuse_odd,
                       const char *how)
{
    agpu_h1_response_t *resp = agpu_h1_response_new(&rec_sink);
    assert_non_null(resp);
    record_t rec = {.refuse_odd = refuse_odd};
    agpu_h1_response_start(resp, &rec, c->head_request);
    size_t unparsed;
    agpu_h1_state_t state = feed_pieces(resp, c, cuts, n_cuts, &unparsed);
    if (state != c->expect)
        fail_msg("%s (%s): state %d, expected %d (%s)", c->name, how, (int)state, (int)c->expect,
                 agpu_h1_response_error(resp));
    if (c->expect == AGPU_H1_DONE) {
        if (rec.status != c->status || rec.done_status != c->status || rec.heads_done != 1)
            fail_msg("%s (%s): status %d/%d, %d heads", c->name, how, rec.status, rec.done_status,
                     rec.heads_done);
        if (strcmp(rec.headers, c->headers) != 0)
            fail_msg("%s (%s): headers %s", c->name, how, rec.headers);
        if (strcmp(rec.body, c->body) != 0)
            fail_msg("%s (%s): body \"%s\"", c->name, how, rec.body);
        if (agpu_h1_response_keep_alive(resp) != c->keep_alive)
            fail_msg("%s (%s): keep-alive %d", c->name, how, agpu_h1_response_keep_alive(resp));
        if (unparsed != c->trailing)
            fail_msg("%s (%s): %zu bytes left unparsed", c->name, how, unparsed);
    } else if (!strstr(agpu_h1_response_error(resp), c->error_part)) {
        fail_msg("%s (%s): error \"%s\"", c->name, how, agpu_h1_response_error(resp));
    }
    agpu_h1_response_free(&resp);
}

static void test_answers_whole(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_case(&cases[i], NULL, 0, false, "whole");
}

static void test_answers_split_at_every_byte_boundary(void **state)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].answer);
        for (size_t cut = 1; cut < len; cut++) {
            char how[32];
            snprintf(how, sizeof how, "cut at %zu", cut);
            check_case(&cases[i], &cut, 1, false, how);
        }
    }
}

static void test_answers_byte_by_byte_with_refusals(void **state)
{
    size_t cuts[512];
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len = strlen(cases[i].answer);
        assert_true(len < sizeof cuts / sizeof cuts[0]);
        for (size_t k = 1; k < len; k++)
            cuts[k - 1] = k;
        size_t n_cuts = len ? len - 1 : 0;
        check_case(&cases[i], cuts, n_cuts, false, "byte by byte");
        check_case(&cases[i], cuts, n_cuts, true, "byte by byte, body calls refused");
        check_case(&cases[i], NULL, 0, true, "whole, body calls refused");
    }
}

static void test_answer_head_over_the_limit_fails(void **state)
{
    size_t big = AGPU_MAX_UPSTREAM_HEAD + 16;
    char *answer = malloc(big + 64);
    assert_non_null(answer);
    int n = snprintf(answer, 64, "HTTP/1.1 200 OK\r\nX-Big: ");
    memset(answer + n, 'a', big);
    strcpy(answer + n + big, "\r\n\r\n");
    agpu_h1_response_t *resp = agpu_h1_response_new(&rec_sink);
    record_t rec = {0};
    agpu_h1_response_start(resp, &rec, false);
    size_t used, len = strlen(answer), start = 0;
    agpu_h1_state_t got = AGPU_H1_MORE;
    while (start < len && got == AGPU_H1_MORE) { /* in reads of 1000 bytes */
        size_t piece = len - start < 1000 ? len - start : 1000;
        got = agpu_h1_response_feed(resp, answer + start, piece, &used);
        start += used;
    }
    assert_int_equal(got, AGPU_H1_FAILED);
    assert_non_null(strstr(agpu_h1_response_error(resp), "head over"));
    assert_int_equal(rec.heads_done, 0);
    agpu_h1_response_free(&resp);
    free(answer);
}

static void test_parser_is_reused_across_answers(void **state)
{
    agpu_h1_response_t *resp = agpu_h1_response_new(&rec_sink);
    for (int round = 0; round < 3; round++) {
        record_t rec = {0};
        agpu_h1_response_start(resp, &rec, false);
        assert_false(agpu_h1_response_started(resp));
        const char *answer = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc";
        size_t used;
        assert_int_equal(agpu_h1_response_feed(resp, answer, strlen(answer), &used), AGPU_H1_DONE);
        assert_int_equal(used, strlen(answer));
        assert_true(agpu_h1_response_started(resp));
        assert_string_equal(rec.body, "abc");
        assert_true(agpu_h1_response_keep_alive(resp));
    }
    agpu_h1_response_free(&resp);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_splits_host_port_and_target),
        cmocka_unit_test(test_url_rejects_what_agpu_cannot_use),
        cmocka_unit_test(test_request_head_frames_each_kind_of_body),
        cmocka_unit_test(test_chunk_prefix),
        cmocka_unit_test(test_answers_whole),
        cmocka_unit_test(test_answers_split_at_every_byte_boundary),
        cmocka_unit_test(test_answers_byte_by_byte_with_refusals),
        cmocka_unit_test(test_answer_head_over_the_limit_fails),
        cmocka_unit_test(test_parser_is_reused_across_answers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
