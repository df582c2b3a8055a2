/* sim_clock: the one lock, the timer heap (one timerfd) and hang-up watches, on one thread. */
#include "sim_clock.h"

#include "sim_log.h"

#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

/* epoll cookies: watches carry (generation << 32 | fd) with generation >= 1;
 * the timerfd and the quit eventfd carry generation 0. */
#define COOKIE(gen, fd) (((uint64_t)(gen) << 32) | (uint32_t)(fd))

typedef struct {
    uint32_t gen;
    bool active;
    sim_watch_fn fn;
    void *arg;
} watch_t;

static pthread_mutex_t big_lock = PTHREAD_MUTEX_INITIALIZER;
static sim_timer_t **heap;
static size_t heap_len, heap_cap;
static int64_t programmed_due = -1; /* what the timerfd is set to; -1 = disarmed */
static watch_t *watches;
static size_t watches_cap;
static uint32_t next_gen = 1;
static int epfd = -1, tfd = -1, quitfd = -1;
static pthread_t thread;
static bool thread_started;

void sim_lock(void)
{
    pthread_mutex_lock(&big_lock);
}

void sim_unlock(void)
{
    pthread_mutex_unlock(&big_lock);
}

/* ---- the heap, ordered by due time ---- */

static void heap_place(size_t i, sim_timer_t *t)
{
    heap[i] = t;
    t->slot = i + 1;
}

static void heap_up(size_t i)
{
    sim_timer_t *t = heap[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (heap[parent]->due <= t->due)
            break;
        heap_place(i, heap[parent]);
        i = parent;
    }
    heap_place(i, t);
}

static void heap_down(size_t i)
{
    sim_timer_t *t = heap[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= heap_len)
            break;
        if (child + 1 < heap_len && heap[child + 1]->due < heap[child]->due)
            child++;
        if (t->due <= heap[child]->due)
            break;
        heap_place(i, heap[child]);
        i = child;
    }
    heap_place(i, t);
}

static void heap_remove(sim_timer_t *t)
{
    size_t i = t->slot - 1;
    t->slot = 0;
    heap_len--;
    if (i == heap_len)
        return;
    sim_timer_t *moved = heap[heap_len];
    heap_place(i, moved);
    heap_down(i);
    heap_up(moved->slot - 1);
}

/* Keep the timerfd set to the earliest due time; only a change costs a syscall. */
static void program(void)
{
    int64_t due = heap_len ? heap[0]->due : -1;
    if (due == programmed_due)
        return;
    struct itimerspec its;
    memset(&its, 0, sizeof its);
    if (due >= 0) {
        if (due == 0)
            due = 1; /* a zero it_value would disarm */
        its.it_value.tv_sec = due / SIM_NS_PER_SEC;
        its.it_value.tv_nsec = due % SIM_NS_PER_SEC;
    }
    if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, NULL) != 0)
        sim_log("%s: timerfd_settime: %s", __func__, strerror(errno));
    programmed_due = due;
}

void sim_timer_arm(sim_timer_t *timer, int64_t due)
{
    if (timer->slot)
        heap_remove(timer);
    if (heap_len == heap_cap) {
        size_t cap = heap_cap ? heap_cap * 2 : 256;
        sim_timer_t **grown = realloc(heap, cap * sizeof *grown);
        if (!grown)
            sim_die("out of memory (timer heap)");
        heap = grown;
        heap_cap = cap;
    }
    timer->due = due;
    heap_place(heap_len++, timer);
    heap_up(heap_len - 1);
    program();
}

void sim_timer_cancel(sim_timer_t *timer)
{
    if (!timer->slot)
        return;
    heap_remove(timer);
    program();
}

/* ---- hang-up watches ---- */

int sim_watch_add(int fd, uint32_t *gen_out, sim_watch_fn fn, void *arg)
{
    if (fd < 0)
        return -1;
    if ((size_t)fd >= watches_cap) {
        size_t cap = watches_cap ? watches_cap : 1024;
        while (cap <= (size_t)fd)
            cap *= 2;
        watch_t *grown = realloc(watches, cap * sizeof *grown);
        if (!grown)
            return -1;
        memset(grown + watches_cap, 0, (cap - watches_cap) * sizeof *grown);
        watches = grown;
        watches_cap = cap;
    }
    uint32_t gen = next_gen++;
    if (next_gen == 0)
        next_gen = 1;
    struct epoll_event ev = {.events = EPOLLRDHUP, .data.u64 = COOKIE(gen, fd)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
        if (errno != EEXIST || epoll_ctl(epfd, EPOLL_CTL_MOD, fd, &ev) != 0)
            return -1;
    }
    watches[fd] = (watch_t){.gen = gen, .active = true, .fn = fn, .arg = arg};
    *gen_out = gen;
    return 0;
}

void sim_watch_del(int fd, uint32_t gen)
{
    if (fd < 0 || (size_t)fd >= watches_cap)
        return;
    watch_t *w = &watches[fd];
    if (!w->active || w->gen != gen)
        return;
    w->active = false;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
}

static void fire_watch(uint64_t cookie)
{
    int fd = (int)(uint32_t)cookie;
    uint32_t gen = (uint32_t)(cookie >> 32);
    if ((size_t)fd >= watches_cap)
        return;
    watch_t *w = &watches[fd];
    if (!w->active || w->gen != gen)
        return; /* the request finished between epoll_wait and the lock */
    w->active = false;
    epoll_ctl(epfd, EPOLL_CTL_DEL, fd, NULL);
    w->fn(w->arg);
}

static void *clock_main(void *arg)
{
    (void)arg;
    struct epoll_event events[64];
    for (;;) {
        int n = epoll_wait(epfd, events, 64, -1);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            sim_die("epoll_wait: %s", strerror(errno));
        }
        bool quit = false;
        sim_lock();
        for (int i = 0; i < n; i++) {
            uint64_t cookie = events[i].data.u64;
            if ((cookie >> 32) != 0) {
                fire_watch(cookie);
            } else if ((int)cookie == tfd) {
                uint64_t ticks;
                if (read(tfd, &ticks, sizeof ticks) < 0 && errno != EAGAIN)
                    sim_log("%s: timerfd read: %s", __func__, strerror(errno));
                programmed_due = -1; /* a fired timerfd is disarmed */
            } else {
                quit = true;
            }
        }
        int64_t now = sim_mono_ns();
        while (heap_len && heap[0]->due <= now) {
            sim_timer_t *t = heap[0];
            heap_remove(t);
            t->fn(t);
        }
        program();
        sim_unlock();
        if (quit)
            return NULL;
    }
}

int sim_clock_start(void)
{
    epfd = epoll_create1(EPOLL_CLOEXEC);
    tfd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
    quitfd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (epfd < 0 || tfd < 0 || quitfd < 0)
        goto fail;
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = COOKIE(0, tfd)};
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev) != 0)
        goto fail;
    ev.data.u64 = COOKIE(0, quitfd);
    if (epoll_ctl(epfd, EPOLL_CTL_ADD, quitfd, &ev) != 0)
        goto fail;
    if (pthread_create(&thread, NULL, clock_main, NULL) != 0)
        goto fail;
    thread_started = true;
    return 0;
fail:
    sim_log("%s: %s", __func__, strerror(errno));
    sim_clock_stop();
    return -1;
}

void sim_clock_stop(void)
{
    if (thread_started) {
        uint64_t one = 1;
        if (write(quitfd, &one, sizeof one) < 0)
            sim_log("%s: eventfd write: %s", __func__, strerror(errno));
        pthread_join(thread, NULL);
        thread_started = false;
    }
    if (epfd >= 0)
        close(epfd);
    if (tfd >= 0)
        close(tfd);
    if (quitfd >= 0)
        close(quitfd);
    epfd = tfd = quitfd = -1;
    free(heap);
    heap = NULL;
    heap_len = heap_cap = 0;
    free(watches);
    watches = NULL;
    watches_cap = 0;
}
