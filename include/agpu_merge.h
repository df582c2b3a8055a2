/* Mesh-wide answers: one body made of several nodes' answers to the same list request
 * (/api/tags, /api/ps, /v1/models), in the shape Ollama gives for one node. A pure function
 * over the bodies, so it is tested alone. */
#ifndef AGPU_MERGE_H
#define AGPU_MERGE_H

#include <stddef.h>

typedef enum {
    AGPU_MERGE_TAGS,  /* {"models":[...]}: one entry per (name, digest), newest first */
    AGPU_MERGE_PS,    /* {"models":[...]}: one entry per loaded (name, digest) */
    AGPU_MERGE_OPENAI /* {"object":"list","data":[...]}: one entry per id */
} agpu_merge_kind_t;

/* One node's answer: its name and the body its Ollama gave (not NUL-terminated). */
typedef struct {
    const char *node;
    const char *body;
    size_t len;
} agpu_merge_part_t;

/* The merged body (NUL-terminated, compact JSON; *len its length), which the caller frees.
 * A part that is not the expected JSON is skipped; each entry of Ollama's lists gains
 * "nodes": the names of the nodes it came from, in the order of parts. NULL when no part
 * could be read (or out of memory). */
char *agpu_merge(agpu_merge_kind_t kind, const agpu_merge_part_t *parts, size_t n_parts,
                 size_t *len);

#endif
