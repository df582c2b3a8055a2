/* The top level of a JSON object read without building it. A request body may carry
 * megabytes of base64 images, and the router needs one short string out of it: a full parse
 * (jansson) takes about 200 ms for 10 MB on the shard's thread, this scan about a millisecond,
 * since values it does not want are skipped with memchr. */
#ifndef AGPU_JSON_SCAN_H
#define AGPU_JSON_SCAN_H

#include <stddef.h>

/* For each of the n keys, the string value of the last top-level member of that name,
 * unescaped, into values + i * value_size (NUL-terminated; "" when there is none, or it is
 * not a string, or it does not fit). Returns 0, or -1 when json is not one object. The scan
 * checks the structure only as far as it needs to: the server that serves the request parses
 * it whole and says what else is wrong. */
int agpu_json_scan_strings(const char *json, size_t len, const char *const keys[], size_t n,
                           char *values, size_t value_size);

#endif
