/* Unit tests of agpu_json: the error bodies agpu writes in Ollama's and OpenAI's shapes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "agpu_json.h"

/* Writes the body into a roomy buffer and checks it, its length and its NUL. */
static void assert_body(agpu_error_style_t style, int status, const char *message, const char *want)
{
    char out[2048];
    memset(out, 'x', sizeof out);
    size_t n = agpu_json_error(out, sizeof out, style, status, message);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
}

static void assert_openai_type(int status, const char *type)
{
    char want[256];
    snprintf(want, sizeof want,
             "{\"error\":{\"message\":\"m\",\"type\":\"%s\",\"param\":null,\"code\":null}}", type);
    assert_body(AGPU_ERROR_OPENAI, status, "m", want);
}

/* ---- Ollama's shape ---- */

static void test_ollama_shape(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 502, "no Ollama is reachable",
                "{\"error\":\"no Ollama is reachable\"}");
}

static void test_ollama_shape_ignores_status(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 404, "x", "{\"error\":\"x\"}");
    assert_body(AGPU_ERROR_OLLAMA, 400, "x", "{\"error\":\"x\"}");
}

static void test_ollama_empty_message(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 500, "", "{\"error\":\"\"}");
}

/* ---- OpenAI's shape ---- */

static void test_openai_shape(void **state)
{
    assert_body(AGPU_ERROR_OPENAI, 502, "upstream down",
                "{\"error\":{\"message\":\"upstream down\",\"type\":\"api_error\","
                "\"param\":null,\"code\":null}}");
}

static void test_openai_400_is_invalid_request(void **state)
{
    assert_openai_type(400, "invalid_request_error");
}

static void test_openai_413_is_api_error_as_ollama(void **state)
{
    assert_openai_type(413, "api_error"); /* Ollama: only 400 and 404 have their own type */
}

static void test_openai_404_is_not_found(void **state)
{
    assert_openai_type(404, "not_found_error");
}

static void test_openai_other_statuses_are_api_error(void **state)
{
    const int statuses[] = {401, 403, 405, 429, 500, 502, 503, 504};
    for (size_t i = 0; i < sizeof statuses / sizeof statuses[0]; i++)
        assert_openai_type(statuses[i], "api_error");
}

/* ---- escaping ---- */

static void test_escapes_quotes_and_backslashes(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 400, "model \"llama\" at C:\\x",
                "{\"error\":\"model \\\"llama\\\" at C:\\\\x\"}");
}

static void test_escapes_newline_tab_cr(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 500, "a\nb\tc\rd", "{\"error\":\"a\\nb\\tc\\rd\"}");
}

/* jansson writes \u escapes in upper-case hex; both cases are valid JSON */
static void test_escapes_other_control_chars(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 500, "\x01\x1f\x7f", "{\"error\":\"\\u0001\\u001F\x7f\"}");
}

static void test_escapes_in_openai_message(void **state)
{
    assert_body(AGPU_ERROR_OPENAI, 500, "\"q\"\n",
                "{\"error\":{\"message\":\"\\\"q\\\"\\n\",\"type\":\"api_error\","
                "\"param\":null,\"code\":null}}");
}

static void test_utf8_passes_through(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 500, "mod\xc3\xa8le \xe2\x9c\x93",
                "{\"error\":\"mod\xc3\xa8le \xe2\x9c\x93\"}");
}

static void test_html_is_not_mangled(void **state)
{
    assert_body(AGPU_ERROR_OLLAMA, 500, "<b>a & b</b> / c", "{\"error\":\"<b>a & b</b> / c\"}");
}

/* A message that is not UTF-8 cannot be a JSON string: no body rather than a broken one. */
static void test_invalid_utf8_message_is_refused(void **state)
{
    char out[256];
    assert_int_equal(agpu_json_error(out, sizeof out, AGPU_ERROR_OLLAMA, 500, "bad \xff byte"), 0);
}

/* ---- buffer size ---- */

static void test_exact_fit_needs_room_for_nul(void **state)
{
    const char *want = "{\"error\":\"abc\"}"; /* 15 characters */
    char out[16];
    assert_int_equal(agpu_json_error(out, 15, AGPU_ERROR_OLLAMA, 500, "abc"), 0);
    assert_int_equal(agpu_json_error(out, 16, AGPU_ERROR_OLLAMA, 500, "abc"), 15);
    assert_string_equal(out, want);
}

static void test_too_small_buffer_returns_zero(void **state)
{
    char out[8];
    assert_int_equal(agpu_json_error(out, sizeof out, AGPU_ERROR_OLLAMA, 500, "a long message"), 0);
    assert_int_equal(agpu_json_error(out, sizeof out, AGPU_ERROR_OPENAI, 500, "m"), 0);
}

static void test_too_small_buffer_not_overrun(void **state)
{
    char out[32];
    memset(out, '#', sizeof out);
    assert_int_equal(agpu_json_error(out, 10, AGPU_ERROR_OLLAMA, 500, "a long message"), 0);
    for (size_t i = 10; i < sizeof out; i++)
        assert_int_equal(out[i], '#');
}

static void test_zero_size_returns_zero(void **state)
{
    char out[1] = {'#'};
    assert_int_equal(agpu_json_error(out, 0, AGPU_ERROR_OLLAMA, 500, "m"), 0);
    assert_int_equal(out[0], '#');
}

static void test_escaping_counts_toward_size(void **state)
{
    /* 4 control bytes become 24 characters: 10 + 24 + 2 = 36 */
    char out[64];
    assert_int_equal(agpu_json_error(out, 36, AGPU_ERROR_OLLAMA, 500, "\x01\x02\x03\x04"), 0);
    assert_int_equal(agpu_json_error(out, 37, AGPU_ERROR_OLLAMA, 500, "\x01\x02\x03\x04"), 36);
}

/* ---- style by path ---- */

static void test_style_v1_paths_are_openai(void **state)
{
    assert_int_equal(agpu_json_error_style("/v1/chat/completions"), AGPU_ERROR_OPENAI);
    assert_int_equal(agpu_json_error_style("/v1/models"), AGPU_ERROR_OPENAI);
    assert_int_equal(agpu_json_error_style("/v1/"), AGPU_ERROR_OPENAI);
}

static void test_style_api_paths_are_ollama(void **state)
{
    assert_int_equal(agpu_json_error_style("/api/chat"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style("/api/tags"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style("/"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style(""), AGPU_ERROR_OLLAMA);
}

static void test_style_needs_v1_segment(void **state)
{
    assert_int_equal(agpu_json_error_style("/v1"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style("/v10/x"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style("/V1/models"), AGPU_ERROR_OLLAMA);
    assert_int_equal(agpu_json_error_style("/api/v1/x"), AGPU_ERROR_OLLAMA);
}

static void test_request_model_reads_model_then_name(void **state)
{
    char out[64];
    const char *a = "{\"prompt\":\"x\",\"model\":\"llama3.2\"}";
    assert_int_equal(agpu_json_request_model(a, strlen(a), out, sizeof out), 0);
    assert_string_equal(out, "llama3.2");
    const char *b = "{\"name\":\"qwen\"}";
    assert_int_equal(agpu_json_request_model(b, strlen(b), out, sizeof out), 0);
    assert_string_equal(out, "qwen");
}

static void test_request_model_refuses_what_names_none(void **state)
{
    char out[8];
    const char *bodies[] = {"", "{", "[1]", "{\"model\":3}", "{\"model\":\"\"}",
                            "{\"model\":\"much-too-long-for-out\"}", "{\"prompt\":\"x\"}"};
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++)
        assert_int_equal(agpu_json_request_model(bodies[i], strlen(bodies[i]), out, sizeof out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ollama_shape),
        cmocka_unit_test(test_ollama_shape_ignores_status),
        cmocka_unit_test(test_ollama_empty_message),
        cmocka_unit_test(test_openai_shape),
        cmocka_unit_test(test_openai_400_is_invalid_request),
        cmocka_unit_test(test_request_model_reads_model_then_name),
        cmocka_unit_test(test_request_model_refuses_what_names_none),
        cmocka_unit_test(test_openai_413_is_api_error_as_ollama),
        cmocka_unit_test(test_openai_404_is_not_found),
        cmocka_unit_test(test_openai_other_statuses_are_api_error),
        cmocka_unit_test(test_escapes_quotes_and_backslashes),
        cmocka_unit_test(test_escapes_newline_tab_cr),
        cmocka_unit_test(test_escapes_other_control_chars),
        cmocka_unit_test(test_escapes_in_openai_message),
        cmocka_unit_test(test_utf8_passes_through),
        cmocka_unit_test(test_html_is_not_mangled),
        cmocka_unit_test(test_invalid_utf8_message_is_refused),
        cmocka_unit_test(test_exact_fit_needs_room_for_nul),
        cmocka_unit_test(test_too_small_buffer_returns_zero),
        cmocka_unit_test(test_too_small_buffer_not_overrun),
        cmocka_unit_test(test_zero_size_returns_zero),
        cmocka_unit_test(test_escaping_counts_toward_size),
        cmocka_unit_test(test_style_v1_paths_are_openai),
        cmocka_unit_test(test_style_api_paths_are_ollama),
        cmocka_unit_test(test_style_needs_v1_segment),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
