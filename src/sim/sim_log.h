/* sim_log: one-line messages on stderr, and the -v switch. */
#ifndef SIM_LOG_H
#define SIM_LOG_H

#include <stdbool.h>

extern bool sim_verbose;

void sim_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
_Noreturn void sim_die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
