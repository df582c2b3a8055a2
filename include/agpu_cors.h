/* Browser-facing policy, as Ollama applies it: CORS origins and the DNS-rebinding host check. */
#ifndef AGPU_CORS_H
#define AGPU_CORS_H

#include <stdbool.h>

typedef struct agpu_cors agpu_cors_t;

typedef enum {
    AGPU_CORS_PASS,      /* not a cross-origin request: serve it as it is */
    AGPU_CORS_ALLOW,     /* allowed cross-origin request: serve it, echo the origin */
    AGPU_CORS_PREFLIGHT, /* allowed OPTIONS preflight: answer 204 with the CORS headers */
    AGPU_CORS_FORBID     /* refused: answer 403 with no body */
} agpu_cors_verdict_t;

/* The allowed origins: every entry of `extra_origins` (comma-separated, like OLLAMA_ORIGINS,
 * may be NULL), then Ollama's defaults (localhost, 127.0.0.1 and 0.0.0.0 on any port, app://,
 * file://, tauri://, vscode-webview://, vscode-file://). `*` inside an entry matches anything.
 * `loopback_only`: the node listens on loopback only, so like Ollama it refuses requests whose
 * Host is not a local name (a DNS-rebinding page). Caller owns the result. */
agpu_cors_t *agpu_cors_new(const char *extra_origins, bool loopback_only);
void agpu_cors_destroy(agpu_cors_t **self_p);

/* The verdict for one request. `origin` and `host` may be NULL (header absent). */
agpu_cors_verdict_t agpu_cors_check(const agpu_cors_t *self, const char *method,
                                    const char *origin, const char *host);

/* Values of the preflight answer's headers. */
#define AGPU_CORS_ALLOW_METHODS "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS"
#define AGPU_CORS_MAX_AGE "43200"
const char *agpu_cors_allow_headers(void);

#endif
