/* Unit tests of agpu_cors: Ollama's CORS origins and its DNS-rebinding Host check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agpu_cors.h"

/* A local Host, so the Host check never gets in the way of the origin rules. */
#define LOCAL_HOST "127.0.0.1:11435"

static agpu_cors_verdict_t verdict_for(const char *extra, bool loopback_only, const char *method,
                                       const char *origin, const char *host)
{
    agpu_cors_t *cors = agpu_cors_new(extra, loopback_only);
    assert_non_null(cors);
    agpu_cors_verdict_t v = agpu_cors_check(cors, method, origin, host);
    agpu_cors_destroy(&cors);
    assert_null(cors);
    return v;
}

/* The verdict of a GET from origin on a default node (no extras, any interface). */
static agpu_cors_verdict_t origin_verdict(const char *origin)
{
    return verdict_for(NULL, false, "GET", origin, LOCAL_HOST);
}

/* The verdict of a plain GET with this Host on a loopback-only node. */
static agpu_cors_verdict_t host_verdict(const char *host)
{
    return verdict_for(NULL, true, "GET", NULL, host);
}

/* ---- lifetime ---- */

static void test_destroy_null_is_harmless(void **state)
{
    agpu_cors_t *cors = NULL;
    agpu_cors_destroy(&cors);
    assert_null(cors);
}

/* ---- not cross-origin ---- */

static void test_no_origin_passes(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "POST", NULL, LOCAL_HOST), AGPU_CORS_PASS);
    assert_int_equal(verdict_for(NULL, false, "OPTIONS", NULL, LOCAL_HOST), AGPU_CORS_PASS);
}

static void test_empty_origin_passes(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "GET", "", LOCAL_HOST), AGPU_CORS_PASS);
}

static void test_same_origin_http_passes(void **state)
{
    /* an origin no rule allows, but it is the node itself */
    assert_int_equal(verdict_for(NULL, false, "POST", "http://gpu-box:11435", "gpu-box:11435"),
                     AGPU_CORS_PASS);
}

static void test_same_origin_https_passes(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "POST", "https://gpu-box", "gpu-box"),
                     AGPU_CORS_PASS);
}

static void test_same_origin_options_is_not_preflight(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "OPTIONS", "http://gpu-box:1", "gpu-box:1"),
                     AGPU_CORS_PASS);
}

static void test_same_origin_needs_exact_host(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "GET", "http://gpu-box:1", "gpu-box:2"),
                     AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(NULL, false, "GET", "http://gpu-box", "gpu-box:80"),
                     AGPU_CORS_FORBID);
}

static void test_origin_without_host_is_cross_origin(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "GET", "http://evil.example", NULL),
                     AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(NULL, false, "GET", "http://localhost:3000", NULL),
                     AGPU_CORS_ALLOW);
}

/* ---- Ollama's default origins ---- */

static void test_default_localhost_any_port_allowed(void **state)
{
    assert_int_equal(origin_verdict("http://localhost"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("https://localhost"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("http://localhost:3000"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("https://localhost:8443"), AGPU_CORS_ALLOW);
}

static void test_default_127_0_0_1_any_port_allowed(void **state)
{
    assert_int_equal(origin_verdict("http://127.0.0.1"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("https://127.0.0.1"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("http://127.0.0.1:5173"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("https://127.0.0.1:1"), AGPU_CORS_ALLOW);
}

static void test_default_0_0_0_0_any_port_allowed(void **state)
{
    assert_int_equal(origin_verdict("http://0.0.0.0"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("https://0.0.0.0:8080"), AGPU_CORS_ALLOW);
}

static void test_default_app_schemes_allowed(void **state)
{
    assert_int_equal(origin_verdict("app://ollama"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("file://"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("tauri://localhost"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("vscode-webview://abc123"), AGPU_CORS_ALLOW);
    assert_int_equal(origin_verdict("vscode-file://vscode-app"), AGPU_CORS_ALLOW);
}

static void test_default_other_origins_forbidden(void **state)
{
    assert_int_equal(origin_verdict("http://evil.example"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("https://192.168.1.5:3000"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("null"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("chrome-extension://abc"), AGPU_CORS_FORBID);
}

static void test_default_lookalike_hosts_forbidden(void **state)
{
    /* the wildcard is only for the port: a longer name is another site */
    assert_int_equal(origin_verdict("http://localhost.evil.example"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("http://127.0.0.1.nip.io"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("http://localhostevil"), AGPU_CORS_FORBID);
    assert_int_equal(origin_verdict("ftp://localhost"), AGPU_CORS_FORBID);
}

static void test_default_origin_match_is_case_sensitive(void **state)
{
    /* gin-contrib/cors compares origins as given (browsers send them lower-case) */
    assert_int_equal(origin_verdict("HTTP://LOCALHOST"), AGPU_CORS_FORBID);
}

/* ---- preflight vs allow ---- */

static void test_allowed_options_is_preflight(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "OPTIONS", "http://localhost:3000", LOCAL_HOST),
                     AGPU_CORS_PREFLIGHT);
}

static void test_allowed_other_methods_are_allow(void **state)
{
    const char *methods[] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"};
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++)
        assert_int_equal(verdict_for(NULL, false, methods[i], "app://x", LOCAL_HOST),
                         AGPU_CORS_ALLOW);
}

static void test_forbidden_options_is_forbid(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "OPTIONS", "http://evil.example", LOCAL_HOST),
                     AGPU_CORS_FORBID);
}

/* ---- OLLAMA_ORIGINS extras ---- */

static void test_extra_exact_origin_allowed(void **state)
{
    assert_int_equal(verdict_for("https://chat.example.com", false, "POST",
                                 "https://chat.example.com", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for("https://chat.example.com", false, "POST",
                                 "https://chat.example.com:8443", LOCAL_HOST),
                     AGPU_CORS_FORBID);
}

static void test_extra_list_each_entry_allowed(void **state)
{
    const char *extra = "https://a.example,https://b.example,https://c.example";
    assert_int_equal(verdict_for(extra, false, "GET", "https://a.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://b.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://c.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://d.example", LOCAL_HOST),
                     AGPU_CORS_FORBID);
}

static void test_extra_entries_trimmed(void **state)
{
    const char *extra = "  https://a.example , https://b.example\t";
    assert_int_equal(verdict_for(extra, false, "GET", "https://a.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://b.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
}

static void test_extra_empty_entries_ignored(void **state)
{
    /* an empty entry must not become a rule matching nothing-or-everything */
    assert_int_equal(verdict_for(",, ,", false, "GET", "http://evil.example", LOCAL_HOST),
                     AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(",, ,", false, "GET", "http://localhost:1", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
}

static void test_extra_star_allows_everything(void **state)
{
    assert_int_equal(verdict_for("*", false, "POST", "http://evil.example", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for("*", false, "OPTIONS", "null", LOCAL_HOST), AGPU_CORS_PREFLIGHT);
}

static void test_extra_star_prefix_wildcard(void **state)
{
    const char *extra = "https://*.example.com";
    assert_int_equal(verdict_for(extra, false, "GET", "https://chat.example.com", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://a.b.example.com", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "https://example.com", LOCAL_HOST),
                     AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(extra, false, "GET", "http://chat.example.com", LOCAL_HOST),
                     AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(extra, false, "GET", "https://chat.example.com.evil", LOCAL_HOST),
                     AGPU_CORS_FORBID);
}

static void test_extra_star_suffix_wildcard(void **state)
{
    assert_int_equal(
        verdict_for("chrome-extension://*", false, "GET", "chrome-extension://abc", LOCAL_HOST),
        AGPU_CORS_ALLOW);
    assert_int_equal(
        verdict_for("*.example.com", false, "GET", "https://x.example.com", LOCAL_HOST),
        AGPU_CORS_ALLOW);
}

static void test_extra_star_needs_prefix_and_suffix_apart(void **state)
{
    /* "ab*ba" must not match "aba": prefix and suffix would overlap */
    assert_int_equal(verdict_for("ab*ba", false, "GET", "aba", LOCAL_HOST), AGPU_CORS_FORBID);
    assert_int_equal(verdict_for("ab*ba", false, "GET", "abba", LOCAL_HOST), AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for("ab*ba", false, "GET", "ab--ba", LOCAL_HOST), AGPU_CORS_ALLOW);
}

static void test_extra_keeps_defaults(void **state)
{
    assert_int_equal(
        verdict_for("https://a.example", false, "GET", "http://localhost:3000", LOCAL_HOST),
        AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for("https://a.example", false, "GET", "vscode-file://x", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
}

/* The header promises every extra origin and then all of Ollama's defaults: a long
 * OLLAMA_ORIGINS (here 120 entries, 479 characters, well within --origins' 1023) must not push
 * the defaults out of the table. */
static void test_many_extra_origins_keep_defaults(void **state)
{
    char extra[1024] = "";
    for (int i = 0; i < 120; i++) {
        char entry[16];
        snprintf(entry, sizeof entry, "%sx%d", i ? "," : "", i);
        strcat(extra, entry);
    }
    assert_true(strlen(extra) < 1024);
    assert_int_equal(verdict_for(extra, false, "GET", "x119", LOCAL_HOST), AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "http://localhost:3000", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "app://ollama", LOCAL_HOST), AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(extra, false, "GET", "vscode-file://x", LOCAL_HOST),
                     AGPU_CORS_ALLOW);
}

/* ---- the loopback Host check ---- */

static void test_host_check_off_allows_any_host(void **state)
{
    assert_int_equal(verdict_for(NULL, false, "GET", NULL, "attacker.example"), AGPU_CORS_PASS);
    assert_int_equal(verdict_for(NULL, false, "GET", NULL, "8.8.8.8:11434"), AGPU_CORS_PASS);
    assert_int_equal(verdict_for(NULL, false, "GET", NULL, NULL), AGPU_CORS_PASS);
}

static void test_host_check_missing_host_allowed(void **state)
{
    assert_int_equal(host_verdict(NULL), AGPU_CORS_PASS);
    assert_int_equal(host_verdict(""), AGPU_CORS_PASS);
}

static void test_host_check_loopback_ipv4(void **state)
{
    assert_int_equal(host_verdict("127.0.0.1"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("127.0.0.1:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("127.1.2.3:80"), AGPU_CORS_PASS);
}

static void test_host_check_loopback_ipv6(void **state)
{
    assert_int_equal(host_verdict("[::1]:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("[::1]"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("::1"), AGPU_CORS_PASS);
}

static void test_host_check_unspecified_allowed(void **state)
{
    assert_int_equal(host_verdict("0.0.0.0:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("[::]:11434"), AGPU_CORS_PASS);
}

static void test_host_check_private_ipv4_ranges(void **state)
{
    assert_int_equal(host_verdict("10.0.0.1"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("10.255.255.255:1"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("172.16.0.1"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("172.31.255.255:8080"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("192.168.1.10:11434"), AGPU_CORS_PASS);
}

static void test_host_check_private_range_edges(void **state)
{
    assert_int_equal(host_verdict("172.15.255.255"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("172.32.0.0"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("192.169.0.1"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("11.0.0.1"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("128.0.0.1"), AGPU_CORS_FORBID);
}

static void test_host_check_ipv6_unique_local_allowed(void **state)
{
    assert_int_equal(host_verdict("[fd12:3456::1]:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("[fc00::1]"), AGPU_CORS_PASS);
}

static void test_host_check_public_ips_forbidden(void **state)
{
    assert_int_equal(host_verdict("8.8.8.8"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("93.184.216.34:11434"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("[2001:db8::1]:11434"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("[fe80::1]"), AGPU_CORS_FORBID);
}

static void test_host_check_localhost_names(void **state)
{
    assert_int_equal(host_verdict("localhost"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("localhost:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("LOCALHOST:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("app.localhost:3000"), AGPU_CORS_PASS);
}

static void test_host_check_local_tlds(void **state)
{
    assert_int_equal(host_verdict("gpu-box.local"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("gpu-box.local:11434"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("GPU-BOX.LOCAL"), AGPU_CORS_PASS);
    assert_int_equal(host_verdict("host.docker.internal:11434"), AGPU_CORS_PASS);
}

static void test_host_check_tld_must_be_suffix_label(void **state)
{
    assert_int_equal(host_verdict("evil-local"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("local.evil.example"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("evil.localhost.example"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("evilinternal"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("evil.locals"), AGPU_CORS_FORBID);
}

static void test_host_check_other_names_forbidden(void **state)
{
    assert_int_equal(host_verdict("attacker.example"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("attacker.example:11434"), AGPU_CORS_FORBID);
    assert_int_equal(host_verdict("localhostx"), AGPU_CORS_FORBID);
}

static void test_host_check_own_hostname_allowed(void **state)
{
    char name[256] = "";
    assert_int_equal(gethostname(name, sizeof name - 1), 0);
    if (name[0] == '\0')
        skip();
    char host[300];
    snprintf(host, sizeof host, "%s:11434", name);
    assert_int_equal(host_verdict(name), AGPU_CORS_PASS);
    assert_int_equal(host_verdict(host), AGPU_CORS_PASS);
}

static void test_host_check_malformed_forbidden(void **state)
{
    assert_int_equal(host_verdict("[::1"), AGPU_CORS_FORBID);
    char longhost[400];
    memset(longhost, 'a', sizeof longhost - 1);
    longhost[sizeof longhost - 1] = '\0';
    memcpy(longhost + sizeof longhost - 7, ".local", 6);
    assert_int_equal(host_verdict(longhost), AGPU_CORS_FORBID);
}

static void test_host_check_applies_to_allowed_origin(void **state)
{
    /* a DNS-rebinding page: its origin matches its own Host, which is not local */
    assert_int_equal(
        verdict_for(NULL, true, "POST", "http://attacker.example:11434", "attacker.example:11434"),
        AGPU_CORS_FORBID);
    assert_int_equal(verdict_for(NULL, true, "GET", "http://localhost:3000", "attacker.example"),
                     AGPU_CORS_FORBID);
}

static void test_host_check_keeps_origin_verdict_when_local(void **state)
{
    assert_int_equal(verdict_for(NULL, true, "OPTIONS", "http://localhost:3000", "localhost:11434"),
                     AGPU_CORS_PREFLIGHT);
    assert_int_equal(verdict_for(NULL, true, "GET", "http://localhost:3000", "localhost:11434"),
                     AGPU_CORS_ALLOW);
    assert_int_equal(verdict_for(NULL, true, "GET", "http://evil.example", "localhost:11434"),
                     AGPU_CORS_FORBID);
}

/* ---- preflight header values ---- */

static void test_allow_headers_lists_openai_sdk_headers(void **state)
{
    const char *h = agpu_cors_allow_headers();
    assert_non_null(h);
    assert_non_null(strstr(h, "Authorization"));
    assert_non_null(strstr(h, "Content-Type"));
    assert_non_null(strstr(h, "OpenAI-Beta"));
    assert_non_null(strstr(h, "x-stainless-retry-count"));
    assert_null(strchr(h, ' '));
}

static void test_allow_methods_and_max_age(void **state)
{
    assert_string_equal(AGPU_CORS_ALLOW_METHODS, "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS");
    assert_string_equal(AGPU_CORS_MAX_AGE, "43200");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_destroy_null_is_harmless),
        cmocka_unit_test(test_no_origin_passes),
        cmocka_unit_test(test_empty_origin_passes),
        cmocka_unit_test(test_same_origin_http_passes),
        cmocka_unit_test(test_same_origin_https_passes),
        cmocka_unit_test(test_same_origin_options_is_not_preflight),
        cmocka_unit_test(test_same_origin_needs_exact_host),
        cmocka_unit_test(test_origin_without_host_is_cross_origin),
        cmocka_unit_test(test_default_localhost_any_port_allowed),
        cmocka_unit_test(test_default_127_0_0_1_any_port_allowed),
        cmocka_unit_test(test_default_0_0_0_0_any_port_allowed),
        cmocka_unit_test(test_default_app_schemes_allowed),
        cmocka_unit_test(test_default_other_origins_forbidden),
        cmocka_unit_test(test_default_lookalike_hosts_forbidden),
        cmocka_unit_test(test_default_origin_match_is_case_sensitive),
        cmocka_unit_test(test_allowed_options_is_preflight),
        cmocka_unit_test(test_allowed_other_methods_are_allow),
        cmocka_unit_test(test_forbidden_options_is_forbid),
        cmocka_unit_test(test_extra_exact_origin_allowed),
        cmocka_unit_test(test_extra_list_each_entry_allowed),
        cmocka_unit_test(test_extra_entries_trimmed),
        cmocka_unit_test(test_extra_empty_entries_ignored),
        cmocka_unit_test(test_extra_star_allows_everything),
        cmocka_unit_test(test_extra_star_prefix_wildcard),
        cmocka_unit_test(test_extra_star_suffix_wildcard),
        cmocka_unit_test(test_extra_star_needs_prefix_and_suffix_apart),
        cmocka_unit_test(test_extra_keeps_defaults),
        cmocka_unit_test(test_many_extra_origins_keep_defaults),
        cmocka_unit_test(test_host_check_off_allows_any_host),
        cmocka_unit_test(test_host_check_missing_host_allowed),
        cmocka_unit_test(test_host_check_loopback_ipv4),
        cmocka_unit_test(test_host_check_loopback_ipv6),
        cmocka_unit_test(test_host_check_unspecified_allowed),
        cmocka_unit_test(test_host_check_private_ipv4_ranges),
        cmocka_unit_test(test_host_check_private_range_edges),
        cmocka_unit_test(test_host_check_ipv6_unique_local_allowed),
        cmocka_unit_test(test_host_check_public_ips_forbidden),
        cmocka_unit_test(test_host_check_localhost_names),
        cmocka_unit_test(test_host_check_local_tlds),
        cmocka_unit_test(test_host_check_tld_must_be_suffix_label),
        cmocka_unit_test(test_host_check_other_names_forbidden),
        cmocka_unit_test(test_host_check_own_hostname_allowed),
        cmocka_unit_test(test_host_check_malformed_forbidden),
        cmocka_unit_test(test_host_check_applies_to_allowed_origin),
        cmocka_unit_test(test_host_check_keeps_origin_verdict_when_local),
        cmocka_unit_test(test_allow_headers_lists_openai_sdk_headers),
        cmocka_unit_test(test_allow_methods_and_max_age),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
