/* The request side of the forwarder's HTTP/1.1: the upstream URL split into what a socket
 * and a request head need, the head itself, and chunk framing. */
#include "agpu_h1.h"

#include "agpu_url.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Writes v in decimal at out (room for 20 digits); returns how many it wrote. */
static size_t put_decimal(char *out, uint64_t v)
{
    char digits[20];
    size_t n = 0;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (size_t i = 0; i < n; i++)
        out[i] = digits[n - 1 - i];
    return n;
}

/* Appends text (n bytes) at *p. */
static void put(char **p, const char *text, size_t n)
{
    memcpy(*p, text, n);
    *p += n;
}

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
    out->port[put_decimal(out->port, port)] = '\0';
    return 0;
}

char *agpu_h1_request_head(const char *method, const agpu_h1_url_t *url, const char *const *headers,
                           size_t header_count, int64_t body_length, size_t *len)
{
    static const char version[] = " HTTP/1.1\r\nHost: ", length[] = "Content-Length: ",
                      chunked[] = "Transfer-Encoding: chunked\r\n";
    const char *target = url->target;
    bool slash = target[0] != '/'; /* "" or "?query" alone */
    size_t target_len = strcspn(target, "#");
    size_t method_len = strlen(method), authority_len = strlen(url->authority);
    size_t size = method_len + 2 + target_len + sizeof version + authority_len + 2 +
                  sizeof length + 20 + sizeof chunked + 2;
    for (size_t i = 0; i < header_count; i++)
        size += strlen(headers[i]) + 2;
    char *head = malloc(size);
    if (!head)
        return NULL;
    char *p = head;
    put(&p, method, method_len);
    put(&p, " /", slash ? 2 : 1);
    put(&p, target, target_len);
    put(&p, version, sizeof version - 1);
    put(&p, url->authority, authority_len);
    put(&p, "\r\n", 2);
    for (size_t i = 0; i < header_count; i++) {
        put(&p, headers[i], strlen(headers[i]));
        put(&p, "\r\n", 2);
    }
    if (body_length >= 0) {
        put(&p, length, sizeof length - 1);
        p += put_decimal(p, (uint64_t)body_length);
        put(&p, "\r\n", 2);
    } else if (body_length == AGPU_H1_CHUNKED) {
        put(&p, chunked, sizeof chunked - 1);
    }
    put(&p, "\r\n", 2);
    *len = (size_t)(p - head);
    *p = '\0'; /* a string too, for whoever prints it */
    return head;
}

size_t agpu_h1_chunk_prefix(char *out, size_t len)
{
    if (len == 0)
        return (size_t)snprintf(out, AGPU_H1_CHUNK_PREFIX_MAX, "0\r\n\r\n");
    return (size_t)snprintf(out, AGPU_H1_CHUNK_PREFIX_MAX, "%zx\r\n", len);
}
