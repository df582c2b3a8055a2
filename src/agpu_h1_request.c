/* The request side of the forwarder's HTTP/1.1: the upstream URL split into what a socket
 * and a request head need, the head itself, and chunk framing. */
#include "agpu_h1.h"

#include "agpu_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A URL without a port: the host alone, on port 80. */
static int host_without_port(agpu_h1_url_t *out, const char *host, size_t host_len)
{
    if (host_len == 0 || host_len >= sizeof out->host)
        return -1;
    memcpy(out->host, host, host_len);
    out->host[host_len] = '\0';
    strcpy(out->port, "80");
    return 0;
}

int agpu_h1_parse_url(const char *url, agpu_h1_url_t *out)
{
    static const char scheme[] = "http://";
    if (strncasecmp(url, scheme, sizeof scheme - 1) != 0)
        return -1;
    const char *authority = url + sizeof scheme - 1;
    size_t authority_len = strcspn(authority, "/?#");
    if (authority_len == 0 || authority_len >= sizeof out->authority)
        return -1;
    memcpy(out->authority, authority, authority_len);
    out->authority[authority_len] = '\0';
    const char *end = authority + authority_len;
    out->target = *end == '#' ? "" : end;

    const char *a = out->authority;
    if (a[0] == '[') {
        const char *close = strchr(a, ']');
        if (!close)
            return -1;
        if (close[1] == '\0')
            return host_without_port(out, a + 1, (size_t)(close - a - 1));
    } else if (!strchr(a, ':')) {
        return host_without_port(out, a, authority_len);
    }
    /* HOST:PORT or [V6]:PORT, read as every endpoint agpu is given */
    uint16_t port;
    if (agpu_url_split_hostport(a, out->host, sizeof out->host, &port) != 0)
        return -1;
    snprintf(out->port, sizeof out->port, "%u", (unsigned)port);
    return 0;
}

char *agpu_h1_request_head(const char *method, const agpu_h1_url_t *url, const char *const *headers,
                           size_t header_count, int64_t body_length, size_t *len)
{
    const char *target = url->target;
    const char *slash = target[0] == '/' ? "" : "/"; /* "" or "?query" alone */
    size_t target_len = strcspn(target, "#");
    char framing[64] = "";
    if (body_length >= 0)
        snprintf(framing, sizeof framing, "Content-Length: %lld\r\n", (long long)body_length);
    else if (body_length == AGPU_H1_CHUNKED)
        snprintf(framing, sizeof framing, "Transfer-Encoding: chunked\r\n");

    size_t size = strlen(method) + 1 + strlen(slash) + target_len +
                  sizeof " HTTP/1.1\r\nHost: " + strlen(url->authority) + 2 + strlen(framing) + 2 +
                  1;
    for (size_t i = 0; i < header_count; i++)
        size += strlen(headers[i]) + 2;
    char *head = malloc(size);
    if (!head)
        return NULL;
    char *p = head;
    p += sprintf(p, "%s %s%.*s HTTP/1.1\r\nHost: %s\r\n", method, slash, (int)target_len, target,
                 url->authority);
    for (size_t i = 0; i < header_count; i++) {
        size_t n = strlen(headers[i]);
        memcpy(p, headers[i], n);
        memcpy(p + n, "\r\n", 2);
        p += n + 2;
    }
    p += sprintf(p, "%s\r\n", framing);
    *len = (size_t)(p - head);
    return head;
}

size_t agpu_h1_chunk_prefix(char *out, size_t len)
{
    if (len == 0)
        return (size_t)snprintf(out, AGPU_H1_CHUNK_PREFIX_MAX, "0\r\n\r\n");
    return (size_t)snprintf(out, AGPU_H1_CHUNK_PREFIX_MAX, "%zx\r\n", len);
}
