/* sim_config: one option table drives the command line, the OLLAMA_* environment and --help. */
#ifndef SIM_CONFIG_H
#define SIM_CONFIG_H

#include <stdbool.h>
#include <stdint.h>

typedef struct {
    char *name; /* as given: llama3.2:latest */
    int64_t size;
} sim_config_model_t;

typedef struct {
    char listen_host[256]; /* numeric address or a name to resolve */
    int listen_port;
    sim_config_model_t *models;
    int nmodels;
    double tokens_per_sec; /* per slot; 0 = as fast as possible */
    int parallel;          /* slots per loaded model */
    int max_loaded;
    int64_t load_ns;
    int64_t keep_alive_ns; /* INT64_MAX = forever */
    int max_queue;
    int num_ctx;
    int embed_dim;
    int64_t pull_ns;
    char version[64];
    int threads;
    bool verbose;
} sim_config_t;

extern sim_config_t sim_cfg;

/* Returns 0 to run, 1 when --help was printed (exit 0), 2 after printing one error line. */
int sim_config_load(int argc, char **argv);
void sim_config_free(void);

#endif
