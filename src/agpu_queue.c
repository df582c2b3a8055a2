/* The mesh queue: a list of per-model FIFOs under one lock. Models with waiting requests are
 * few (each FIFO is freed when it empties), so they are found by a linear search. */
#include "agpu_queue.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct fifo fifo_t;

struct agpu_queue_entry {
    agpu_queue_entry_t *next;
    fifo_t *fifo;
    agpu_queue_wake_fn *wake;
    void *arg;
};

struct fifo {
    fifo_t *next;
    char *model;
    agpu_queue_entry_t *head, *tail;
    size_t length;
};

struct agpu_queue {
    pthread_mutex_t lock;
    fifo_t *fifos;
    unsigned max_per_model;
    bool closed;
};

/* Wakes the owner of a FIFO's head. Called with the lock held, so the owner cannot be gone:
 * it takes its entries out (under the lock) before it goes. */
static void wake_head(const fifo_t *fifo)
{
    if (fifo && fifo->head)
        fifo->head->wake(fifo->head->arg);
}

static fifo_t *find(agpu_queue_t *self, const char *model_key)
{
    for (fifo_t *f = self->fifos; f; f = f->next)
        if (strcmp(f->model, model_key) == 0)
            return f;
    return NULL;
}

static void fifo_free(agpu_queue_t *self, fifo_t *fifo)
{
    for (fifo_t **link = &self->fifos; *link; link = &(*link)->next)
        if (*link == fifo) {
            *link = fifo->next;
            break;
        }
    free(fifo->model);
    free(fifo);
}

agpu_queue_t *agpu_queue_new(unsigned max_per_model)
{
    agpu_queue_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    pthread_mutex_init(&self->lock, NULL);
    self->max_per_model = max_per_model;
    return self;
}

void agpu_queue_destroy(agpu_queue_t **self_p)
{
    agpu_queue_t *self = *self_p;
    if (!self)
        return;
    *self_p = NULL;
    while (self->fifos) {
        fifo_t *f = self->fifos;
        while (f->head) {
            agpu_queue_entry_t *e = f->head;
            f->head = e->next;
            free(e);
        }
        fifo_free(self, f);
    }
    pthread_mutex_destroy(&self->lock);
    free(self);
}

agpu_queue_entry_t *agpu_queue_push(agpu_queue_t *self, const char *model_key,
                                    agpu_queue_wake_fn *wake_fn, void *arg)
{
    agpu_queue_entry_t *entry = NULL;
    pthread_mutex_lock(&self->lock);
    fifo_t *fifo = self->closed ? NULL : find(self, model_key);
    if (!fifo && !self->closed && self->max_per_model > 0 && (fifo = calloc(1, sizeof *fifo))) {
        if ((fifo->model = strdup(model_key))) {
            fifo->next = self->fifos;
            self->fifos = fifo;
        } else {
            free(fifo);
            fifo = NULL;
        }
    }
    if (fifo && fifo->length < self->max_per_model && (entry = calloc(1, sizeof *entry))) {
        *entry = (agpu_queue_entry_t){.fifo = fifo, .wake = wake_fn, .arg = arg};
        if (fifo->tail)
            fifo->tail->next = entry;
        else
            fifo->head = entry;
        fifo->tail = entry;
        fifo->length++;
    }
    pthread_mutex_unlock(&self->lock);
    return entry;
}

bool agpu_queue_is_head(agpu_queue_t *self, const agpu_queue_entry_t *entry)
{
    pthread_mutex_lock(&self->lock);
    bool head = entry->fifo->head == entry;
    pthread_mutex_unlock(&self->lock);
    return head;
}

void agpu_queue_remove(agpu_queue_t *self, agpu_queue_entry_t **entry_p)
{
    agpu_queue_entry_t *entry = *entry_p;
    if (!entry)
        return;
    *entry_p = NULL;
    pthread_mutex_lock(&self->lock);
    fifo_t *fifo = entry->fifo;
    agpu_queue_entry_t *prev = NULL;
    for (agpu_queue_entry_t *e = fifo->head; e && e != entry; e = e->next)
        prev = e;
    if (prev)
        prev->next = entry->next;
    else
        fifo->head = entry->next;
    if (fifo->tail == entry)
        fifo->tail = prev;
    fifo->length--;
    if (!prev)
        wake_head(fifo); /* the head left: the next one may go */
    if (fifo->length == 0)
        fifo_free(self, fifo);
    pthread_mutex_unlock(&self->lock);
    free(entry);
}

void agpu_queue_kick(agpu_queue_t *self, const char *model_key)
{
    pthread_mutex_lock(&self->lock);
    wake_head(find(self, model_key));
    pthread_mutex_unlock(&self->lock);
}

void agpu_queue_close(agpu_queue_t *self)
{
    pthread_mutex_lock(&self->lock);
    self->closed = true;
    for (fifo_t *f = self->fifos; f; f = f->next)
        for (agpu_queue_entry_t *e = f->head; e; e = e->next)
            e->wake(e->arg);
    pthread_mutex_unlock(&self->lock);
}

bool agpu_queue_closed(agpu_queue_t *self)
{
    pthread_mutex_lock(&self->lock);
    bool closed = self->closed;
    pthread_mutex_unlock(&self->lock);
    return closed;
}

size_t agpu_queue_length(agpu_queue_t *self, const char *model_key)
{
    pthread_mutex_lock(&self->lock);
    fifo_t *fifo = find(self, model_key);
    size_t length = fifo ? fifo->length : 0;
    pthread_mutex_unlock(&self->lock);
    return length;
}
