/* sim_catalog: the installed models (what /api/tags lists) and the uploaded blobs. */
#ifndef SIM_CATALOG_H
#define SIM_CATALOG_H

#include "sim_json.h"
#include "sim_name.h"

#include <stdbool.h>
#include <stdint.h>

enum {
    SIM_CAP_COMPLETION = 1 << 0,
    SIM_CAP_TOOLS = 1 << 1,
    SIM_CAP_INSERT = 1 << 2,
    SIM_CAP_EMBEDDING = 1 << 3,
};

#define SIM_DIGEST_HEX 64
#define SIM_MAX_PARAMS 8

/* One installed model. Entries are immutable once published and never freed before exit
 * (delete only unlinks), so a pointer from sim_catalog_find stays valid. */
typedef struct sim_model {
    sim_name_t name;
    char full[SIM_NAME_MAX];     /* registry.ollama.ai/library/llama3.2:latest */
    char shortest[SIM_NAME_MAX]; /* llama3.2:latest */
    int64_t size;
    char digest[SIM_DIGEST_HEX + 1];    /* the manifest's sha256 */
    char blob[SIM_DIGEST_HEX + 8];      /* "sha256:..." of the weights: what a runner loads */
    char layers[4][SIM_DIGEST_HEX + 8]; /* template, license, params, config */
    int64_t layer_sizes[4];
    int64_t modified_sec;
    long modified_nsec;
    char family[32];
    char parameter_size[16];
    char quantization[16];
    char parent[SIM_NAME_MAX];
    unsigned caps;
    int64_t context_length; /* what the weights were trained for */
    int64_t embedding_length;
    int64_t parameter_count;
    const char *template_text;
    const char *license;
    char *system;         /* owned; NULL when none */
    char *template_owned; /* owned when a create set the template (template_text points here) */
    struct {
        char key[32];
        char value[96];
        bool quoted; /* a string in the params layer, not a number */
    } params[SIM_MAX_PARAMS];
    int nparams;
    struct sim_model *next;
} sim_model_t;

void sim_catalog_init(void);
void sim_catalog_free(void);

/* size <= 0: a plausible size for the name. Returns -1 for an invalid name. */
int sim_catalog_add(const char *name, int64_t size);
const sim_model_t *sim_catalog_find(const sim_name_t *name);
/* The models, most recently modified first. Caller frees the array (not the entries). */
const sim_model_t **sim_catalog_list(size_t *count);

/* What a pull of this name would install (not yet added): layers, sizes, digests. */
sim_model_t *sim_catalog_describe(const sim_name_t *name);
/* Publish m (from describe or derive) under its name, replacing a model of that name. */
void sim_catalog_publish(sim_model_t *m);
/* A new entry copied from src, renamed; the caller edits it, then publishes it. */
sim_model_t *sim_catalog_derive(const sim_model_t *src, const sim_name_t *name);
/* Recompute the manifest digest after edits (create). */
void sim_catalog_rehash(sim_model_t *m);
int sim_catalog_copy(const sim_name_t *src, const sim_name_t *dst);
int sim_catalog_delete(const sim_name_t *name);

/* The details object shared by tags, ps and show. */
void sim_catalog_details(sim_buf_t *b, const sim_model_t *m, bool with_parent);
/* The modelfile / parameters / model_info parts of /api/show. */
void sim_catalog_modelfile(sim_buf_t *b, const sim_model_t *m);
void sim_catalog_parameters(sim_buf_t *b, const sim_model_t *m);
void sim_catalog_model_info(sim_buf_t *b, const sim_model_t *m);

/* Blobs: digest given as "sha256:<hex>" or "sha256-<hex>". */
bool sim_blob_valid(const char *digest);
bool sim_blob_exists(const char *digest);
void sim_blob_add(const char *digest, int64_t size);
int64_t sim_blob_size(const char *digest);

/* sha256 of data as lowercase hex. */
void sim_sha256_hex(const void *data, size_t len, char out[SIM_DIGEST_HEX + 1]);

#endif
