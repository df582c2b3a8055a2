/* HTTP/1.1 for the forwarder, without sockets: the upstream URL, the request head it sends,
 * chunk framing for a streamed body, and the response parser (libhttp-parser, the only file
 * that includes it) that turns an answer's bytes into calls on a sink. Pure: unit-tested. */
#ifndef AGPU_H1_H
#define AGPU_H1_H

#include "agpu_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- the upstream URL ---- */

/* "http://host:port/path?query", split. host is without IPv6 brackets (for getaddrinfo);
 * authority is "host:port" as written in the URL (for the Host header and the pool key). */
typedef struct {
    char host[256];
    char port[8];
    char authority[AGPU_HOSTPORT_MAX + 8];
    const char *target; /* path and query, inside the URL given; "" means "/" */
} agpu_h1_url_t;

/* Returns 0, or -1 when url is not an http:// URL agpu can use. */
int agpu_h1_parse_url(const char *url, agpu_h1_url_t *out);

/* ---- the request ---- */

/* How the request body is framed. */
#define AGPU_H1_NO_BODY (-2)
#define AGPU_H1_CHUNKED (-1)

/* The request head: request line, Host, the header lines given, then Content-Length (a body
 * of body_length >= 0 bytes), Transfer-Encoding: chunked (AGPU_H1_CHUNKED) or neither
 * (AGPU_H1_NO_BODY). malloc'd, *len bytes (NUL-terminated); NULL when out of memory. */
char *agpu_h1_request_head(const char *method, const agpu_h1_url_t *url, const char *const *headers,
                           size_t header_count, int64_t body_length, size_t *len);

/* Chunk framing around len body bytes: the size line before them (at most
 * AGPU_H1_CHUNK_PREFIX_MAX bytes) and "\r\n" after. len 0 writes the last chunk "0\r\n\r\n"
 * as the prefix. Returns the prefix's length. */
#define AGPU_H1_CHUNK_PREFIX_MAX 24
size_t agpu_h1_chunk_prefix(char *out, size_t len);
#define AGPU_H1_CHUNK_SUFFIX "\r\n"

/* ---- the response ---- */

/* What the parser calls as an answer arrives. A 1xx interim answer calls head_begin and
 * header, never head_done; the real answer follows with head_begin again. */
typedef struct {
    void (*head_begin)(void *arg, int status);
    void (*header)(void *arg, const char *name, size_t name_len, const char *value,
                   size_t value_len);
    void (*head_done)(void *arg, int status);
    /* Decoded body bytes (chunk framing removed). false: none taken, the parser pauses with
     * the bytes held until agpu_h1_response_resume. */
    bool (*body)(void *arg, const char *data, size_t len);
} agpu_h1_sink_t;

typedef enum {
    AGPU_H1_MORE,   /* every byte parsed; the answer goes on */
    AGPU_H1_DONE,   /* the answer is complete (*used says where it ended) */
    AGPU_H1_PAUSED, /* the sink refused body bytes: resume when it has room */
    AGPU_H1_FAILED, /* malformed or too large: agpu_h1_response_error says why */
} agpu_h1_state_t;

typedef struct agpu_h1_response agpu_h1_response_t;

agpu_h1_response_t *agpu_h1_response_new(const agpu_h1_sink_t *sink);
void agpu_h1_response_free(agpu_h1_response_t **r_p);

/* Readies the parser for the answer to one request; head_request: the request was HEAD, so
 * the answer has no body whatever its headers say. */
void agpu_h1_response_start(agpu_h1_response_t *r, void *arg, bool head_request);

/* Parses up to len bytes; *used: how many were consumed (all of them unless DONE or PAUSED;
 * when PAUSED, the refused body bytes are held inside and count as used). */
agpu_h1_state_t agpu_h1_response_feed(agpu_h1_response_t *r, const char *data, size_t len,
                                      size_t *used);

/* The connection was closed: DONE when that ends the answer (a body read until close),
 * FAILED otherwise. */
agpu_h1_state_t agpu_h1_response_eof(agpu_h1_response_t *r);

/* Offers the held body bytes again: PAUSED when still refused, else MORE (feed the rest). */
agpu_h1_state_t agpu_h1_response_resume(agpu_h1_response_t *r);

/* Whether any byte of the answer has been parsed. */
bool agpu_h1_response_started(const agpu_h1_response_t *r);

/* After DONE: whether the connection may carry another request. */
bool agpu_h1_response_keep_alive(const agpu_h1_response_t *r);

/* After FAILED: why, e.g. "malformed answer (invalid character in header)". */
const char *agpu_h1_response_error(const agpu_h1_response_t *r);

#endif
