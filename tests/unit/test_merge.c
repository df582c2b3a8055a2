/* Unit tests of agpu_merge: several nodes' list answers made one mesh-wide answer. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agpu_merge.h"

/* The bodies below are written with ' for " so that they stay readable; a body given as
 * NULL stands for a node that gave no body at all. */
#define MAX_PARTS 6

typedef struct {
    const char *node;
    const char *body;
} part_t;

typedef struct {
    const char *what;
    agpu_merge_kind_t kind;
    part_t parts[MAX_PARTS];
    const char *want; /* NULL: no answer */
} merge_case_t;

static char *unquote(const char *text)
{
    char *out = strdup(text);
    assert_non_null(out);
    for (char *p = out; *p; p++)
        if (*p == '\'')
            *p = '"';
    return out;
}

static void run_case(const merge_case_t *c)
{
    agpu_merge_part_t parts[MAX_PARTS];
    char *bodies[MAX_PARTS] = {0};
    size_t n = 0;
    for (; n < MAX_PARTS && c->parts[n].node; n++) {
        bodies[n] = c->parts[n].body ? unquote(c->parts[n].body) : NULL;
        parts[n] = (agpu_merge_part_t){
            .node = c->parts[n].node, .body = bodies[n], .len = bodies[n] ? strlen(bodies[n]) : 0};
    }
    size_t len = 12345;
    char *got = agpu_merge(c->kind, parts, n, &len);
    if (!c->want) {
        if (got)
            fail_msg("%s: wanted no answer, got %s", c->what, got);
    } else {
        if (!got)
            fail_msg("%s: no answer", c->what);
        assert_int_equal(len, strlen(got));
        char *want_text = unquote(c->want);
        json_t *want = json_loads(want_text, 0, NULL);
        json_t *have = json_loads(got, 0, NULL);
        assert_non_null(want); /* the case itself is well written */
        if (!json_equal(want, have))
            fail_msg("%s:\n  got  %s\n  want %s", c->what, got, want_text);
        json_decref(want);
        json_decref(have);
        free(want_text);
    }
    free(got);
    for (size_t i = 0; i < n; i++)
        free(bodies[i]);
}

static void run_cases(const merge_case_t *cases, size_t n)
{
    for (size_t i = 0; i < n; i++)
        run_case(&cases[i]);
}

#define RUN_CASES(cases) run_cases(cases, sizeof cases / sizeof cases[0])

/* One /api/tags entry, the way Ollama writes it. */
#define TAG(name, digest, when)                                                                    \
    "{'name':'" name "','model':'" name "','modified_at':'" when "','size':4661224676,"            \
    "'digest':'" digest "','details':{'format':'gguf','family':'llama'}}"
/* A list answer; its entries are joined with "," as JSON wants. (/api/ps has the same shape.) */
#define TAGS(entries) "{'models':[" entries "]}"
#define T1 "2024-05-01T10:00:00.5+02:00"

/* A /api/tags entry with "nodes" added, as the merge writes it. */
#define TAG_ON(name, digest, when, nodes)                                                          \
    "{'name':'" name "','model':'" name "','modified_at':'" when "','size':4661224676,"            \
    "'digest':'" digest "','details':{'format':'gguf','family':'llama'},'nodes':[" nodes "]}"

static void test_tags_dedupe(void **state)
{
    /* clang-format off */
    static const merge_case_t cases[] = {
        {"same name and digest on three nodes is one entry held by all three",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("llama3:latest", "d1", T1))},
          {"gpu-b", TAGS(TAG("llama3:latest", "d1", T1))},
          {"gpu-c", TAGS(TAG("llama3:latest", "d1", T1))}},
         TAGS(TAG_ON("llama3:latest", "d1", T1, "'gpu-a','gpu-b','gpu-c'"))},
        {"the same name with two digests is two models",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("llama3:latest", "d1", T1))},
          {"gpu-b", TAGS(TAG("llama3:latest", "d2", T1))},
          {"gpu-c", TAGS(TAG("llama3:latest", "d1", T1))}},
         TAGS(TAG_ON("llama3:latest", "d1", T1, "'gpu-a','gpu-c'") ","
              TAG_ON("llama3:latest", "d2", T1, "'gpu-b'"))},
        {"names compare case-insensitively; the first seen spelling stays",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("Llama3:Latest", "d1", T1))},
          {"gpu-b", TAGS(TAG("llama3:latest", "d1", T1))}},
         TAGS(TAG_ON("Llama3:Latest", "d1", T1, "'gpu-a','gpu-b'"))},
        {"names compare as Ollama's do: llama3 is llama3:latest",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("llama3:latest", "d1", T1))},
          {"gpu-b", TAGS(TAG("registry.ollama.ai/library/llama3", "d1", T1))}},
         TAGS(TAG_ON("llama3:latest", "d1", T1, "'gpu-a','gpu-b'"))},
        {"a node named twice is listed once",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("m:1", "d1", T1))}, {"gpu-a", TAGS(TAG("m:1", "d1", T1))}},
         TAGS(TAG_ON("m:1", "d1", T1, "'gpu-a'"))},
        {"the first seen entry's fields are kept",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "{'models':[{'name':'m:1','digest':'d1','size':1}]}"},
          {"gpu-b", "{'models':[{'name':'m:1','digest':'d1','size':2,'extra':true}]}"}},
         "{'models':[{'name':'m:1','digest':'d1','size':1,'nodes':['gpu-a','gpu-b']}]}"},
        {"entries that name no model are left out",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "{'models':[1,'x',null,{'size':3},{'name':''},{'model':'m:1','digest':'d'}]}"}},
         "{'models':[{'model':'m:1','digest':'d','nodes':['gpu-a']}]}"},
    };
    /* clang-format on */
    RUN_CASES(cases);
}

/* Times whose text sorts the other way round from the times they say. */
#define NOON "2024-05-01T12:00:00Z"
#define WEST "2024-05-01T10:00:00-07:00" /* 17:00Z */
#define FOUR "2024-05-01T16:00:00Z"
#define FOUR_AND_A_HALF "2024-05-01T16:00:00.5Z"

static void test_tags_order(void **state)
{
    /* clang-format off */
    static const merge_case_t cases[] = {
        {"newest first, times compared as times (offsets and fractions count)",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("old:1", "d1", NOON) "," TAG("whole:1", "d2", FOUR))},
          {"gpu-b", TAGS(TAG("west:1", "d3", WEST) "," TAG("half:1", "d4", FOUR_AND_A_HALF))}},
         TAGS(TAG_ON("west:1", "d3", WEST, "'gpu-b'") ","
              TAG_ON("half:1", "d4", FOUR_AND_A_HALF, "'gpu-b'") ","
              TAG_ON("whole:1", "d2", FOUR, "'gpu-a'") ","
              TAG_ON("old:1", "d1", NOON, "'gpu-a'"))},
        {"equal times keep the order first seen",
         AGPU_MERGE_TAGS,
         {{"gpu-a", TAGS(TAG("c:1", "d1", T1) "," TAG("a:1", "d2", T1))},
          {"gpu-b", TAGS(TAG("b:1", "d3", T1) "," TAG("a:1", "d2", T1))}},
         TAGS(TAG_ON("c:1", "d1", T1, "'gpu-a'") ","
              TAG_ON("a:1", "d2", T1, "'gpu-a','gpu-b'") ","
              TAG_ON("b:1", "d3", T1, "'gpu-b'"))},
        {"a time that does not parse goes last; such times compare as text",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "{'models':[{'name':'x:1','digest':'1','modified_at':'yesterday'},"
                    "{'name':'y:1','digest':'2'},"
                    "{'name':'z:1','digest':'3','modified_at':'tomorrow'},"
                    "{'name':'w:1','digest':'4','modified_at':'2001-01-01T00:00:00Z'}]}"}},
         "{'models':[{'name':'w:1','digest':'4','modified_at':'2001-01-01T00:00:00Z',"
         "'nodes':['gpu-a']},"
         "{'name':'x:1','digest':'1','modified_at':'yesterday','nodes':['gpu-a']},"
         "{'name':'z:1','digest':'3','modified_at':'tomorrow','nodes':['gpu-a']},"
         "{'name':'y:1','digest':'2','nodes':['gpu-a']}]}"},
    };
    /* clang-format on */
    RUN_CASES(cases);
}

static void test_bad_and_empty_parts(void **state)
{
    /* clang-format off */
    static const merge_case_t cases[] = {
        {"parts that are not a list answer are skipped",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "not json"},
          {"gpu-b", TAGS(TAG("m:1", "d1", T1))},
          {"gpu-c", "{'models':'none'}"},
          {"gpu-d", "{'models':[{'name':'m:1'"},
          {"gpu-e", NULL},
          {"gpu-f", "[]"}},
         TAGS(TAG_ON("m:1", "d1", T1, "'gpu-b'"))},
        {"no part parses: no answer",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "not json"}, {"gpu-b", "{'data':[]}"}, {"gpu-c", NULL}},
         NULL},
        {"no parts at all: no answer", AGPU_MERGE_PS, {{NULL, NULL}}, NULL},
        {"empty lists make an empty list",
         AGPU_MERGE_TAGS,
         {{"gpu-a", "{'models':[]}"}, {"gpu-b", "{'models':[]}"}},
         "{'models':[]}"},
        {"an OpenAI list is read from data, not models",
         AGPU_MERGE_OPENAI,
         {{"gpu-a", "{'models':[]}"}},
         NULL},
    };
    /* clang-format on */
    RUN_CASES(cases);
}

#define MODEL(id, created)                                                                         \
    "{'id':'" id "','object':'model','created':" #created ",'owned_by':'library'}"
#define MODELS(entries) "{'object':'list','data':[" entries "]}"

static void test_openai(void **state)
{
    /* clang-format off */
    static const merge_case_t cases[] = {
        {"one entry per id, case-insensitive, first seen kept, no nodes field",
         AGPU_MERGE_OPENAI,
         {{"gpu-a", MODELS(MODEL("llama3:latest", 1714557600) "," MODEL("qwen:7b", 1714500000))},
          {"gpu-b", MODELS(MODEL("LLAMA3:latest", 1714557601))},
          {"gpu-c", "garbage"}},
         MODELS(MODEL("llama3:latest", 1714557600) "," MODEL("qwen:7b", 1714500000))},
        {"newest created first, ties in the order first seen",
         AGPU_MERGE_OPENAI,
         {{"gpu-a", MODELS(MODEL("a:1", 10) "," MODEL("b:1", 30))},
          {"gpu-b", MODELS(MODEL("c:1", 20) "," MODEL("d:1", 30))}},
         MODELS(MODEL("b:1", 30) "," MODEL("d:1", 30) "," MODEL("c:1", 20) "," MODEL("a:1", 10))},
        {"empty lists", AGPU_MERGE_OPENAI, {{"gpu-a", MODELS()}}, MODELS()},
    };
    /* clang-format on */
    RUN_CASES(cases);
}

#define PS(name, digest, expires)                                                                  \
    "{'name':'" name "','model':'" name "','size':6654289920,'digest':'" digest "',"               \
    "'details':{'format':'gguf'},'expires_at':'" expires "','size_vram':6654289920}"
#define PS_ON(name, digest, expires, nodes)                                                        \
    "{'name':'" name "','model':'" name "','size':6654289920,'digest':'" digest "',"               \
    "'details':{'format':'gguf'},'expires_at':'" expires "','size_vram':6654289920,"               \
    "'nodes':[" nodes "]}"

static void test_ps(void **state)
{
    /* clang-format off */
    static const merge_case_t cases[] = {
        {"the copy loaded longest is the base; nodes stay in the order of parts",
         AGPU_MERGE_PS,
         {{"gpu-a", TAGS(PS("llama3:latest", "d1", "2024-05-01T10:05:00Z"))},
          {"gpu-b", TAGS(PS("Llama3:latest", "d1", "2024-05-01T12:05:00+01:00"))},
          {"gpu-c", TAGS(PS("llama3:latest", "d1", "2024-05-01T11:00:00Z"))}},
         TAGS(PS_ON("Llama3:latest", "d1", "2024-05-01T12:05:00+01:00",
                    "'gpu-a','gpu-b','gpu-c'"))},
        {"latest expiry first; two digests stay two",
         AGPU_MERGE_PS,
         {{"gpu-a", TAGS(PS("a:1", "d1", "2024-05-01T10:00:00Z") ","
                         PS("b:1", "d2", "2024-05-01T10:00:01Z"))},
          {"gpu-b", TAGS(PS("a:1", "d9", "2318-01-01T00:00:00Z"))}},
         TAGS(PS_ON("a:1", "d9", "2318-01-01T00:00:00Z", "'gpu-b'") ","
              PS_ON("b:1", "d2", "2024-05-01T10:00:01Z", "'gpu-a'") ","
              PS_ON("a:1", "d1", "2024-05-01T10:00:00Z", "'gpu-a'"))},
    };
    /* clang-format on */
    RUN_CASES(cases);
}

static void test_answer_is_compact(void **state)
{
    const char *body = "{ \"models\" : [ { \"name\" : \"m:1\", \"digest\" : \"d\" } ] }";
    agpu_merge_part_t part = {"n", body, strlen(body)};
    size_t len = 0;
    char *got = agpu_merge(AGPU_MERGE_TAGS, &part, 1, &len);
    assert_string_equal(got,
                        "{\"models\":[{\"name\":\"m:1\",\"digest\":\"d\",\"nodes\":[\"n\"]}]}");
    assert_int_equal(len, strlen(got));
    free(got);
}

/* The body is not NUL-terminated: only len bytes of it count. */
static void test_body_is_read_to_len_only(void **state)
{
    const char *body = "{\"models\":[]}trailing garbage";
    agpu_merge_part_t part = {"n", body, strlen("{\"models\":[]}")};
    size_t len = 0;
    char *got = agpu_merge(AGPU_MERGE_PS, &part, 1, &len);
    assert_string_equal(got, "{\"models\":[]}");
    free(got);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tags_dedupe),
        cmocka_unit_test(test_tags_order),
        cmocka_unit_test(test_bad_and_empty_parts),
        cmocka_unit_test(test_openai),
        cmocka_unit_test(test_ps),
        cmocka_unit_test(test_answer_is_compact),
        cmocka_unit_test(test_body_is_read_to_len_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
