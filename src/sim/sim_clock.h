/* sim_clock: the one lock, the timer heap (one timerfd) and hang-up watches, on one thread. */
#ifndef SIM_CLOCK_H
#define SIM_CLOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define SIM_NS_PER_SEC 1000000000LL
#define SIM_NS_PER_MS 1000000LL

/* A timer lives inside the object it wakes (a request, a runner); it is armed and
 * cancelled with the lock held and fires on the clock thread, lock held. */
typedef struct sim_timer sim_timer_t;
typedef void (*sim_timer_fn)(sim_timer_t *timer);
struct sim_timer {
    int64_t due;     /* monotonic ns */
    size_t slot;     /* index in the heap + 1; 0 when not armed */
    sim_timer_fn fn; /* set once by the owner */
};

/* A watch notices that the peer of a socket went away (EPOLLRDHUP), while MHD is not
 * looking at that socket because the connection is suspended. */
typedef void (*sim_watch_fn)(void *arg);

int sim_clock_start(void);
void sim_clock_stop(void);

/* Everything shared between threads (scheduler, suspended requests, timers, watches)
 * is guarded by this single lock: critical sections are a few hundred nanoseconds. */
void sim_lock(void);
void sim_unlock(void);

static inline int64_t sim_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * SIM_NS_PER_SEC + ts.tv_nsec;
}

static inline void sim_wall(struct timespec *ts)
{
    clock_gettime(CLOCK_REALTIME, ts);
}

/* Lock held for all four. */
void sim_timer_arm(sim_timer_t *timer, int64_t due);
void sim_timer_cancel(sim_timer_t *timer);
int sim_watch_add(int fd, uint32_t *gen_out, sim_watch_fn fn, void *arg);
void sim_watch_del(int fd, uint32_t gen);

#endif
