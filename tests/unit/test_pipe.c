/* Unit tests of agpu_pipe: the byte FIFO between the two sides of an exchange. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "agpu_limits.h"
#include "agpu_pipe.h"

/* A buffer of n bytes with a recognisable pattern starting at seed. */
static char *pattern(size_t n, unsigned seed)
{
    char *p = malloc(n ? n : 1);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = (char)((seed + i * 7) & 0xff);
    return p;
}

static void test_zero_pipe_is_empty(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_used(&pipe), 0);
    assert_false(agpu_pipe_full(&pipe));
    char out[4];
    assert_int_equal(agpu_pipe_read(&pipe, out, sizeof out), 0);
    agpu_pipe_free(&pipe);
}

static void test_write_then_read_round_trip(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, "hello", 5), 0);
    assert_int_equal(agpu_pipe_used(&pipe), 5);
    char out[8] = "";
    assert_int_equal(agpu_pipe_read(&pipe, out, sizeof out), 5);
    assert_memory_equal(out, "hello", 5);
    assert_int_equal(agpu_pipe_used(&pipe), 0);
    agpu_pipe_free(&pipe);
}

static void test_writes_keep_order(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, "ab", 2), 0);
    assert_int_equal(agpu_pipe_write(&pipe, "cde", 3), 0);
    assert_int_equal(agpu_pipe_write(&pipe, "f", 1), 0);
    char out[6];
    assert_int_equal(agpu_pipe_read(&pipe, out, sizeof out), 6);
    assert_memory_equal(out, "abcdef", 6);
    agpu_pipe_free(&pipe);
}

static void test_read_at_most_max(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, "abcdef", 6), 0);
    char out[6];
    assert_int_equal(agpu_pipe_read(&pipe, out, 4), 4);
    assert_memory_equal(out, "abcd", 4);
    assert_int_equal(agpu_pipe_used(&pipe), 2);
    assert_int_equal(agpu_pipe_read(&pipe, out, 4), 2);
    assert_memory_equal(out, "ef", 2);
    assert_int_equal(agpu_pipe_read(&pipe, out, 4), 0);
    agpu_pipe_free(&pipe);
}

static void test_read_zero_max_takes_nothing(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, "abc", 3), 0);
    char out[1];
    assert_int_equal(agpu_pipe_read(&pipe, out, 0), 0);
    assert_int_equal(agpu_pipe_used(&pipe), 3);
    agpu_pipe_free(&pipe);
}

static void test_zero_length_write_is_a_no_op(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, NULL, 0), 0);
    assert_int_equal(agpu_pipe_used(&pipe), 0);
    assert_null(pipe.data); /* nothing allocated for nothing */
    assert_int_equal(agpu_pipe_write(&pipe, "x", 1), 0);
    assert_int_equal(agpu_pipe_write(&pipe, "y", 0), 0);
    assert_int_equal(agpu_pipe_used(&pipe), 1);
    agpu_pipe_free(&pipe);
}

static void test_drained_pipe_rewinds(void **state)
{
    agpu_pipe_t pipe = {0};
    char out[16];
    assert_int_equal(agpu_pipe_write(&pipe, "abcdef", 6), 0);
    assert_int_equal(agpu_pipe_read(&pipe, out, 6), 6);
    assert_int_equal(pipe.start, 0);
    assert_int_equal(pipe.end, 0);
    agpu_pipe_free(&pipe);
}

static void test_compacts_instead_of_growing(void **state)
{
    agpu_pipe_t pipe = {0};
    char *first = pattern(4000, 1);
    assert_int_equal(agpu_pipe_write(&pipe, first, 4000), 0);
    size_t alloc = pipe.alloc;
    assert_true(alloc >= 4000);
    char out[4000];
    assert_int_equal(agpu_pipe_read(&pipe, out, 3000), 3000); /* 1000 unread, at 3000 */
    /* the tail has no room for this, the whole buffer has: slide, do not grow */
    size_t extra = alloc - 1000;
    char *second = pattern(extra, 2);
    assert_int_equal(agpu_pipe_write(&pipe, second, extra), 0);
    assert_int_equal(pipe.alloc, alloc);
    assert_int_equal(pipe.start, 0);
    assert_int_equal(agpu_pipe_used(&pipe), alloc);
    char *all = malloc(alloc);
    assert_non_null(all);
    assert_int_equal(agpu_pipe_read(&pipe, all, alloc), alloc);
    assert_memory_equal(all, first + 3000, 1000);
    assert_memory_equal(all + 1000, second, extra);
    free(all);
    free(first);
    free(second);
    agpu_pipe_free(&pipe);
}

static void test_grows_for_large_write(void **state)
{
    agpu_pipe_t pipe = {0};
    size_t n = 100000;
    char *big = pattern(n, 3);
    assert_int_equal(agpu_pipe_write(&pipe, big, n), 0);
    assert_true(pipe.alloc >= n);
    assert_int_equal(agpu_pipe_used(&pipe), n);
    char *out = malloc(n);
    assert_non_null(out);
    assert_int_equal(agpu_pipe_read(&pipe, out, n), n);
    assert_memory_equal(out, big, n);
    free(out);
    free(big);
    agpu_pipe_free(&pipe);
}

static void test_grows_keeping_unread_bytes(void **state)
{
    agpu_pipe_t pipe = {0};
    char *a = pattern(3000, 4), *b = pattern(50000, 5);
    char out[1000];
    assert_int_equal(agpu_pipe_write(&pipe, a, 3000), 0);
    assert_int_equal(agpu_pipe_read(&pipe, out, 1000), 1000);
    assert_int_equal(agpu_pipe_write(&pipe, b, 50000), 0);
    assert_int_equal(agpu_pipe_used(&pipe), 52000);
    char *all = malloc(52000);
    assert_non_null(all);
    assert_int_equal(agpu_pipe_read(&pipe, all, 52000), 52000);
    assert_memory_equal(all, a + 1000, 2000);
    assert_memory_equal(all + 2000, b, 50000);
    free(all);
    free(a);
    free(b);
    agpu_pipe_free(&pipe);
}

static void test_many_small_chunks_stay_in_order(void **state)
{
    /* interleaved writes and reads cross several compactions and growths */
    agpu_pipe_t pipe = {0};
    unsigned char next_in = 0, next_out = 0;
    unsigned char chunk[997], out[613];
    for (int round = 0; round < 2000; round++) {
        for (size_t i = 0; i < sizeof chunk; i++)
            chunk[i] = next_in++;
        assert_int_equal(agpu_pipe_write(&pipe, chunk, sizeof chunk), 0);
        size_t n = agpu_pipe_read(&pipe, out, sizeof out);
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i], next_out++);
    }
    size_t n;
    while ((n = agpu_pipe_read(&pipe, out, sizeof out)) > 0)
        for (size_t i = 0; i < n; i++)
            assert_int_equal(out[i], next_out++);
    assert_int_equal(next_in, next_out);
    assert_int_equal(agpu_pipe_used(&pipe), 0);
    agpu_pipe_free(&pipe);
}

static void test_full_exactly_at_soft_cap(void **state)
{
    agpu_pipe_t pipe = {0};
    char *data = pattern(AGPU_PIPE_SOFT_CAP, 6);
    assert_int_equal(agpu_pipe_write(&pipe, data, AGPU_PIPE_SOFT_CAP - 1), 0);
    assert_false(agpu_pipe_full(&pipe));
    assert_int_equal(agpu_pipe_write(&pipe, data, 1), 0);
    assert_true(agpu_pipe_full(&pipe));
    assert_int_equal(agpu_pipe_used(&pipe), AGPU_PIPE_SOFT_CAP);
    free(data);
    agpu_pipe_free(&pipe);
}

static void test_not_full_after_one_byte_read(void **state)
{
    agpu_pipe_t pipe = {0};
    char *data = pattern(AGPU_PIPE_SOFT_CAP, 7);
    assert_int_equal(agpu_pipe_write(&pipe, data, AGPU_PIPE_SOFT_CAP), 0);
    assert_true(agpu_pipe_full(&pipe));
    char out[1];
    assert_int_equal(agpu_pipe_read(&pipe, out, 1), 1);
    assert_false(agpu_pipe_full(&pipe));
    free(data);
    agpu_pipe_free(&pipe);
}

static void test_write_past_cap_takes_whole_chunk(void **state)
{
    /* full is advice to the writer: a write never takes part of a chunk */
    agpu_pipe_t pipe = {0};
    size_t n = AGPU_PIPE_SOFT_CAP + 12345;
    char *data = pattern(n, 8);
    assert_int_equal(agpu_pipe_write(&pipe, data, AGPU_PIPE_SOFT_CAP), 0);
    assert_true(agpu_pipe_full(&pipe));
    assert_int_equal(agpu_pipe_write(&pipe, data + AGPU_PIPE_SOFT_CAP, 12345), 0);
    assert_int_equal(agpu_pipe_used(&pipe), n);
    char *out = malloc(n);
    assert_non_null(out);
    assert_int_equal(agpu_pipe_read(&pipe, out, n), n);
    assert_memory_equal(out, data, n);
    free(out);
    free(data);
    agpu_pipe_free(&pipe);
}

static void test_free_resets_and_allows_reuse(void **state)
{
    agpu_pipe_t pipe = {0};
    assert_int_equal(agpu_pipe_write(&pipe, "abc", 3), 0);
    agpu_pipe_free(&pipe);
    assert_null(pipe.data);
    assert_int_equal(pipe.start, 0);
    assert_int_equal(pipe.end, 0);
    assert_int_equal(pipe.alloc, 0);
    assert_int_equal(agpu_pipe_write(&pipe, "xy", 2), 0);
    char out[2];
    assert_int_equal(agpu_pipe_read(&pipe, out, 2), 2);
    assert_memory_equal(out, "xy", 2);
    agpu_pipe_free(&pipe);
    agpu_pipe_free(&pipe); /* twice is harmless */
}

static void test_take_moves_unread_bytes_out(void **state)
{
    agpu_pipe_t pipe = {0};
    size_t len = 99;
    assert_null(agpu_pipe_take(&pipe, &len)); /* nothing to take */
    assert_int_equal(len, 0);
    char *first = pattern(3000, 3);
    assert_int_equal(agpu_pipe_write(&pipe, first, 3000), 0);
    char out[1000];
    assert_int_equal(agpu_pipe_read(&pipe, out, sizeof out), sizeof out);
    char *taken = agpu_pipe_take(&pipe, &len); /* the unread 2000, from the buffer's start */
    assert_non_null(taken);
    assert_int_equal(len, 2000);
    assert_memory_equal(taken, first + 1000, 2000);
    assert_int_equal(agpu_pipe_used(&pipe), 0);
    assert_null(pipe.data); /* the buffer is the caller's now */
    assert_int_equal(agpu_pipe_write(&pipe, "x", 1), 0); /* and the pipe works on */
    assert_int_equal(agpu_pipe_used(&pipe), 1);
    agpu_pipe_free(&pipe);
    free(taken);
    free(first);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_pipe_is_empty),
        cmocka_unit_test(test_write_then_read_round_trip),
        cmocka_unit_test(test_writes_keep_order),
        cmocka_unit_test(test_read_at_most_max),
        cmocka_unit_test(test_read_zero_max_takes_nothing),
        cmocka_unit_test(test_zero_length_write_is_a_no_op),
        cmocka_unit_test(test_drained_pipe_rewinds),
        cmocka_unit_test(test_compacts_instead_of_growing),
        cmocka_unit_test(test_grows_for_large_write),
        cmocka_unit_test(test_grows_keeping_unread_bytes),
        cmocka_unit_test(test_many_small_chunks_stay_in_order),
        cmocka_unit_test(test_full_exactly_at_soft_cap),
        cmocka_unit_test(test_not_full_after_one_byte_read),
        cmocka_unit_test(test_write_past_cap_takes_whole_chunk),
        cmocka_unit_test(test_free_resets_and_allows_reuse),
        cmocka_unit_test(test_take_moves_unread_bytes_out),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
