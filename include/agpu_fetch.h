/* A blocking HTTP request for the few places that want one whole answer: the Ollama watcher
 * and the command-line client. (Proxied traffic never comes here: see agpu_forward.) */
#ifndef AGPU_FETCH_H
#define AGPU_FETCH_H

#include <stddef.h>

typedef struct {
    long status; /* HTTP status; 0 when no answer came */
    char *body;  /* NUL-terminated; NULL when none */
    size_t len;
} agpu_fetch_result_t;

/* Sends method (GET, POST...) to url with an optional JSON body and waits at most timeout_ms
 * for the whole answer, keeping at most max_body bytes of it (a longer one fails).
 * Returns 0 with out filled (any status), or -1 with the reason in error. */
int agpu_fetch(const char *method, const char *url, const char *json_body, long timeout_ms,
               size_t max_body, agpu_fetch_result_t *out, char *error, size_t error_size);

void agpu_fetch_free(agpu_fetch_result_t *result);

#endif
