/* sim_main: ollama-sim's main: options, the model catalogue, the clock, the HTTP front, signals. */
#include "sim_catalog.h"
#include "sim_clock.h"
#include "sim_config.h"
#include "sim_http.h"
#include "sim_log.h"
#include "sim_sched.h"

#include <signal.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    int rc = sim_config_load(argc, argv);
    if (rc != 0) {
        sim_config_free();
        return rc == 1 ? 0 : 2;
    }
    sim_verbose = sim_cfg.verbose;
    if (sodium_init() < 0)
        sim_die("libsodium failed to initialise");

    /* SIGINT and SIGTERM are taken by sigwait below; every thread inherits the mask */
    sigset_t stop;
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);
    signal(SIGPIPE, SIG_IGN);
    srand((unsigned)time(NULL) ^ (unsigned)getpid());

    sim_catalog_init();
    for (int i = 0; i < sim_cfg.nmodels; i++) {
        if (sim_catalog_add(sim_cfg.models[i].name, sim_cfg.models[i].size) != 0) {
            fprintf(stderr, "ollama-sim: invalid model name '%s'\n", sim_cfg.models[i].name);
            sim_catalog_free();
            sim_config_free();
            return 2;
        }
    }
    sim_sched_init();
    if (sim_clock_start() != 0)
        return 1;
    if (sim_http_start() != 0) {
        sim_clock_stop();
        sim_catalog_free();
        sim_config_free();
        return 1;
    }
    bool v6 = strchr(sim_cfg.listen_host, ':') != NULL;
    fprintf(stderr, "ollama-sim listening on %s%s%s:%d\n", v6 ? "[" : "", sim_cfg.listen_host,
            v6 ? "]" : "", sim_http_port());
    fflush(stderr);

    int sig = 0;
    while (sigwait(&stop, &sig) != 0)
        ;
    if (sim_cfg.verbose)
        sim_log("%s: shutting down", strsignal(sig));
    int64_t t0 = sim_mono_ns();
    sim_http_stop();
    int64_t t1 = sim_mono_ns();
    sim_lock();
    sim_sched_shutdown();
    sim_unlock();
    sim_clock_stop();
    if (sim_cfg.verbose)
        sim_log("stopped: http %.1f ms, clock %.1f ms", (double)(t1 - t0) / 1e6,
                (double)(sim_mono_ns() - t1) / 1e6);
    sim_catalog_free();
    sim_config_free();
    return 0;
}
