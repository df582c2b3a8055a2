/* sim_name: Ollama model names parsed, checked and shown as types/model/name.go does. */
#ifndef SIM_NAME_H
#define SIM_NAME_H

#include <stdbool.h>
#include <stddef.h>

/* Longer parts than Ollama allows (350 for a host, 80 otherwise) are kept truncated and
 * marked too long, so they fail validation. */
#define SIM_NAME_PART_MAX 352
#define SIM_NAME_MAX (4 * SIM_NAME_PART_MAX)

typedef struct {
    char host[SIM_NAME_PART_MAX];
    char ns[SIM_NAME_PART_MAX];
    char model[SIM_NAME_PART_MAX];
    char tag[SIM_NAME_PART_MAX];
    bool too_long;
} sim_name_t;

/* ParseName: the bare parts merged with registry.ollama.ai / library / latest. */
void sim_name_parse(const char *s, sim_name_t *out);
bool sim_name_valid(const sim_name_t *n);
/* host/namespace/model:tag */
void sim_name_full(const sim_name_t *n, char *buf, size_t size);
/* The shortest form lists show: model:tag, ns/model:tag, or host/ns/model:tag. */
void sim_name_shortest(const sim_name_t *n, char *buf, size_t size);
bool sim_name_eqfold(const sim_name_t *a, const sim_name_t *b);

#endif
