/* The commands that talk to a running node: `agpu peers`, `agpu route`, `agpu drain` and
 * `agpu undrain`. Each takes the arguments after its own name and returns the exit status:
 * 0, 1 when the node cannot be reached or answers an error, 2 for a bad option. */
#ifndef AGPU_CLI_H
#define AGPU_CLI_H

/* `agpu peers [--json] [--watch] [--host URL]`: the mesh as one node sees it. */
int agpu_cli_peers(int argc, char *argv[]);

/* `agpu route MODEL [--json] [--host URL]`: where that node would send a request for MODEL
 * now, and why (GET /agpu/v1/route?model=MODEL). */
int agpu_cli_route(int argc, char *argv[]);

/* `agpu drain [--host URL]`: the node takes no new work and finishes what it has
 * (POST /agpu/v1/drain). */
int agpu_cli_drain(int argc, char *argv[]);

/* `agpu undrain [--host URL]`: the node takes work again (POST /agpu/v1/undrain). */
int agpu_cli_undrain(int argc, char *argv[]);

#endif
