/* Parsing the addresses agpu is given: HOST:PORT endpoints and Ollama base URLs. */
#ifndef AGPU_URL_H
#define AGPU_URL_H

#include <stddef.h>
#include <stdint.h>

/* Splits "HOST:PORT" or "[V6]:PORT" into host (brackets removed) and port (1..65535).
 * Returns 0, or -1 with nothing promised about the outputs. */
int agpu_url_split_hostport(const char *text, char *host, size_t host_size, uint16_t *port);

/* Turns an Ollama address into a base URL the way Ollama's own client reads OLLAMA_HOST:
 * the scheme defaults to http, the host to 127.0.0.1, the port to 11434 (80/443 when the
 * scheme is given); a path is kept. A wildcard host (0.0.0.0, ::) means this machine, so it
 * becomes the loopback address. Writes e.g. "http://127.0.0.1:11434" (no trailing slash).
 * Returns 0, or -1 if the text cannot be an address or does not fit. */
int agpu_url_ollama_base(const char *text, char *out, size_t out_size);

#endif
