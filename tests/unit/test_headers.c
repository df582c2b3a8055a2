/* Unit tests of agpu_headers: which headers cross the proxy in each direction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "agpu_headers.h"

static const char *const hop_by_hop[] = {"Connection",
                                         "Keep-Alive",
                                         "Proxy-Connection",
                                         "Proxy-Authenticate",
                                         "Proxy-Authorization",
                                         "TE",
                                         "Trailer",
                                         "Transfer-Encoding",
                                         "Upgrade"};
#define HOP_COUNT (sizeof hop_by_hop / sizeof hop_by_hop[0])

/* Ordinary end-to-end headers both directions must carry. */
static const char *const end_to_end[] = {"Content-Type",    "Authorization",    "Accept",
                                         "User-Agent",      "Cache-Control",    "X-Request-Id",
                                         "Accept-Encoding", "Content-Encoding", "Vary"};
#define E2E_COUNT (sizeof end_to_end / sizeof end_to_end[0])

/* ---- hop-by-hop ---- */

static void test_hop_by_hop_list_recognised(void **state)
{
    for (size_t i = 0; i < HOP_COUNT; i++)
        assert_true(agpu_headers_is_hop_by_hop(hop_by_hop[i]));
}

static void test_hop_by_hop_case_insensitive(void **state)
{
    assert_true(agpu_headers_is_hop_by_hop("connection"));
    assert_true(agpu_headers_is_hop_by_hop("CONNECTION"));
    assert_true(agpu_headers_is_hop_by_hop("transfer-encoding"));
    assert_true(agpu_headers_is_hop_by_hop("kEeP-aLiVe"));
    assert_true(agpu_headers_is_hop_by_hop("te"));
    assert_true(agpu_headers_is_hop_by_hop("UPGRADE"));
}

static void test_hop_by_hop_excludes_end_to_end(void **state)
{
    for (size_t i = 0; i < E2E_COUNT; i++)
        assert_false(agpu_headers_is_hop_by_hop(end_to_end[i]));
    assert_false(agpu_headers_is_hop_by_hop("Host"));
    assert_false(agpu_headers_is_hop_by_hop("Content-Length"));
}

static void test_hop_by_hop_needs_exact_name(void **state)
{
    assert_false(agpu_headers_is_hop_by_hop("Connections"));
    assert_false(agpu_headers_is_hop_by_hop("Connectio"));
    assert_false(agpu_headers_is_hop_by_hop("X-Connection"));
    assert_false(agpu_headers_is_hop_by_hop("TE "));
    assert_false(agpu_headers_is_hop_by_hop("Trailers"));
    assert_false(agpu_headers_is_hop_by_hop(""));
}

/* ---- request direction ---- */

static void test_request_forwards_end_to_end(void **state)
{
    for (size_t i = 0; i < E2E_COUNT; i++)
        assert_true(agpu_headers_forward_request(end_to_end[i]));
}

static void test_request_drops_hop_by_hop(void **state)
{
    for (size_t i = 0; i < HOP_COUNT; i++)
        assert_false(agpu_headers_forward_request(hop_by_hop[i]));
}

static void test_request_drops_host(void **state)
{
    assert_false(agpu_headers_forward_request("Host"));
    assert_false(agpu_headers_forward_request("host"));
}

static void test_request_drops_content_length_and_expect(void **state)
{
    assert_false(agpu_headers_forward_request("Content-Length"));
    assert_false(agpu_headers_forward_request("content-length"));
    assert_false(agpu_headers_forward_request("Expect"));
    assert_false(agpu_headers_forward_request("EXPECT"));
}

static void test_request_drops_origin(void **state)
{
    assert_false(agpu_headers_forward_request("Origin"));
    assert_false(agpu_headers_forward_request("ORIGIN"));
}

static void test_request_keeps_date(void **state)
{
    /* Date is only the response side's own */
    assert_true(agpu_headers_forward_request("Date"));
}

static void test_request_keeps_similar_names(void **state)
{
    assert_true(agpu_headers_forward_request("X-Forwarded-Host"));
    assert_true(agpu_headers_forward_request("Hosts"));
    assert_true(agpu_headers_forward_request("Origin-Agent-Cluster"));
    assert_true(agpu_headers_forward_request("Content-Length-X"));
}

/* ---- response direction ---- */

static void test_response_forwards_end_to_end(void **state)
{
    for (size_t i = 0; i < E2E_COUNT; i++)
        assert_true(agpu_headers_forward_response(end_to_end[i]));
}

static void test_response_drops_hop_by_hop(void **state)
{
    for (size_t i = 0; i < HOP_COUNT; i++)
        assert_false(agpu_headers_forward_response(hop_by_hop[i]));
}

static void test_response_drops_content_length_and_date(void **state)
{
    assert_false(agpu_headers_forward_response("Content-Length"));
    assert_false(agpu_headers_forward_response("CONTENT-LENGTH"));
    assert_false(agpu_headers_forward_response("Date"));
    assert_false(agpu_headers_forward_response("date"));
}

static void test_response_keeps_request_only_names(void **state)
{
    /* Host, Expect and Origin are dropped only on the way up */
    assert_true(agpu_headers_forward_response("Host"));
    assert_true(agpu_headers_forward_response("Expect"));
    assert_true(agpu_headers_forward_response("Origin"));
}

static void test_response_keeps_ollama_and_cors_headers(void **state)
{
    assert_true(agpu_headers_forward_response("Access-Control-Allow-Origin"));
    assert_true(agpu_headers_forward_response("Set-Cookie"));
    assert_true(agpu_headers_forward_response("Location"));
    assert_true(agpu_headers_forward_response("ETag"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hop_by_hop_list_recognised),
        cmocka_unit_test(test_hop_by_hop_case_insensitive),
        cmocka_unit_test(test_hop_by_hop_excludes_end_to_end),
        cmocka_unit_test(test_hop_by_hop_needs_exact_name),
        cmocka_unit_test(test_request_forwards_end_to_end),
        cmocka_unit_test(test_request_drops_hop_by_hop),
        cmocka_unit_test(test_request_drops_host),
        cmocka_unit_test(test_request_drops_content_length_and_expect),
        cmocka_unit_test(test_request_drops_origin),
        cmocka_unit_test(test_request_keeps_date),
        cmocka_unit_test(test_request_keeps_similar_names),
        cmocka_unit_test(test_response_forwards_end_to_end),
        cmocka_unit_test(test_response_drops_hop_by_hop),
        cmocka_unit_test(test_response_drops_content_length_and_date),
        cmocka_unit_test(test_response_keeps_request_only_names),
        cmocka_unit_test(test_response_keeps_ollama_and_cors_headers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
