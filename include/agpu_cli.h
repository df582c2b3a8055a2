/* The commands that talk to a running node: `agpu peers`. */
#ifndef AGPU_CLI_H
#define AGPU_CLI_H

/* `agpu peers [--json] [--watch] [--host URL]`; argv holds the arguments after "peers".
 * Returns the exit status. */
int agpu_cli_peers(int argc, char *argv[]);

#endif
