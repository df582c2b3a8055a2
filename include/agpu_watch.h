/* The watcher: a thread that polls this node's Ollama (/api/version, /api/tags, /api/ps)
 * every few seconds, and at once when kicked, and tells the mesh what it found. */
#ifndef AGPU_WATCH_H
#define AGPU_WATCH_H

#include "agpu_mesh.h"

typedef struct agpu_watch agpu_watch_t;

/* Starts polling the Ollama at base_url (e.g. "http://127.0.0.1:11434"). Caller owns it. */
agpu_watch_t *agpu_watch_new(const char *base_url, agpu_mesh_t *mesh);
void agpu_watch_destroy(agpu_watch_t **self_p);

/* Poll now: a request may have changed the models (pull, delete, a load). Any thread. */
void agpu_watch_kick(agpu_watch_t *self);

#endif
