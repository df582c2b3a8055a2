/* Unit tests of agpu_name: Ollama's model names reduced to one comparable key. */
#include "agpu_name.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static void expect_key(const char *name, const char *key)
{
    char out[AGPU_NAME_KEY_MAX];
    assert_int_equal(agpu_name_key(name, out, sizeof out), 0);
    assert_string_equal(out, key);
}

static void test_defaults_are_dropped_and_latest_added(void **state)
{
    expect_key("llama3", "llama3:latest");
    expect_key("llama3:latest", "llama3:latest");
    expect_key("library/llama3", "llama3:latest");
    expect_key("registry.ollama.ai/library/llama3:latest", "llama3:latest");
    expect_key("registry.ollama.ai/library/llama3:8b", "llama3:8b");
}

static void test_other_namespaces_and_hosts_are_kept(void **state)
{
    expect_key("registry.ollama.ai/jmorgan/m", "jmorgan/m:latest");
    expect_key("jmorgan/m:q4", "jmorgan/m:q4");
    expect_key("hf.co/user/repo:Q4_K_M", "hf.co/user/repo:q4_k_m");
    /* a ':' before the last '/' is a port, not a tag */
    expect_key("myhost:5000/ns/m", "myhost:5000/ns/m:latest");
    expect_key("myhost:5000/ns/m:v1", "myhost:5000/ns/m:v1");
}

static void test_matching_is_case_insensitive(void **state)
{
    expect_key("Llama3:Latest", "llama3:latest");
    expect_key("LIBRARY/LLAMA3", "llama3:latest");
}

static void test_empty_tag_means_latest(void **state)
{
    expect_key("llama3:", "llama3:latest");
}

static void test_bad_names_are_refused(void **state)
{
    char out[AGPU_NAME_KEY_MAX], tiny[4], huge[600];
    assert_int_equal(agpu_name_key("", out, sizeof out), -1);
    assert_int_equal(agpu_name_key("registry.ollama.ai/", out, sizeof out), -1);
    assert_int_equal(agpu_name_key("llama3", tiny, sizeof tiny), -1);
    memset(huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    assert_int_equal(agpu_name_key(huge, out, sizeof out), -1);
}

static void test_key_fills_its_buffer_exactly(void **state)
{
    char out[6];
    assert_int_equal(agpu_name_key("ab:cd", out, sizeof out), 0);
    assert_string_equal(out, "ab:cd");
    assert_int_equal(agpu_name_key("abc", out, sizeof out), -1); /* "abc:latest" */
    assert_int_equal(agpu_name_key("ab:cde", out, sizeof out), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_are_dropped_and_latest_added),
        cmocka_unit_test(test_other_namespaces_and_hosts_are_kept),
        cmocka_unit_test(test_matching_is_case_insensitive),
        cmocka_unit_test(test_empty_tag_means_latest),
        cmocka_unit_test(test_bad_names_are_refused),
        cmocka_unit_test(test_key_fills_its_buffer_exactly),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
