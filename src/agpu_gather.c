/* A mesh-wide list request's answers, read whole from each node's exchange. */
#include "agpu_gather.h"

#include "agpu_limits.h"
#include "agpu_log.h"
#include "agpu_pipe.h"
#include "agpu_text.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    char *node;
    agpu_exchange_t *ex;
    agpu_pipe_t body;
    bool done, ok;
} part_t;

struct agpu_gather {
    agpu_merge_kind_t kind;
    part_t *parts;
    size_t count, alloc;
    char error[AGPU_ERROR_MAX];
};

agpu_gather_t *agpu_gather_new(agpu_merge_kind_t kind)
{
    agpu_gather_t *self = calloc(1, sizeof *self);
    if (self)
        self->kind = kind;
    return self;
}

static void part_end(part_t *p, bool ok)
{
    if (!p->done && p->ex)
        agpu_exchange_cancel(p->ex); /* no-op once it has finished */
    p->done = true;
    p->ok = ok;
    agpu_exchange_unref(&p->ex);
}

void agpu_gather_destroy(agpu_gather_t **self_p)
{
    agpu_gather_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    for (size_t i = 0; i < self->count; i++) {
        part_end(&self->parts[i], false);
        agpu_pipe_free(&self->parts[i].body);
        free(self->parts[i].node);
    }
    free(self->parts);
    free(self);
}

int agpu_gather_add(agpu_gather_t *self, const char *node_name, agpu_exchange_t *ex)
{
    if (self->count == self->alloc) {
        size_t alloc = self->alloc ? self->alloc * 2 : 8;
        part_t *grown = realloc(self->parts, alloc * sizeof *grown);
        if (!grown) {
            agpu_exchange_cancel(ex);
            agpu_exchange_unref(&ex);
            return -1;
        }
        self->parts = grown;
        self->alloc = alloc;
    }
    part_t *p = &self->parts[self->count];
    *p = (part_t){.node = strdup(node_name), .ex = ex};
    if (!p->node) {
        part_end(p, false);
        return -1;
    }
    self->count++;
    return 0;
}

/* Reads one part as far as it has come. */
static void part_step(agpu_gather_t *self, part_t *p)
{
    agpu_response_head_t head;
    char error[AGPU_ERROR_MAX];
    switch (agpu_exchange_head(p->ex, &head, error, sizeof error)) {
    case AGPU_HEAD_WAIT:
        return;
    case AGPU_HEAD_FAILED:
        agpu_debug("mesh-wide list: %s left out: %s", p->node, error);
        agpu_text_copy(self->error, sizeof self->error, error);
        part_end(p, false);
        return;
    case AGPU_HEAD_READY:
        break;
    }
    if (head.status != 200) {
        agpu_debug("mesh-wide list: %s left out: status %d", p->node, head.status);
        snprintf(self->error, sizeof self->error, "%s answered %d", p->node, head.status);
        part_end(p, false);
        return;
    }
    char block[AGPU_RESPONSE_BLOCK];
    long n;
    while ((n = agpu_exchange_read_response(p->ex, block, sizeof block)) > 0) {
        if (agpu_pipe_used(&p->body) + (size_t)n > AGPU_GATHER_MAX_BODY ||
            agpu_pipe_write(&p->body, block, (size_t)n) != 0) {
            snprintf(self->error, sizeof self->error, "%s: answer too large", p->node);
            part_end(p, false);
            return;
        }
    }
    if (n == AGPU_BODY_END)
        part_end(p, true);
    else if (n == AGPU_BODY_BROKEN)
        part_end(p, false);
}

bool agpu_gather_step(agpu_gather_t *self)
{
    bool all_done = true;
    for (size_t i = 0; i < self->count; i++) {
        part_t *p = &self->parts[i];
        if (!p->done)
            part_step(self, p);
        all_done &= p->done;
    }
    return all_done;
}

void agpu_gather_cancel_rest(agpu_gather_t *self)
{
    for (size_t i = 0; i < self->count; i++)
        if (!self->parts[i].done) {
            agpu_debug("mesh-wide list: %s left out: no answer in time", self->parts[i].node);
            part_end(&self->parts[i], false);
        }
}

char *agpu_gather_result(agpu_gather_t *self, size_t *len, char *error, size_t error_size)
{
    agpu_merge_part_t *parts = calloc(self->count ? self->count : 1, sizeof *parts);
    size_t n = 0;
    for (size_t i = 0; parts && i < self->count; i++) {
        part_t *p = &self->parts[i];
        if (p->ok)
            parts[n++] = (agpu_merge_part_t){p->node,
                                             p->body.data ? p->body.data + p->body.start : "",
                                             agpu_pipe_used(&p->body)};
    }
    char *merged = n ? agpu_merge(self->kind, parts, n, len) : NULL;
    free(parts);
    if (!merged)
        snprintf(error, error_size, "no node answered: %s",
                 self->error[0] ? self->error : "out of memory");
    return merged;
}
