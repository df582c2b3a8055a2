/* Unit tests of agpu_text: the check of text from the network, and the bounded copy. */
#include "agpu_text.h"

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

static bool clean(const char *s, unsigned flags)
{
    return agpu_text_clean(s, strlen(s), flags);
}

static void test_clean_takes_ascii_and_utf8(void **state)
{
    assert_true(clean("llama3:8b", 0));
    assert_true(clean("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80", 0)); /* é € 😀 */
    assert_true(clean("", 0));
}

static void test_clean_refuses_controls_and_bad_utf8(void **state)
{
    assert_false(clean("a\nb", 0));
    assert_false(clean("a\x7f", 0));
    assert_false(clean("\xc0\xaf", 0));         /* overlong '/' */
    assert_false(clean("\xed\xa0\x80", 0));     /* a surrogate */
    assert_false(clean("\xf4\x90\x80\x80", 0)); /* past U+10FFFF */
    assert_false(clean("\xe2\x82", 0));         /* cut short */
    assert_false(agpu_text_clean("a\0b", 3, 0));
}

static void test_clean_flags_narrow_it(void **state)
{
    assert_true(clean("\xc2\x85", 0));
    assert_false(clean("\xc2\x85", AGPU_TEXT_NO_C1));
    assert_true(clean("\xc2\xa0", AGPU_TEXT_NO_C1));
    assert_true(clean("node-1", AGPU_TEXT_TOKEN));
    assert_false(clean("node 1", AGPU_TEXT_TOKEN));
    assert_false(clean("caf\xc3\xa9", AGPU_TEXT_TOKEN));
}

static void test_copy_fits_or_is_cut(void **state)
{
    char out[6];
    assert_int_equal(agpu_text_copy(out, sizeof out, "abc"), 3);
    assert_string_equal(out, "abc");
    assert_int_equal(agpu_text_copy(out, sizeof out, "abcde"), 5); /* exactly fits */
    assert_string_equal(out, "abcde");
    assert_int_equal(agpu_text_copy(out, sizeof out, "abcdefgh"), 8); /* cut: 8 >= 6 */
    assert_string_equal(out, "abcde");
    assert_int_equal(agpu_text_copy(out, sizeof out, ""), 0);
    assert_string_equal(out, "");
    assert_int_equal(agpu_text_copy(out, 1, "abc"), 3);
    assert_string_equal(out, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean_takes_ascii_and_utf8),
        cmocka_unit_test(test_clean_refuses_controls_and_bad_utf8),
        cmocka_unit_test(test_clean_flags_narrow_it),
        cmocka_unit_test(test_copy_fits_or_is_cut),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
