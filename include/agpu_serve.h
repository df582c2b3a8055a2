/* `agpu serve`: runs a node until SIGTERM or SIGINT. */
#ifndef AGPU_SERVE_H
#define AGPU_SERVE_H

#include "agpu_config.h"

/* Returns the process exit status. */
int agpu_serve(const agpu_config_t *config);

#endif
