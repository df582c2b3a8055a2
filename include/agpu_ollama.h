/* Reading the local Ollama's own answers (/api/tags, /api/ps, /api/version) into what this
 * node tells the mesh. Pure functions over JSON text. */
#ifndef AGPU_OLLAMA_H
#define AGPU_OLLAMA_H

#include "agpu_msg.h"

#include <stddef.h>

/* The installed models of a /api/tags answer, marked loaded (with VRAM size and time to
 * expiry) by a /api/ps answer (ps may be NULL). now_unix_ms is the wall clock, to turn
 * expires_at into a duration. On success returns the count and sets *models (the caller
 * frees it with agpu_ollama_models_free); -1 if tags is not a tags answer. */
long agpu_ollama_parse_models(const char *tags, const char *ps, int64_t now_unix_ms,
                              agpu_msg_model_t **models);
void agpu_ollama_models_free(agpu_msg_model_t *models, size_t count);

/* The version of a /api/version answer, copied into out; -1 if there is none. */
int agpu_ollama_parse_version(const char *json, char *out, size_t out_size);

#endif
