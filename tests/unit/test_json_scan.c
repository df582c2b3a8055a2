/* Unit tests of agpu_json_scan: on well-formed bodies it finds what jansson (a full parser)
 * finds, member by member; malformed structure is refused; megabytes are skipped whole. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "agpu_json_scan.h"

static const char *const KEYS[] = {"model", "name"};
#define VALUE_SIZE 64

/* Scans body for "model" and "name"; returns the scan's result. */
static int scan(const char *body, char values[2][VALUE_SIZE])
{
    return agpu_json_scan_strings(body, strlen(body), KEYS, 2, values[0], VALUE_SIZE);
}

/* What a full parse says the top-level string member key is ("" when none). */
static void parsed(const char *body, const char *key, char *out)
{
    json_t *root = json_loads(body, 0, NULL);
    assert_non_null(root);
    const char *value = json_string_value(json_object_get(root, key));
    strcpy(out, value && strlen(value) < VALUE_SIZE ? value : "");
    json_decref(root);
}

static void test_agrees_with_a_full_parse(void **state)
{
    (void)state;
    const char *bodies[] = {
        "{\"model\":\"llama3.2\",\"prompt\":\"hi\"}",
        "  {\n\t\"prompt\" : \"x\" ,\r\n \"model\" : \"qwen2.5:0.5b\" }  \n",
        "{\"name\":\"nomic-embed-text\"}",
        "{}",
        "{\"prompt\":\"say \\\"model\\\": \\\"no\\\"\",\"model\":\"yes\"}",
        "{\"prompt\":\"ends in a backslash \\\\\",\"model\":\"m\"}",
        "{\"prompt\":\"\\\\\\\\\\\"\",\"model\":\"after-escapes\"}",
        "{\"options\":{\"model\":\"inner\",\"x\":[1,{\"model\":\"deeper\"}]},\"model\":\"outer\"}",
        "{\"messages\":[{\"role\":\"user\",\"content\":\"{\\\"model\\\":1}\"}],\"model\":\"chat\"}",
        "{\"model\":\"first\",\"model\":\"last\"}",
        "{\"model\":\"caf\\u00e9\",\"name\":\"\\ud83d\\ude00\"}",
        "{\"mod\\u0065l\":\"escaped-key\"}",
        "{\"model\":\"a\\/b\\tc\\nd\"}",
        "{\"stream\":false,\"keep_alive\":-1.5e3,\"raw\":true,\"x\":null,\"model\":\"lit\"}",
        "{\"model\":3}",
        "{\"model\":\"string-then-number\",\"model\":7}",
        "{\"model\":[\"not\",\"a\",\"string\"],\"name\":\"by-name\"}",
        "{\"images\":[\"aGVsbG8=\"],\"model\":\"llava\"}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char values[2][VALUE_SIZE], model[VALUE_SIZE], name[VALUE_SIZE];
        assert_int_equal(scan(bodies[i], values), 0);
        parsed(bodies[i], "model", model);
        parsed(bodies[i], "name", name);
        assert_string_equal(values[0], model);
        assert_string_equal(values[1], name);
    }
}

static void test_refuses_what_is_not_one_object(void **state)
{
    (void)state;
    const char *bodies[] = {
        "",
        "   ",
        "[{\"model\":\"x\"}]",
        "\"model\"",
        "{",
        "{\"model\":\"unterminated}",
        "{\"model\" \"no colon\"}",
        "{\"model\":\"x\",}",
        "{\"model\":\"x\"} trailing",
        "{\"model\":\"x\"}{}",
        "{model:\"x\"}",
        "{\"model\":}",
        "{\"a\":{\"b\":1}",
        "{\"a\":[1,2}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        char values[2][VALUE_SIZE];
        assert_int_equal(scan(bodies[i], values), -1);
    }
}

static void test_bad_or_long_value_is_empty(void **state)
{
    (void)state;
    char values[2][VALUE_SIZE];
    const char *bodies[] = {
        "{\"model\":\"bad escape \\q\"}",
        "{\"model\":\"lone surrogate \\ud800\"}",
        "{\"model\":\"low first \\udc00\\ud800\"}",
        "{\"model\":\"short \\u12\"}",
        "{\"model\":\"nul \\u0000\"}",
        "{\"model\":\"a-name-longer-than-the-room-the-caller-gave-for-it-0123456789abcdef\"}",
        "{\"model\":\"good\",\"model\":\"bad \\x\"}",
    };
    for (size_t i = 0; i < sizeof bodies / sizeof bodies[0]; i++) {
        assert_int_equal(scan(bodies[i], values), 0);
        assert_string_equal(values[0], "");
    }
}

static void test_megabytes_of_image_are_skipped(void **state)
{
    (void)state;
    size_t image = 16U << 20;
    const char *head = "{\"prompt\":\"what is this?\",\"images\":[\"";
    const char *tail = "\"],\"options\":{\"temperature\":0},\"model\":\"llava:13b\"}";
    char *body = malloc(strlen(head) + image + strlen(tail) + 1);
    assert_non_null(body);
    strcpy(body, head);
    memset(body + strlen(head), 'Q', image);
    strcpy(body + strlen(head) + image, tail);
    char values[2][VALUE_SIZE];
    assert_int_equal(scan(body, values), 0);
    assert_string_equal(values[0], "llava:13b");
    assert_string_equal(values[1], "");
    free(body);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agrees_with_a_full_parse),
        cmocka_unit_test(test_refuses_what_is_not_one_object),
        cmocka_unit_test(test_bad_or_long_value_is_empty),
        cmocka_unit_test(test_megabytes_of_image_are_skipped),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
