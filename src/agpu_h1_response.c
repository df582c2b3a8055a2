/* The response side of the forwarder's HTTP/1.1: libhttp-parser (the only file that includes
 * it) reads status, headers and body framing (Content-Length, chunked, until close); this file
 * gathers header fragments split across reads, bounds the head, skips 1xx interim answers and
 * the body of HEAD/204/304, and stops at the end of the answer. */
#include "agpu_h1.h"

#include <http_parser.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct agpu_h1_response {
    http_parser parser;
    const agpu_h1_sink_t *sink;
    void *arg;
    bool head_request;
    bool started;    /* a byte of the answer has been parsed */
    bool head_begun; /* head_begin called for the current message */
    bool head_over;  /* head_done called: what follows is body (and trailers, ignored) */
    bool in_value;   /* the field buffer holds a name and part of its value */
    bool done;
    bool too_large;
    size_t head_bytes; /* status text, names and values of the current message */
    char *field;       /* one header: name, then value */
    size_t name_len, field_len, field_alloc;
    char *held; /* body bytes the sink refused */
    size_t held_len;
    char error[128];
};

static agpu_h1_response_t *self_of(http_parser *p)
{
    return p->data;
}

static void begin_head(agpu_h1_response_t *r)
{
    if (r->head_begun)
        return;
    r->head_begun = true;
    r->sink->head_begin(r->arg, (int)r->parser.status_code);
}

/* Counts head bytes; false once the head is over the limit. */
static bool count_head(agpu_h1_response_t *r, size_t len)
{
    r->head_bytes += len;
    if (r->head_bytes <= AGPU_MAX_UPSTREAM_HEAD)
        return true;
    r->too_large = true;
    return false;
}

static bool field_append(agpu_h1_response_t *r, const char *at, size_t len)
{
    if (r->field_len + len > r->field_alloc) {
        size_t alloc = r->field_alloc ? r->field_alloc : 256;
        while (alloc < r->field_len + len)
            alloc *= 2;
        char *grown = realloc(r->field, alloc);
        if (!grown)
            return false;
        r->field = grown;
        r->field_alloc = alloc;
    }
    memcpy(r->field + r->field_len, at, len);
    r->field_len += len;
    return true;
}

static int out_of_memory(agpu_h1_response_t *r)
{
    snprintf(r->error, sizeof r->error, "out of memory reading the answer's head");
    return -1;
}

/* Hands the gathered header (if any) to the sink. */
static void emit_field(agpu_h1_response_t *r)
{
    if (r->name_len == 0 && r->field_len == 0)
        return;
    const char *value = r->field + r->name_len;
    size_t value_len = r->field_len - r->name_len;
    while (value_len > 0 && (value[value_len - 1] == ' ' || value[value_len - 1] == '\t'))
        value_len--;
    if (!r->head_over)
        r->sink->header(r->arg, r->field, r->name_len, value, value_len);
    r->name_len = r->field_len = 0;
    r->in_value = false;
}

/* Forgets the head of the message before (an interim answer's, or none). */
static void begin_message(agpu_h1_response_t *r)
{
    r->head_begun = r->head_over = r->in_value = false;
    r->name_len = r->field_len = r->head_bytes = 0;
}

static int on_message_begin(http_parser *p)
{
    begin_message(self_of(p));
    return 0;
}

static int on_status(http_parser *p, const char *at, size_t len)
{
    agpu_h1_response_t *r = self_of(p);
    if (!count_head(r, len))
        return -1;
    begin_head(r);
    return 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len)
{
    agpu_h1_response_t *r = self_of(p);
    if (!count_head(r, len))
        return -1;
    begin_head(r);
    if (r->in_value)
        emit_field(r);
    if (!field_append(r, at, len))
        return out_of_memory(r);
    r->name_len = r->field_len;
    return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len)
{
    agpu_h1_response_t *r = self_of(p);
    if (!count_head(r, len))
        return -1;
    r->in_value = true;
    return field_append(r, at, len) ? 0 : out_of_memory(r);
}

/* Returns 1 (no body) for an interim answer, HEAD, 204 and 304, whatever the headers say. */
static int on_headers_complete(http_parser *p)
{
    agpu_h1_response_t *r = self_of(p);
    begin_head(r);
    emit_field(r);
    int status = (int)p->status_code;
    if (status == 101) {
        snprintf(r->error, sizeof r->error, "the upstream switched protocols");
        return -1;
    }
    if (status < 200)
        return 1;
    r->head_over = true;
    r->sink->head_done(r->arg, status);
    return r->head_request || status == 204 || status == 304 ? 1 : 0;
}

static int on_body(http_parser *p, const char *at, size_t len)
{
    agpu_h1_response_t *r = self_of(p);
    if (r->sink->body(r->arg, at, len))
        return 0;
    /* refused: keep the bytes (the parser counts them as consumed) and stop here */
    r->held = malloc(len);
    if (!r->held) {
        snprintf(r->error, sizeof r->error, "out of memory holding the answer");
        return -1;
    }
    memcpy(r->held, at, len);
    r->held_len = len;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p)
{
    agpu_h1_response_t *r = self_of(p);
    if (!r->head_over)
        return 0; /* an interim answer: the real one follows */
    r->done = true;
    http_parser_pause(p, 1); /* what follows is not part of this answer */
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_status = on_status,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

agpu_h1_response_t *agpu_h1_response_new(const agpu_h1_sink_t *sink)
{
    agpu_h1_response_t *r = calloc(1, sizeof *r);
    if (r)
        r->sink = sink;
    return r;
}

void agpu_h1_response_free(agpu_h1_response_t **r_p)
{
    agpu_h1_response_t *r = *r_p;
    if (!r)
        return;
    *r_p = NULL;
    free(r->field);
    free(r->held);
    free(r);
}

void agpu_h1_response_start(agpu_h1_response_t *r, void *arg, bool head_request)
{
    http_parser_init(&r->parser, HTTP_RESPONSE);
    r->parser.data = r;
    r->arg = arg;
    r->head_request = head_request;
    begin_message(r);
    r->started = r->done = r->too_large = false;
    free(r->held);
    r->held = NULL;
    r->held_len = 0;
    r->error[0] = '\0';
}

static agpu_h1_state_t failed(agpu_h1_response_t *r)
{
    if (r->too_large)
        snprintf(r->error, sizeof r->error, "answer head over %u bytes",
                 (unsigned)AGPU_MAX_UPSTREAM_HEAD);
    else if (!r->error[0])
        snprintf(r->error, sizeof r->error, "malformed answer (%s)",
                 http_errno_description(HTTP_PARSER_ERRNO(&r->parser)));
    return AGPU_H1_FAILED;
}

agpu_h1_state_t agpu_h1_response_feed(agpu_h1_response_t *r, const char *data, size_t len,
                                      size_t *used)
{
    *used = 0;
    if (r->done)
        return AGPU_H1_DONE;
    if (r->error[0] || r->held)
        return r->held ? AGPU_H1_PAUSED : AGPU_H1_FAILED;
    if (len == 0)
        return AGPU_H1_MORE;
    r->started = true;
    *used = http_parser_execute(&r->parser, &settings, data, len);
    enum http_errno err = HTTP_PARSER_ERRNO(&r->parser);
    if (err == HPE_PAUSED)
        return r->done ? AGPU_H1_DONE : AGPU_H1_PAUSED;
    if (err != HPE_OK)
        return failed(r);
    if (r->parser.upgrade) {
        snprintf(r->error, sizeof r->error, "the upstream switched protocols");
        return AGPU_H1_FAILED;
    }
    return AGPU_H1_MORE;
}

agpu_h1_state_t agpu_h1_response_eof(agpu_h1_response_t *r)
{
    if (r->done)
        return AGPU_H1_DONE;
    if (!r->error[0] && !r->held && r->started) {
        http_parser_execute(&r->parser, &settings, NULL, 0);
        if (r->done)
            return AGPU_H1_DONE;
    }
    if (!r->error[0])
        snprintf(r->error, sizeof r->error, "%s",
                 r->started ? "the connection closed mid-answer"
                            : "the connection closed before an answer");
    return AGPU_H1_FAILED;
}

agpu_h1_state_t agpu_h1_response_resume(agpu_h1_response_t *r)
{
    if (!r->held)
        return r->done ? AGPU_H1_DONE : AGPU_H1_MORE;
    if (!r->sink->body(r->arg, r->held, r->held_len))
        return AGPU_H1_PAUSED;
    free(r->held);
    r->held = NULL;
    r->held_len = 0;
    http_parser_pause(&r->parser, 0);
    return AGPU_H1_MORE;
}

bool agpu_h1_response_started(const agpu_h1_response_t *r)
{
    return r->started;
}

bool agpu_h1_response_keep_alive(const agpu_h1_response_t *r)
{
    return r->done && http_should_keep_alive(&r->parser);
}

const char *agpu_h1_response_error(const agpu_h1_response_t *r)
{
    return r->error[0] ? r->error : "no error";
}
