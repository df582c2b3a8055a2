/* agpu's settings: one option table drives the config file, the AGPU_* environment, the
 * command-line flags and the --help text. Later sources win: file, then env, then flags. */
#ifndef AGPU_CONFIG_H
#define AGPU_CONFIG_H

#include "agpu_limits.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
    char listen_host[AGPU_HOSTPORT_MAX];
    uint16_t listen_port;
    char ollama[AGPU_URL_MAX]; /* base URL of this node's Ollama; "" with ollama_none */
    bool ollama_none;
    char gossip_host[AGPU_HOSTPORT_MAX];
    uint16_t gossip_port;
    char peers[AGPU_MAX_SEEDS][AGPU_HOSTPORT_MAX]; /* seeds' gossip HOST:PORT */
    size_t peer_count;
    char name[AGPU_NAME_MAX];
    bool no_mdns;
    char config_file[AGPU_URL_MAX];
    int verbose;
    uint64_t max_body;
    unsigned connect_timeout_ms;
    unsigned threads;
    unsigned max_connections;
    char origins[AGPU_URL_MAX]; /* extra CORS origins (OLLAMA_ORIGINS) */
    char advertise[AGPU_HOSTPORT_MAX]; /* address peers reach this node on; "" = pick one */
    unsigned slots;                    /* requests the local Ollama runs at once */
    unsigned heartbeat_ms;
    unsigned queue_max;             /* requests waiting per model at this entry node */
    unsigned queue_timeout_ms;      /* longest wait for a slot */
    unsigned cold_after_ms;         /* wait for a warm slot before a cold load elsewhere */
    unsigned first_byte_timeout_ms; /* 0: none */
} agpu_config_t;

/* Fills config from defaults, the config file, the environment (envp: NAME=VALUE strings,
 * NULL-terminated) and argv (the arguments after "serve"). On a bad value writes one line
 * to error and returns -1; returns 1 when --help was asked (help printed to out), else 0. */
int agpu_config_load(agpu_config_t *config, int argc, char *const argv[], char *const envp[],
                     FILE *out, char *error, size_t error_size);

/* The `agpu serve --help` text. */
void agpu_config_print_help(FILE *out);

#endif
