/* Unit tests of agpu_url: HOST:PORT splitting and Ollama base URLs (OLLAMA_HOST's rules). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "agpu_url.h"

/* ---- helpers ---- */

static void assert_split(const char *text, const char *want_host, unsigned want_port)
{
    char host[300];
    uint16_t port = 0;
    memset(host, 'x', sizeof host);
    assert_int_equal(agpu_url_split_hostport(text, host, sizeof host, &port), 0);
    assert_string_equal(host, want_host);
    assert_int_equal(port, want_port);
}

static void assert_split_fails(const char *text)
{
    char host[300];
    uint16_t port = 0;
    assert_int_equal(agpu_url_split_hostport(text, host, sizeof host, &port), -1);
}

static void assert_base(const char *text, const char *want)
{
    char out[1100];
    memset(out, 'x', sizeof out);
    int rc = agpu_url_ollama_base(text, out, sizeof out);
    if (rc != 0)
        fail_msg("agpu_url_ollama_base(\"%s\") failed, wanted \"%s\"", text, want);
    assert_string_equal(out, want);
}

static void assert_base_fails(const char *text)
{
    char out[1100] = "";
    int rc = agpu_url_ollama_base(text, out, sizeof out);
    if (rc != -1)
        fail_msg("agpu_url_ollama_base(\"%s\") accepted, gave \"%s\"", text, out);
}

/* ---- agpu_url_split_hostport ---- */

static void test_split_ipv4_and_port(void **state)
{
    assert_split("1.2.3.4:11436", "1.2.3.4", 11436);
}

static void test_split_hostname_and_port(void **state)
{
    assert_split("node-1.example.com:80", "node-1.example.com", 80);
}

static void test_split_wildcard_host(void **state)
{
    assert_split("0.0.0.0:11435", "0.0.0.0", 11435);
}

static void test_split_bracketed_ipv6_drops_brackets(void **state)
{
    assert_split("[::1]:11434", "::1", 11434);
    assert_split("[fe80::1%eth0]:9", "fe80::1%eth0", 9);
    assert_split("[::]:1", "::", 1);
}

static void test_split_port_bounds(void **state)
{
    assert_split("h:1", "h", 1);
    assert_split("h:65535", "h", 65535);
    assert_split("h:00080", "h", 80); /* leading zeros are still a port */
}

static void test_split_rejects_port_zero(void **state)
{
    assert_split_fails("h:0");
    assert_split_fails("h:00000");
}

static void test_split_rejects_port_over_65535(void **state)
{
    assert_split_fails("h:65536");
    assert_split_fails("h:99999");
    assert_split_fails("h:123456");
}

static void test_split_rejects_non_numeric_port(void **state)
{
    assert_split_fails("h:http");
    assert_split_fails("h:80a");
    assert_split_fails("h:+80");
    assert_split_fails("h:-1");
    assert_split_fails("h: 80");
    assert_split_fails("h:8 0");
}

static void test_split_rejects_missing_port(void **state)
{
    assert_split_fails("host");
    assert_split_fails("host:");
    assert_split_fails("[::1]");
    assert_split_fails("[::1]:");
    assert_split_fails("");
}

static void test_split_rejects_missing_host(void **state)
{
    assert_split_fails(":80");
    assert_split_fails("[]:80");
}

static void test_split_rejects_unbracketed_ipv6(void **state)
{
    assert_split_fails("::1:80");
    assert_split_fails("a:b:80");
}

static void test_split_rejects_broken_brackets(void **state)
{
    assert_split_fails("[::1:80");
    assert_split_fails("[::1]80");
    assert_split_fails("[::1]x:80");
}

static void test_split_rejects_bad_host_characters(void **state)
{
    assert_split_fails("a b:80");
    assert_split_fails("a/b:80");
    assert_split_fails("http://a:80");
    assert_split_fails("a@b:80");
}

static void test_split_host_must_fit_buffer(void **state)
{
    char host[5];
    uint16_t port = 0;
    assert_int_equal(agpu_url_split_hostport("abcd:1", host, sizeof host, &port), 0);
    assert_string_equal(host, "abcd");
    assert_int_equal(agpu_url_split_hostport("abcde:1", host, sizeof host, &port), -1);
}

/* ---- agpu_url_ollama_base: Ollama's envconfig.Host table, as a client URL ---- */

static void test_base_empty_is_default(void **state)
{
    assert_base("", "http://127.0.0.1:11434");
    assert_base("   ", "http://127.0.0.1:11434");
}

static void test_base_address_only_gets_11434(void **state)
{
    assert_base("1.2.3.4", "http://1.2.3.4:11434");
}

static void test_base_hostname_only_gets_11434(void **state)
{
    assert_base("example.com", "http://example.com:11434");
}

static void test_base_address_and_port(void **state)
{
    assert_base("1.2.3.4:1234", "http://1.2.3.4:1234");
    assert_base("example.com:1234", "http://example.com:1234");
}

static void test_base_only_port_keeps_loopback(void **state)
{
    assert_base(":1234", "http://127.0.0.1:1234");
}

static void test_base_explicit_http_defaults_to_80(void **state)
{
    assert_base("http://1.2.3.4", "http://1.2.3.4:80");
}

static void test_base_explicit_https_defaults_to_443(void **state)
{
    assert_base("https://1.2.3.4", "https://1.2.3.4:443");
}

static void test_base_explicit_scheme_and_port(void **state)
{
    assert_base("http://1.2.3.4:4321", "http://1.2.3.4:4321");
    assert_base("https://1.2.3.4:4321", "https://1.2.3.4:4321");
}

static void test_base_keeps_path(void **state)
{
    assert_base("https://example.com/ollama", "https://example.com:443/ollama");
    assert_base("example.com:8080/a/b", "http://example.com:8080/a/b");
}

static void test_base_strips_trailing_slashes(void **state)
{
    assert_base("http://1.2.3.4:11434/", "http://1.2.3.4:11434");
    assert_base("http://1.2.3.4:11434///", "http://1.2.3.4:11434");
    assert_base("https://example.com/ollama/", "https://example.com:443/ollama");
}

static void test_base_ipv6_bracketed(void **state)
{
    assert_base("[::1]", "http://[::1]:11434");
    assert_base("[::1]:1337", "http://[::1]:1337");
    assert_base("https://[fd00::5]:8443/x", "https://[fd00::5]:8443/x");
}

static void test_base_ipv6_without_brackets(void **state)
{
    assert_base("::1", "http://[::1]:11434");
    assert_base("fd00::5", "http://[fd00::5]:11434");
}

static void test_base_ipv4_wildcard_becomes_loopback(void **state)
{
    assert_base("0.0.0.0", "http://127.0.0.1:11434");
    assert_base("0.0.0.0:8080", "http://127.0.0.1:8080");
    assert_base("http://0.0.0.0", "http://127.0.0.1:80");
}

static void test_base_ipv6_wildcard_becomes_loopback(void **state)
{
    assert_base("[::]", "http://[::1]:11434");
    assert_base("::", "http://[::1]:11434");
    assert_base("[::]:9000", "http://[::1]:9000");
}

static void test_base_surrounding_space_trimmed(void **state)
{
    assert_base(" 1.2.3.4 ", "http://1.2.3.4:11434");
    assert_base("\t1.2.3.4\n", "http://1.2.3.4:11434");
}

static void test_base_double_quotes_stripped(void **state)
{
    assert_base("\"1.2.3.4\"", "http://1.2.3.4:11434");
}

static void test_base_single_quotes_stripped(void **state)
{
    assert_base("'1.2.3.4'", "http://1.2.3.4:11434");
    assert_base("'http://h:1/p'", "http://h:1/p");
}

/* Ollama's own table: " \" 1.2.3.4 \" " reads as 1.2.3.4 (space trimmed inside the quotes). */
static void test_base_space_inside_quotes_trimmed(void **state)
{
    assert_base(" \" 1.2.3.4 \" ", "http://1.2.3.4:11434");
}

static void test_base_rejects_unknown_scheme(void **state)
{
    assert_base_fails("ftp://1.2.3.4");
    assert_base_fails("unix:///run/ollama.sock");
    assert_base_fails("://1.2.3.4");
}

static void test_base_rejects_bad_port(void **state)
{
    assert_base_fails("1.2.3.4:66000");
    assert_base_fails("1.2.3.4:0");
    assert_base_fails(":0");
    assert_base_fails(":66000");
    assert_base_fails("1.2.3.4:http");
    assert_base_fails("1.2.3.4:");
    assert_base_fails("http://h:-1");
}

static void test_base_rejects_bad_host(void **state)
{
    assert_base_fails("bad host");
    assert_base_fails("http://bad host:80");
    assert_base_fails("user@host:80");
    assert_base_fails("[::1");
    assert_base_fails("[::1]x");
}

static void test_base_rejects_output_too_small(void **state)
{
    char out[22]; /* "http://127.0.0.1:11434" is 22 characters: no room for the NUL */
    assert_int_equal(agpu_url_ollama_base("", out, sizeof out), -1);
    char fits[23];
    assert_int_equal(agpu_url_ollama_base("", fits, sizeof fits), 0);
    assert_string_equal(fits, "http://127.0.0.1:11434");
}

static void test_base_rejects_too_long_input(void **state)
{
    char text[1200];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0';
    assert_base_fails(text);
}

static void test_base_rejects_too_long_host(void **state)
{
    char text[300];
    memset(text, 'a', sizeof text - 1);
    text[sizeof text - 1] = '\0'; /* 299 characters: more than a host name may have */
    assert_base_fails(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_split_ipv4_and_port),
        cmocka_unit_test(test_split_hostname_and_port),
        cmocka_unit_test(test_split_wildcard_host),
        cmocka_unit_test(test_split_bracketed_ipv6_drops_brackets),
        cmocka_unit_test(test_split_port_bounds),
        cmocka_unit_test(test_split_rejects_port_zero),
        cmocka_unit_test(test_split_rejects_port_over_65535),
        cmocka_unit_test(test_split_rejects_non_numeric_port),
        cmocka_unit_test(test_split_rejects_missing_port),
        cmocka_unit_test(test_split_rejects_missing_host),
        cmocka_unit_test(test_split_rejects_unbracketed_ipv6),
        cmocka_unit_test(test_split_rejects_broken_brackets),
        cmocka_unit_test(test_split_rejects_bad_host_characters),
        cmocka_unit_test(test_split_host_must_fit_buffer),
        cmocka_unit_test(test_base_empty_is_default),
        cmocka_unit_test(test_base_address_only_gets_11434),
        cmocka_unit_test(test_base_hostname_only_gets_11434),
        cmocka_unit_test(test_base_address_and_port),
        cmocka_unit_test(test_base_only_port_keeps_loopback),
        cmocka_unit_test(test_base_explicit_http_defaults_to_80),
        cmocka_unit_test(test_base_explicit_https_defaults_to_443),
        cmocka_unit_test(test_base_explicit_scheme_and_port),
        cmocka_unit_test(test_base_keeps_path),
        cmocka_unit_test(test_base_strips_trailing_slashes),
        cmocka_unit_test(test_base_ipv6_bracketed),
        cmocka_unit_test(test_base_ipv6_without_brackets),
        cmocka_unit_test(test_base_ipv4_wildcard_becomes_loopback),
        cmocka_unit_test(test_base_ipv6_wildcard_becomes_loopback),
        cmocka_unit_test(test_base_surrounding_space_trimmed),
        cmocka_unit_test(test_base_double_quotes_stripped),
        cmocka_unit_test(test_base_single_quotes_stripped),
        cmocka_unit_test(test_base_space_inside_quotes_trimmed),
        cmocka_unit_test(test_base_rejects_unknown_scheme),
        cmocka_unit_test(test_base_rejects_bad_port),
        cmocka_unit_test(test_base_rejects_bad_host),
        cmocka_unit_test(test_base_rejects_output_too_small),
        cmocka_unit_test(test_base_rejects_too_long_input),
        cmocka_unit_test(test_base_rejects_too_long_host),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
