/* The JSON agpu writes itself: error bodies in Ollama's and in OpenAI's shape, the peers and
 * route answers. */
#ifndef AGPU_JSON_H
#define AGPU_JSON_H

#include "agpu_route.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    AGPU_ERROR_OLLAMA, /* {"error":"msg"} */
    AGPU_ERROR_OPENAI  /* {"error":{"message":"msg","type":...,"param":null,"code":null}} */
} agpu_error_style_t;

/* Writes the error body for an HTTP status into out (NUL-terminated, no newline).
 * Returns its length, or 0 if it did not fit. */
size_t agpu_json_error(char *out, size_t size, agpu_error_style_t style, int status,
                       const char *message);

/* The style a client of this path expects: OpenAI's under /v1/, Ollama's elsewhere. */
agpu_error_style_t agpu_json_error_style(const char *path);

/* The model a request body names ("model", or the older "name"), copied into out, read
 * without parsing the whole body (agpu_json_scan). Returns 0, or -1 when the body is not a
 * JSON object naming one. */
int agpu_json_request_model(const char *body, size_t len, char *out, size_t out_size);

/* The /agpu/v1/peers answer for a mesh snapshot (now_ms: the monotonic clock, for
 * last_seen_ms). Caller frees the result; NULL when out of memory. */
struct agpu_view;
char *agpu_json_peers(const struct agpu_view *view, int64_t now_ms);

/* A route plan made over view (agpu_route_plan for key), for `agpu route`: {"model" (as
 * asked), "key", "verdict", "choice" (candidates[0]'s name, or its id if it has none, when the
 * verdict is go; else null),
 * "candidates": [{"id", "name", "self", "state", "http", "tier", "usable", "loaded", "load",
 * "capacity", "speed", "measured", "score", "why"}] in the plan's order}.
 * Caller frees the result; NULL when out of memory. */
char *agpu_json_route(const struct agpu_view *view, const char *model, const char *key,
                      const agpu_route_candidate_t *candidates, const agpu_route_plan_t *plan);

/* The answer to /agpu/v1/drain and /agpu/v1/undrain: {"node":NAME,"draining":BOOL}. */
char *agpu_json_drain(const char *node, bool draining);

#endif
