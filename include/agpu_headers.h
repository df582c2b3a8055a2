/* Which HTTP headers cross the proxy, in each direction (RFC 9110 section 7.6.1). */
#ifndef AGPU_HEADERS_H
#define AGPU_HEADERS_H

#include <stdbool.h>

/* Connection-level headers that never cross a proxy. */
bool agpu_headers_is_hop_by_hop(const char *name);

/* A client's request header that goes to the upstream. Not: hop-by-hop headers, Host (the
 * upstream gets its own, which a loopback-bound Ollama accepts), Content-Length and Expect
 * (the forwarder frames the body itself), Origin (agpu answers CORS itself, so an upstream
 * with other rules does not refuse what this node allowed). */
bool agpu_headers_forward_request(const char *name);

/* An upstream response header that goes to the client. Not: hop-by-hop headers,
 * Content-Length (set from the body we send), Date (the front door writes its own). */
bool agpu_headers_forward_response(const char *name);

#endif
