/* The mesh queue: while no node in the mesh has a free slot for a model, requests for it wait
 * at their entry node in one FIFO per model, shared by every shard of the node. Only the head
 * of a model's FIFO may go; when it goes (or gives up), the next one becomes the head and its
 * owner is woken. Whoever sees a slot free (a request finishing, a newer gossip view) kicks
 * the model's head. A bounded queue: past its bound a request is refused (503). */
#ifndef AGPU_QUEUE_H
#define AGPU_QUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct agpu_queue agpu_queue_t;
typedef struct agpu_queue_entry agpu_queue_entry_t;

/* Called, from any thread, when the entry's owner should look at it again: it became the
 * head of its model's FIFO, or a slot may have freed for it. Called with the queue's lock
 * held: it must only note the wake-up (an atomic flag, an eventfd) and never call back. */
typedef void(agpu_queue_wake_fn)(void *arg);

/* A queue holding at most max_per_model requests per model. Caller owns it. */
agpu_queue_t *agpu_queue_new(unsigned max_per_model);
void agpu_queue_destroy(agpu_queue_t **self_p);

/* Puts a request for model_key at the end of its model's FIFO. NULL when that FIFO is full
 * (or out of memory): the request is refused. wake(arg) is how its owner is told to look. */
agpu_queue_entry_t *agpu_queue_push(agpu_queue_t *self, const char *model_key,
                                    agpu_queue_wake_fn *wake, void *arg);

/* Whether the entry is the head of its model's FIFO: the only one that may go now. */
bool agpu_queue_is_head(agpu_queue_t *self, const agpu_queue_entry_t *entry);

/* Takes the entry out (it went, or gave up) and frees it; the new head's owner is woken. */
void agpu_queue_remove(agpu_queue_t *self, agpu_queue_entry_t **entry_p);

/* A slot may have freed for model_key: its head's owner is woken. */
void agpu_queue_kick(agpu_queue_t *self, const char *model_key);

/* The node is stopping: every waiting request's owner is woken to answer it (no slot will
 * free for it here), and no request is queued from now on. Any thread. */
void agpu_queue_close(agpu_queue_t *self);
bool agpu_queue_closed(agpu_queue_t *self);

/* Requests waiting for model_key. */
size_t agpu_queue_length(agpu_queue_t *self, const char *model_key);

#endif
