/* `agpu serve`: opens the listening socket, starts one shard per thread, waits for a signal. */
#include "agpu_serve.h"

#include "agpu_log.h"
#include "agpu_shard.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>
#include <unistd.h>

/* Each client connection and each upstream transfer holds a descriptor. */
static void raise_fd_limit(unsigned max_connections)
{
    struct rlimit limit;
    if (getrlimit(RLIMIT_NOFILE, &limit) != 0)
        return;
    rlim_t want = (rlim_t)max_connections * 2 + 64;
    if (limit.rlim_cur >= want)
        return;
    limit.rlim_cur = limit.rlim_max < want ? limit.rlim_max : want;
    setrlimit(RLIMIT_NOFILE, &limit);
    if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < (rlim_t)max_connections)
        agpu_warn("open-file limit %llu cannot hold %u connections (--max-connections)",
                  (unsigned long long)limit.rlim_cur, max_connections);
}

/* Signals are taken synchronously by the main thread; every other thread blocks them. */
static void block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGTERM);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

int agpu_serve(const agpu_config_t *config)
{
    agpu_log_set_level(config->verbose ? AGPU_LOG_DEBUG : AGPU_LOG_INFO);
    sigset_t signals;
    block_signals(&signals);
    raise_fd_limit(config->max_connections);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
        agpu_error("libcurl failed to initialise");
        return 1;
    }
    char error[256];
    agpu_shard_t *shards[AGPU_MAX_SHARDS] = {NULL};
    unsigned count = config->threads < AGPU_MAX_SHARDS ? config->threads : AGPU_MAX_SHARDS;
    agpu_http_options_t http_options = {
        .max_connections = config->max_connections / count + 1,
        .max_body = config->max_body,
        .node_name = config->name,
        .upstream = config->ollama_none ? NULL : config->ollama,
        .origins = config->origins[0] ? config->origins : NULL,
    };
    int listen_fd = agpu_http_listen(config->listen_host, config->listen_port, error, sizeof error);
    bool started = listen_fd >= 0;
    for (unsigned i = 0; started && i < count; i++)
        started = (shards[i] = agpu_shard_new(&http_options, listen_fd, config->connect_timeout_ms,
                                              error, sizeof error)) != NULL;
    int status = 1;
    if (!started) {
        agpu_error("%s", error);
    } else {
        agpu_info("agpu %s listening on http://%s:%u (ollama: %s, %u shards)", config->name,
                  config->listen_host, (unsigned)config->listen_port,
                  config->ollama_none ? "none" : config->ollama, count);
        int signo = 0;
        while (sigwait(&signals, &signo) == 0 && signo == SIGHUP)
            agpu_info("SIGHUP: nothing to reload yet");
        agpu_info("signal %d: stopping", signo);
        status = 0;
    }
    for (unsigned i = 0; i < count; i++)
        agpu_shard_destroy(&shards[i]);
    if (listen_fd >= 0)
        close(listen_fd);
    curl_global_cleanup();
    return status;
}
