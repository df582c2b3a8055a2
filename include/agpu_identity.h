/* Who this node is to the mesh: its stable id and the address peers reach it on. */
#ifndef AGPU_IDENTITY_H
#define AGPU_IDENTITY_H

#include <stddef.h>
#include <stdint.h>

#define AGPU_ID_LEN 32

/* A stable id: the same machine, name and port give the same id across restarts (a restart
 * is told apart by its incarnation), two nodes on one machine get different ones. */
void agpu_identity_id(const char *name, uint16_t port, char out[AGPU_ID_LEN + 1]);

/* The address to advertise: advertise if given, else the listen host unless it is a
 * wildcard, else this host's first non-loopback IPv4 address (127.0.0.1 if it has none). */
int agpu_identity_address(const char *listen_host, const char *advertise, char *out,
                          size_t out_size);

#endif
