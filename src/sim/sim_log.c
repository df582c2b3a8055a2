/* sim_log: one-line messages on stderr, and the -v switch. */
#include "sim_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

bool sim_verbose;

static void vlog(const char *fmt, va_list ap)
{
    char line[1024];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "ollama-sim: %s\n", line);
}

void sim_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void sim_die(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
    exit(1);
}
