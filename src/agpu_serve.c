/* `agpu serve`: opens the listening socket, joins the mesh, starts the Ollama watcher and one
 * shard per thread, then waits for a signal. */
#include "agpu_serve.h"

#include "agpu_discovery.h"
#include "agpu_h1.h"
#include "agpu_identity.h"
#include "agpu_ledger.h"
#include "agpu_log.h"
#include "agpu_mesh.h"
#include "agpu_queue.h"
#include "agpu_resolver.h"
#include "agpu_shard.h"
#include "agpu_watch.h"

#include <curl/curl.h>
#include <sodium.h>
#include <string.h>
#include <time.h>
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
    sigaddset(set, SIGUSR1);
    sigaddset(set, SIGUSR2);
    pthread_sigmask(SIG_BLOCK, set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

/* The mesh settings of this node: who it is, where peers reach it, whom it dials first. */
static agpu_mesh_t *start_mesh(const agpu_config_t *config, char *error, size_t error_size)
{
    char id[AGPU_ID_LEN + 1], address[AGPU_HOSTPORT_MAX];
    agpu_identity_id(config->name, config->listen_port, id);
    if (agpu_identity_address(config->listen_host, config->advertise, address, sizeof address)) {
        snprintf(error, error_size, "cannot choose an address to advertise (--advertise)");
        return NULL;
    }
    bool v6 = strchr(address, ':') != NULL;
    char bind[AGPU_HOSTPORT_MAX + 16], gossip[AGPU_MSG_ENDPOINT_MAX + 1],
        http[AGPU_MSG_ENDPOINT_MAX + 1];
    snprintf(bind, sizeof bind, "tcp://%s%s%s:%u", strchr(config->gossip_host, ':') ? "[" : "",
             config->gossip_host, strchr(config->gossip_host, ':') ? "]" : "",
             (unsigned)config->gossip_port);
    snprintf(gossip, sizeof gossip, "tcp://%s%s%s:%u", v6 ? "[" : "", address, v6 ? "]" : "",
             (unsigned)config->gossip_port);
    snprintf(http, sizeof http, "http://%s%s%s:%u", v6 ? "[" : "", address, v6 ? "]" : "",
             (unsigned)config->listen_port);
    char seeds[AGPU_MAX_SEEDS][AGPU_HOSTPORT_MAX + 8];
    const char *seed_list[AGPU_MAX_SEEDS];
    for (size_t i = 0; i < config->peer_count; i++) {
        snprintf(seeds[i], sizeof seeds[i], "tcp://%s", config->peers[i]);
        seed_list[i] = seeds[i];
    }
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    agpu_peer_timeouts_t timeouts = agpu_peer_timeouts_default;
    if (config->heartbeat_ms != timeouts.heartbeat_ms) {
        /* every liveness timeout keeps its ratio to the heartbeat */
        int64_t hb = config->heartbeat_ms;
        timeouts = (agpu_peer_timeouts_t){hb, hb / 20, hb / 10, hb * 2, hb * 28 / 10, hb * 5,
                                          timeouts.forget_ms > hb * 60 ? timeouts.forget_ms
                                                                       : hb * 60};
    }
    agpu_mesh_options_t options = {
        .id = id,
        .name = config->name,
        .incarnation = (uint64_t)now.tv_sec * 1000 + (uint64_t)now.tv_nsec / 1000000,
        .bind = bind,
        .gossip_endpoint = gossip,
        .http_endpoint = http,
        .seeds = seed_list,
        .n_seeds = config->peer_count,
        .slots = config->ollama_none ? 0 : config->slots,
        .timeouts = timeouts,
    };
    agpu_mesh_t *mesh = agpu_mesh_new(&options, error, error_size);
    if (mesh)
        agpu_info("mesh: node %s (%s), gossip %s, advertised %s", config->name, id, bind, gossip);
    return mesh;
}

/* mDNS: a node found on the LAN is dialled on its gossip port; the mesh does the rest. */
static void on_discovered(const agpu_discovery_event_t *event, void *arg)
{
    if (event->kind != AGPU_DISCOVERY_FOUND || strchr(event->address, ':'))
        return; /* LOST is only a hint (liveness is the mesh's); IPv6 peers are not dialled yet */
    char endpoint[AGPU_DISCOVERY_ADDRESS_MAX + 16];
    snprintf(endpoint, sizeof endpoint, "tcp://%s:%u", event->address,
             (unsigned)event->gossip_port);
    agpu_debug("mDNS: %s (%s) at %s", event->name, event->id, endpoint);
    agpu_mesh_add_endpoint(arg, endpoint);
}

static agpu_discovery_t *start_discovery(const agpu_config_t *config, agpu_mesh_t *mesh)
{
    char id[AGPU_ID_LEN + 1];
    agpu_identity_id(config->name, config->listen_port, id);
    agpu_discovery_self_t self = {.id = id, .name = config->name,
                                  .http_port = config->listen_port,
                                  .gossip_port = config->gossip_port,
                                  .proto = AGPU_MSG_VERSION};
    return agpu_discovery_new(&self, on_discovered, mesh);
}

/* Shards accept from one listening socket; each runs a front door and a forwarder. */
static int start_shards(const agpu_config_t *config, agpu_mesh_t *mesh, agpu_watch_t *watch,
                        agpu_ledger_t *ledger, agpu_queue_t *queue, agpu_resolver_t *resolver,
                        int listen_fd, agpu_shard_t **shards, unsigned count, char *error,
                        size_t error_size)
{
    agpu_http_options_t http_options = {
        .ledger = ledger,
        .queue = queue,
        .queue_timeout_ms = config->queue_timeout_ms,
        .cold_after_ms = config->cold_after_ms,
        .first_byte_timeout_ms = config->first_byte_timeout_ms,
        .max_connections = config->max_connections / count + 1,
        .max_body = config->max_body,
        .node_name = config->name,
        .upstream = config->ollama_none ? NULL : config->ollama,
        .origins = config->origins[0] ? config->origins : NULL,
        .mesh = mesh,
        .watch = watch,
    };
    for (unsigned i = 0; i < count; i++)
        if (!(shards[i] = agpu_shard_new(&http_options, listen_fd, config->connect_timeout_ms,
                                         resolver, error, error_size)))
            return -1;
    return 0;
}

/* The local Ollama's host name, when it is one, is looked up now: the first request finds
 * its addresses ready. */
static void look_up_ollama(const agpu_config_t *config, agpu_resolver_t *resolver)
{
    agpu_h1_url_t url;
    agpu_addresses_t addresses;
    char reason[8];
    if (resolver && !config->ollama_none && agpu_h1_parse_url(config->ollama, &url) == 0)
        agpu_resolver_lookup(resolver, url.host, url.port, &addresses, reason, sizeof reason);
}

int agpu_serve(const agpu_config_t *config)
{
    agpu_log_set_level(config->verbose ? AGPU_LOG_DEBUG : AGPU_LOG_INFO);
    sigset_t signals;
    block_signals(&signals);
    raise_fd_limit(config->max_connections);
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || sodium_init() < 0) {
        agpu_error("libcurl or libsodium failed to initialise");
        return 1;
    }
    char error[512] = "";
    agpu_shard_t *shards[AGPU_MAX_SHARDS] = {NULL};
    unsigned count = config->threads < AGPU_MAX_SHARDS ? config->threads : AGPU_MAX_SHARDS;
    agpu_watch_t *watch = NULL;
    agpu_discovery_t *discovery = NULL;
    agpu_ledger_t *ledger = agpu_ledger_new();
    agpu_queue_t *queue = agpu_queue_new(config->queue_max);
    agpu_resolver_t *resolver = agpu_resolver_new(&agpu_resolver_defaults);
    look_up_ollama(config, resolver);
    int listen_fd = agpu_http_listen(config->listen_host, config->listen_port, error, sizeof error);
    agpu_mesh_t *mesh = listen_fd >= 0 ? start_mesh(config, error, sizeof error) : NULL;
    if (mesh && !config->ollama_none)
        watch = agpu_watch_new(config->ollama, mesh);
    if (mesh && !config->no_mdns && !(discovery = start_discovery(config, mesh)))
        agpu_warn("mDNS discovery could not start: only seeds and peers' peers are used");
    bool started = mesh && ledger && queue && resolver && (config->ollama_none || watch) &&
                   start_shards(config, mesh, watch, ledger, queue, resolver, listen_fd, shards,
                                count, error, sizeof error) == 0;
    int status = 1;
    if (!started) {
        agpu_error("%s", error[0] ? error : "cannot start");
    } else {
        agpu_info("agpu %s listening on http://%s:%u (ollama: %s, %u shards)", config->name,
                  config->listen_host, (unsigned)config->listen_port,
                  config->ollama_none ? "none" : config->ollama, count);
        int signo = 0;
        while (sigwait(&signals, &signo) == 0 &&
               (signo == SIGHUP || signo == SIGUSR1 || signo == SIGUSR2)) {
            if (signo == SIGHUP) {
                agpu_info("SIGHUP: nothing to reload yet");
                continue;
            }
            agpu_info("%s: %s", signo == SIGUSR1 ? "SIGUSR1" : "SIGUSR2",
                      signo == SIGUSR1 ? "draining: no new work; finishing what is under way"
                                       : "undraining: taking work again");
            agpu_mesh_set_draining(mesh, signo == SIGUSR1);
        }
        agpu_info("signal %d: leaving the mesh and stopping", signo);
        status = 0;
    }
    agpu_discovery_destroy(&discovery);
    if (mesh)
        agpu_mesh_leave(mesh); /* goodbye first: peers stop sending work here at once */
    if (queue)
        agpu_queue_close(queue); /* what waits is answered now, before any shard stops */
    for (unsigned i = 0; i < count; i++)
        agpu_shard_destroy(&shards[i]);
    agpu_resolver_destroy(&resolver);
    agpu_watch_destroy(&watch);
    agpu_mesh_destroy(&mesh);
    agpu_queue_destroy(&queue);
    agpu_ledger_destroy(&ledger);
    if (listen_fd >= 0)
        close(listen_fd);
    curl_global_cleanup();
    return status;
}
