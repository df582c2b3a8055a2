/* A byte FIFO between the two sides of a proxied exchange: a buffer with a read offset,
 * compacted when it would otherwise grow. */
#include "agpu_pipe.h"

#include "agpu_limits.h"

#include <stdlib.h>
#include <string.h>

/* The first buffer: most pipes carry one short body or a few lines at a time, and a buffer
 * this small comes from malloc's per-thread cache; a bigger need doubles it. */
#define PIPE_FIRST_ALLOC 512

bool agpu_pipe_full(const agpu_pipe_t *pipe)
{
    return agpu_pipe_used(pipe) >= AGPU_PIPE_SOFT_CAP;
}

size_t agpu_pipe_used(const agpu_pipe_t *pipe)
{
    return pipe->end - pipe->start;
}

int agpu_pipe_write(agpu_pipe_t *pipe, const void *data, size_t len)
{
    if (len == 0)
        return 0;
    if (pipe->alloc - pipe->end < len && pipe->start > 0) {
        size_t used = agpu_pipe_used(pipe);
        memmove(pipe->data, pipe->data + pipe->start, used);
        pipe->start = 0;
        pipe->end = used;
    }
    if (pipe->alloc - pipe->end < len) {
        size_t want = pipe->alloc ? pipe->alloc : PIPE_FIRST_ALLOC;
        while (want - pipe->end < len)
            want *= 2;
        char *grown = realloc(pipe->data, want);
        if (!grown)
            return -1;
        pipe->data = grown;
        pipe->alloc = want;
    }
    memcpy(pipe->data + pipe->end, data, len);
    pipe->end += len;
    return 0;
}

size_t agpu_pipe_read(agpu_pipe_t *pipe, void *out, size_t max)
{
    size_t n = agpu_pipe_used(pipe);
    if (n > max)
        n = max;
    if (n == 0)
        return 0;
    memcpy(out, pipe->data + pipe->start, n);
    pipe->start += n;
    if (pipe->start == pipe->end)
        pipe->start = pipe->end = 0;
    return n;
}

char *agpu_pipe_take(agpu_pipe_t *pipe, size_t *len)
{
    *len = agpu_pipe_used(pipe);
    if (*len == 0)
        return NULL;
    if (pipe->start > 0)
        memmove(pipe->data, pipe->data + pipe->start, *len);
    char *data = pipe->data;
    memset(pipe, 0, sizeof *pipe);
    return data;
}

void agpu_pipe_free(agpu_pipe_t *pipe)
{
    free(pipe->data);
    memset(pipe, 0, sizeof *pipe);
}
