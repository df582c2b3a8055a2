/* `agpu serve`: starts the forwarder and the front door, then waits for a signal to stop. */
#include "agpu_serve.h"

#include "agpu_forward.h"
#include "agpu_http.h"
#include "agpu_log.h"

#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/resource.h>

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
    int status = 1;
    char error[256];
    agpu_forward_t *forward = agpu_forward_new(config->connect_timeout_ms);
    agpu_http_options_t http_options = {
        .listen_host = config->listen_host,
        .listen_port = config->listen_port,
        .threads = config->threads,
        .max_connections = config->max_connections,
        .max_body = config->max_body,
        .node_name = config->name,
        .upstream = config->ollama_none ? NULL : config->ollama,
        .origins = config->origins[0] ? config->origins : NULL,
    };
    agpu_http_t *http =
        forward ? agpu_http_new(&http_options, forward, error, sizeof error) : NULL;
    if (!forward)
        agpu_error("cannot start the forwarder");
    else if (!http)
        agpu_error("%s", error);
    else {
        agpu_info("agpu %s listening on http://%s:%u (ollama: %s, %u threads)", config->name,
                  config->listen_host, (unsigned)config->listen_port,
                  config->ollama_none ? "none" : config->ollama, config->threads);
        int signo = 0;
        while (sigwait(&signals, &signo) == 0 && signo == SIGHUP)
            agpu_info("SIGHUP: nothing to reload yet");
        agpu_info("signal %d: stopping", signo);
        status = 0;
        agpu_http_quiesce(http);
    }
    if (forward)
        agpu_forward_stop(forward); /* finishes every exchange, so no connection stays suspended */
    agpu_http_destroy(&http);
    agpu_forward_destroy(&forward);
    curl_global_cleanup();
    return status;
}
