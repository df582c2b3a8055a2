/* Logging to stderr: one line per message, written with one call so threads never interleave. */
#include "agpu_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

static volatile agpu_log_level_t log_level = AGPU_LOG_INFO;
static const char *const level_names[] = {"error", "warn", "info", "debug"};

void agpu_log_set_level(agpu_log_level_t level)
{
    log_level = level;
}

int agpu_log_enabled(agpu_log_level_t level)
{
    return level <= log_level;
}

void agpu_log_write(agpu_log_level_t level, const char *func, const char *fmt, ...)
{
    if (!agpu_log_enabled(level))
        return;
    char line[1024];
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    int n = snprintf(line, sizeof line, "%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ %s %s: ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, now.tv_nsec / 1000000, level_names[level], func);
    va_list ap;
    va_start(ap, fmt);
    if (n > 0 && (size_t)n < sizeof line)
        n += vsnprintf(line + n, sizeof line - (size_t)n, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof line - 1)
        n = sizeof line - 2;
    line[n++] = '\n';
    ssize_t ignored = write(STDERR_FILENO, line, (size_t)n);
    (void)ignored;
}
