/* The watcher thread: polls the local Ollama and hands the mesh what it found. */
#include "agpu_watch.h"

#include "agpu_fetch.h"
#include "agpu_log.h"
#include "agpu_ollama.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Ollama's model lists change when someone pulls or loads a model: every 2 s keeps the mesh
 * current without load on Ollama (kicks cover our own requests at once). */
#define WATCH_INTERVAL_MS 2000
/* Kicks closer together than this are served by one poll, so a busy node does not poll
 * Ollama once per request. */
#define WATCH_MIN_GAP_MS 250
/* A local Ollama answers these in milliseconds; one that takes longer is treated as down. */
#define WATCH_TIMEOUT_MS 1500
/* /api/tags of a large installation is tens of KiB. */
#define WATCH_MAX_ANSWER (4U << 20)

struct agpu_watch {
    char *base;
    agpu_mesh_t *mesh;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    bool kicked, stop, was_up, said_down;
};

static char *get(agpu_watch_t *self, const char *path)
{
    char url[1200], error[512];
    snprintf(url, sizeof url, "%s%s", self->base, path);
    agpu_fetch_result_t result;
    if (agpu_fetch("GET", url, NULL, WATCH_TIMEOUT_MS, WATCH_MAX_ANSWER, &result, error,
                   sizeof error) != 0) {
        agpu_debug("%s", error);
        return NULL;
    }
    if (result.status != 200) {
        agpu_fetch_free(&result);
        return NULL;
    }
    return result.body; /* the caller frees it */
}

static void poll_once(agpu_watch_t *self)
{
    char *version_json = get(self, "/api/version");
    char *tags = version_json ? get(self, "/api/tags") : NULL;
    char *ps = tags ? get(self, "/api/ps") : NULL;
    char version[AGPU_MSG_VERSION_MAX + 1] = "";
    agpu_msg_model_t *models = NULL;
    long count = -1;
    if (version_json && tags) {
        agpu_ollama_parse_version(version_json, version, sizeof version);
        struct timespec now;
        clock_gettime(CLOCK_REALTIME, &now);
        count = agpu_ollama_parse_models(tags, ps, (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000,
                                         &models);
    }
    bool up = count >= 0;
    if (up != self->was_up || (!up && !self->said_down)) {
        if (up)
            agpu_info("ollama at %s is up (version %s, %ld models)", self->base, version, count);
        else
            agpu_warn("ollama at %s does not answer", self->base);
        self->said_down = !up;
    }
    self->was_up = up;
    agpu_mesh_set_local(self->mesh, up, version, models, up ? (size_t)count : 0);
    agpu_ollama_models_free(models, up ? (size_t)count : 0);
    free(version_json);
    free(tags);
    free(ps);
}

static void *watch_thread(void *arg)
{
    agpu_watch_t *self = arg;
    pthread_mutex_lock(&self->lock);
    while (!self->stop) {
        pthread_mutex_unlock(&self->lock);
        poll_once(self);
        pthread_mutex_lock(&self->lock);
        struct timespec deadline;
        clock_gettime(CLOCK_MONOTONIC, &deadline);
        deadline.tv_sec += WATCH_INTERVAL_MS / 1000;
        deadline.tv_nsec += (WATCH_INTERVAL_MS % 1000) * 1000000L;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        while (!self->stop && !self->kicked &&
               pthread_cond_timedwait(&self->wake, &self->lock, &deadline) == 0)
            ;
        if (self->kicked && !self->stop) {
            pthread_mutex_unlock(&self->lock);
            struct timespec gap = {0, WATCH_MIN_GAP_MS * 1000000L};
            nanosleep(&gap, NULL);
            pthread_mutex_lock(&self->lock);
        }
        self->kicked = false;
    }
    pthread_mutex_unlock(&self->lock);
    return NULL;
}

agpu_watch_t *agpu_watch_new(const char *base_url, agpu_mesh_t *mesh)
{
    agpu_watch_t *self = calloc(1, sizeof *self);
    if (!self || !(self->base = strdup(base_url))) {
        free(self);
        return NULL;
    }
    self->mesh = mesh;
    self->was_up = true; /* so the first failure is said once */
    pthread_mutex_init(&self->lock, NULL);
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&self->wake, &attr);
    pthread_condattr_destroy(&attr);
    if (pthread_create(&self->thread, NULL, watch_thread, self) != 0) {
        pthread_cond_destroy(&self->wake);
        pthread_mutex_destroy(&self->lock);
        free(self->base);
        free(self);
        return NULL;
    }
    return self;
}

void agpu_watch_destroy(agpu_watch_t **self_p)
{
    agpu_watch_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    pthread_mutex_lock(&self->lock);
    self->stop = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
    pthread_join(self->thread, NULL);
    pthread_cond_destroy(&self->wake);
    pthread_mutex_destroy(&self->lock);
    free(self->base);
    free(self);
}

void agpu_watch_kick(agpu_watch_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->kicked = true;
    pthread_cond_signal(&self->wake);
    pthread_mutex_unlock(&self->lock);
}
