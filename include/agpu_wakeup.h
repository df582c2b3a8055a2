/* An eventfd used as a wake-up: any thread signals it; the loop that watches it drains it. */
#ifndef AGPU_WAKEUP_H
#define AGPU_WAKEUP_H

#include <stdint.h>
#include <unistd.h>

static inline void agpu_wakeup_signal(int fd)
{
    uint64_t one = 1;
    ssize_t ignored = write(fd, &one, sizeof one); /* full: a wake-up is pending anyway */
    (void)ignored;
}

static inline void agpu_wakeup_drain(int fd)
{
    uint64_t count;
    ssize_t ignored = read(fd, &count, sizeof count); /* empty: nothing was signalled */
    (void)ignored;
}

#endif
