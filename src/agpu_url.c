/* Parsing HOST:PORT endpoints and Ollama base URLs (OLLAMA_HOST's rules). */
#include "agpu_url.h"

#include "agpu_text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int parse_port(const char *text, size_t len, uint16_t *port)
{
    if (len == 0 || len > 5)
        return -1;
    unsigned long value = 0;
    for (size_t i = 0; i < len; i++) {
        if (!isdigit((unsigned char)text[i]))
            return -1;
        value = value * 10 + (unsigned long)(text[i] - '0');
    }
    if (value == 0 || value > 65535)
        return -1;
    *port = (uint16_t)value;
    return 0;
}

static int copy_span(char *out, size_t out_size, const char *text, size_t len)
{
    if (len >= out_size)
        return -1;
    memcpy(out, text, len);
    out[len] = '\0';
    return 0;
}

static int host_is_valid(const char *host, size_t len)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)host[i];
        if (!isalnum(c) && c != '.' && c != '-' && c != '_' && c != ':' && c != '%')
            return 0;
    }
    return 1;
}

int agpu_url_split_hostport(const char *text, char *host, size_t host_size, uint16_t *port)
{
    const char *host_start = text, *host_end, *colon;
    if (text[0] == '[') {
        host_start = text + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':')
            return -1;
        colon = host_end + 1;
    } else {
        colon = strrchr(text, ':');
        if (!colon || memchr(text, ':', (size_t)(colon - text)))
            return -1; /* no port, or an IPv6 address without brackets */
        host_end = colon;
    }
    size_t host_len = (size_t)(host_end - host_start);
    if (!host_is_valid(host_start, host_len) || copy_span(host, host_size, host_start, host_len))
        return -1;
    return parse_port(colon + 1, strlen(colon + 1), port);
}

/* A wildcard listen address means "every local address": a client reaches it on loopback. */
static const char *client_host(const char *host)
{
    if (strcmp(host, "0.0.0.0") == 0)
        return "127.0.0.1";
    if (strcmp(host, "::") == 0)
        return "::1";
    return host;
}

int agpu_url_ollama_base(const char *text, char *out, size_t out_size)
{
    char scheme[8] = "http", host[256] = "127.0.0.1", path[256] = "";
    const char *default_port = "11434";
    while (isspace((unsigned char)*text))
        text++;
    size_t len = strlen(text);
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (len >= 2 && (text[0] == '"' || text[0] == '\'') && text[len - 1] == text[0]) {
        text++; /* Ollama strips one pair of quotes from its variables, then spaces again */
        len -= 2;
        while (len && isspace((unsigned char)*text)) {
            text++;
            len--;
        }
        while (len && isspace((unsigned char)text[len - 1]))
            len--;
    }
    char buf[1024];
    if (copy_span(buf, sizeof buf, text, len))
        return -1;
    char *hostport = buf, *sep = strstr(buf, "://");
    if (sep) {
        *sep = '\0';
        if (strcmp(buf, "http") == 0)
            default_port = "80";
        else if (strcmp(buf, "https") == 0)
            default_port = "443";
        else
            return -1; /* Ollama would accept it, but no HTTP client can use it */
        memcpy(scheme, buf, strlen(buf) + 1);
        hostport = sep + 3;
    }
    char *slash = strchr(hostport, '/');
    if (slash) {
        *slash = '\0';
        size_t plen = strlen(slash + 1);
        while (plen && slash[plen] == '/')
            slash[plen--] = '\0'; /* no trailing slash: routes are appended */
        if (plen && (copy_span(path, sizeof path - 1, slash + 1, plen)))
            return -1;
    }
    uint16_t port_num;
    char port[8];
    if (agpu_url_split_hostport(hostport, host, sizeof host, &port_num) == 0 ||
        (hostport[0] == ':' && parse_port(hostport + 1, strlen(hostport + 1), &port_num) == 0)) {
        snprintf(port, sizeof port, "%u", (unsigned)port_num); /* ":PORT" keeps host 127.0.0.1 */
    } else {
        /* no usable port: a bare host (or bracketed IPv6), with the scheme's default port */
        size_t hlen = strlen(hostport);
        if (hlen >= 2 && hostport[0] == '[' && hostport[hlen - 1] == ']') {
            hostport[hlen - 1] = '\0';
            hostport++;
            hlen -= 2;
        }
        if (strchr(hostport, ':') && !strchr(strchr(hostport, ':') + 1, ':'))
            return -1; /* "host:junk": a port that is not one */
        if (hlen && (!host_is_valid(hostport, hlen) || copy_span(host, sizeof host, hostport, hlen)))
            return -1;
        agpu_text_copy(port, sizeof port, default_port);
    }
    const char *h = client_host(host);
    int v6 = strchr(h, ':') != NULL;
    int n = snprintf(out, out_size, "%s://%s%s%s:%s%s%s", scheme, v6 ? "[" : "", h, v6 ? "]" : "",
                     port, path[0] ? "/" : "", path);
    return n < 0 || (size_t)n >= out_size ? -1 : 0;
}
