/* Browser-facing policy, as Ollama applies it (gin-contrib/cors with Ollama's origin list,
 * then its allowed-hosts check for loopback-bound servers). */
#include "agpu_cors.h"

#include "agpu_limits.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

/* Every entry --origins can hold ("a,b,..." in AGPU_URL_MAX bytes) plus Ollama's 17 defaults. */
#define CORS_MAX_ORIGINS (AGPU_URL_MAX / 2 + 17)
#define CORS_ORIGIN_MAX 256

struct agpu_cors {
    char origins[CORS_MAX_ORIGINS][CORS_ORIGIN_MAX];
    size_t count;
    bool loopback_only;
    char hostname[256];
};

static void add_origin(agpu_cors_t *self, const char *text, size_t len)
{
    while (len && isspace((unsigned char)*text)) {
        text++;
        len--;
    }
    while (len && isspace((unsigned char)text[len - 1]))
        len--;
    if (len == 0 || len >= CORS_ORIGIN_MAX || self->count == CORS_MAX_ORIGINS)
        return;
    memcpy(self->origins[self->count], text, len);
    self->origins[self->count][len] = '\0';
    self->count++;
}

agpu_cors_t *agpu_cors_new(const char *extra_origins, bool loopback_only)
{
    agpu_cors_t *self = calloc(1, sizeof *self);
    if (!self)
        return NULL;
    self->loopback_only = loopback_only;
    if (gethostname(self->hostname, sizeof self->hostname - 1) != 0)
        self->hostname[0] = '\0';
    for (const char *p = extra_origins; p && *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        add_origin(self, p, len);
        p = comma ? comma + 1 : p + len;
    }
    static const char *const local_hosts[] = {"localhost", "127.0.0.1", "0.0.0.0"};
    char origin[CORS_ORIGIN_MAX];
    for (size_t i = 0; i < 3; i++) {
        static const char *const forms[] = {"http://%s", "https://%s", "http://%s:*",
                                            "https://%s:*"};
        for (size_t f = 0; f < 4; f++) {
            int n = snprintf(origin, sizeof origin, forms[f], local_hosts[i]);
            add_origin(self, origin, (size_t)n);
        }
    }
    static const char *const schemes[] = {"app://*", "file://*", "tauri://*", "vscode-webview://*",
                                          "vscode-file://*"};
    for (size_t i = 0; i < 5; i++)
        add_origin(self, schemes[i], strlen(schemes[i]));
    return self;
}

void agpu_cors_destroy(agpu_cors_t **self_p)
{
    if (*self_p) {
        free(*self_p);
        *self_p = NULL;
    }
}

/* One `*` in a rule matches any run of characters, as gin-contrib/cors's wildcard rules do. */
static bool origin_matches(const char *rule, const char *origin)
{
    const char *star = strchr(rule, '*');
    if (!star)
        return strcmp(rule, origin) == 0;
    size_t prefix = (size_t)(star - rule), suffix = strlen(star + 1), len = strlen(origin);
    return len >= prefix + suffix && strncmp(origin, rule, prefix) == 0 &&
           strcmp(origin + len - suffix, star + 1) == 0;
}

static bool origin_allowed(const agpu_cors_t *self, const char *origin)
{
    for (size_t i = 0; i < self->count; i++)
        if (origin_matches(self->origins[i], origin))
            return true;
    return false;
}

/* Ollama's allowedHost: a local name, this machine's name, or a local-only top-level domain. */
static bool host_name_allowed(const agpu_cors_t *self, const char *host)
{
    if (host[0] == '\0' || strcasecmp(host, "localhost") == 0)
        return true;
    if (self->hostname[0] && strcasecmp(host, self->hostname) == 0)
        return true;
    static const char *const tlds[] = {".localhost", ".local", ".internal"};
    size_t len = strlen(host);
    for (size_t i = 0; i < 3; i++) {
        size_t tl = strlen(tlds[i]);
        if (len > tl && strcasecmp(host + len - tl, tlds[i]) == 0)
            return true;
    }
    return false;
}

static bool ipv4_is_local(const struct in_addr *a)
{
    uint32_t ip = ntohl(a->s_addr);
    return (ip >> 24) == 127 || (ip >> 24) == 10 || (ip >> 20) == 0xAC1 /* 172.16/12 */ ||
           (ip >> 16) == 0xC0A8 /* 192.168/16 */ || ip == 0;
}

static bool ipv6_is_local(const struct in6_addr *a)
{
    static const struct in6_addr any = IN6ADDR_ANY_INIT;
    return IN6_IS_ADDR_LOOPBACK(a) || memcmp(a, &any, sizeof any) == 0 ||
           (a->s6_addr[0] & 0xfe) == 0xfc /* fc00::/7 */;
}

/* The Host header of a request to a loopback-bound node must name this machine. */
static bool host_header_allowed(const agpu_cors_t *self, const char *host_header)
{
    char host[256];
    size_t len = strlen(host_header);
    if (len >= sizeof host)
        return false;
    memcpy(host, host_header, len + 1);
    if (host[0] == '[') {
        char *end = strchr(host, ']');
        if (!end)
            return false;
        *end = '\0';
        memmove(host, host + 1, strlen(host + 1) + 1);
    } else {
        char *colon = strchr(host, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0';
    }
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1)
        return ipv4_is_local(&v4);
    if (inet_pton(AF_INET6, host, &v6) == 1)
        return ipv6_is_local(&v6);
    return host_name_allowed(self, host);
}

agpu_cors_verdict_t agpu_cors_check(const agpu_cors_t *self, const char *method,
                                    const char *origin, const char *host)
{
    agpu_cors_verdict_t verdict = AGPU_CORS_PASS;
    if (origin && origin[0]) {
        char same[CORS_ORIGIN_MAX + 16];
        bool same_origin = false;
        if (host) {
            snprintf(same, sizeof same, "http://%s", host);
            same_origin = strcmp(origin, same) == 0;
            snprintf(same, sizeof same, "https://%s", host);
            same_origin = same_origin || strcmp(origin, same) == 0;
        }
        if (!same_origin) {
            if (!origin_allowed(self, origin))
                return AGPU_CORS_FORBID;
            verdict = strcmp(method, "OPTIONS") == 0 ? AGPU_CORS_PREFLIGHT : AGPU_CORS_ALLOW;
        }
    }
    if (self->loopback_only && !host_header_allowed(self, host ? host : ""))
        return AGPU_CORS_FORBID;
    return verdict;
}

const char *agpu_cors_allow_headers(void)
{
    return "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,OpenAI-Beta,"
           "x-stainless-arch,x-stainless-async,x-stainless-custom-poll-interval,"
           "x-stainless-helper-method,x-stainless-lang,x-stainless-os,"
           "x-stainless-package-version,x-stainless-poll-helper,x-stainless-retry-count,"
           "x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout";
}
