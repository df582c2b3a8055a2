/* A byte FIFO between the two sides of a proxied exchange. Not locked. */
#ifndef AGPU_PIPE_H
#define AGPU_PIPE_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
    char *data;
    size_t start; /* first unread byte */
    size_t end;   /* one past the last byte */
    size_t alloc;
} agpu_pipe_t;

/* A pipe is "full" at AGPU_PIPE_SOFT_CAP: the writer pauses once it is, but a write always
 * takes its whole chunk, since neither side can take a chunk back. */
bool agpu_pipe_full(const agpu_pipe_t *pipe);
size_t agpu_pipe_used(const agpu_pipe_t *pipe);

/* Appends len bytes. Returns 0, or -1 when out of memory (nothing appended). */
int agpu_pipe_write(agpu_pipe_t *pipe, const void *data, size_t len);

/* Moves up to max bytes out. Returns how many. */
size_t agpu_pipe_read(agpu_pipe_t *pipe, void *out, size_t max);

/* Moves all unread bytes out without copying them elsewhere: the pipe's own buffer, its
 * *len bytes first (caller frees). The pipe is left empty. NULL when it was empty. */
char *agpu_pipe_take(agpu_pipe_t *pipe, size_t *len);

void agpu_pipe_free(agpu_pipe_t *pipe);

#endif
