/* Ollama's model names: [host/][namespace/]model[:tag], with defaults registry.ollama.ai,
 * library and latest, compared case-insensitively (types/model/name.go). */
#ifndef AGPU_NAME_H
#define AGPU_NAME_H

#include "agpu_limits.h"

#include <stddef.h>

/* Room for any key: a model name within its gossip limit, plus ":latest". */
#define AGPU_NAME_KEY_MAX (AGPU_MSG_MODEL_NAME_MAX + 8)

/* The shortest form of name, as Ollama's lists show it ("llama3" -> "llama3:latest",
 * "registry.ollama.ai/library/llama3:8b" -> "llama3:8b", "myhost:5000/ns/m" ->
 * "myhost:5000/ns/m:latest"), lowercased so that equal names compare equal with strcmp.
 * Returns 0, or -1 if name is empty or does not fit. */
int agpu_name_key(const char *name, char *out, size_t out_size);

#endif
