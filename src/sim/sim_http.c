/* sim_http: the libmicrohttpd front: routing, 404/405, CORS and Host checks, waits, streams. */
#include "sim_http.h"

#include "sim_config.h"
#include "sim_log.h"
#include "sim_routes.h"
#include "sim_sched.h"

#include <arpa/inet.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Per-connection memory MHD may use for headers and the write buffer of a stream. */
#define CONN_MEMORY (32 * 1024)
#define LISTEN_BACKLOG 4096
#define ORIGINS_MAX 64

typedef struct sim_route {
    const char *path; /* a trailing ":" segment marks a path parameter */
    unsigned methods;
    sim_handler_fn handler;
} sim_route_t;

static enum MHD_Result route_stats(sim_req_t *req);

/* Ollama's routes (server/routes.go GenerateRoutes), plus /sim/stats. */
static const sim_route_t ROUTES[] = {
    {"/", SIM_M_GET | SIM_M_HEAD, sim_route_root},
    {"/api/version", SIM_M_GET | SIM_M_HEAD, sim_route_version},
    {"/api/tags", SIM_M_GET | SIM_M_HEAD, sim_route_tags},
    {"/api/ps", SIM_M_GET, sim_route_ps},
    {"/api/show", SIM_M_POST, sim_route_show},
    {"/api/generate", SIM_M_POST, sim_route_generate},
    {"/api/chat", SIM_M_POST, sim_route_chat},
    {"/api/embed", SIM_M_POST, sim_route_embed},
    {"/api/embeddings", SIM_M_POST, sim_route_embeddings},
    {"/api/pull", SIM_M_POST, sim_route_pull},
    {"/api/push", SIM_M_POST, sim_route_push},
    {"/api/create", SIM_M_POST, sim_route_create},
    {"/api/copy", SIM_M_POST, sim_route_copy},
    {"/api/delete", SIM_M_DELETE, sim_route_delete},
    {"/api/blobs/:", SIM_M_HEAD | SIM_M_POST, sim_route_blob},
    {"/v1/chat/completions", SIM_M_POST, sim_route_oai_chat},
    {"/v1/completions", SIM_M_POST, sim_route_oai_completions},
    {"/v1/embeddings", SIM_M_POST, sim_route_oai_embeddings},
    {"/v1/models", SIM_M_GET, sim_route_oai_models},
    {"/v1/models/:", SIM_M_GET, sim_route_oai_model},
    {"/sim/stats", SIM_M_GET, route_stats},
};
#define NROUTES (sizeof ROUTES / sizeof ROUTES[0])

static struct MHD_Daemon *daemon_;
static int bound_port;
static bool listen_loopback;
static char hostname[256];
static char origins[ORIGINS_MAX][256];
static int norigins;
static sim_req_t *suspended_head; /* lock held */
static bool shutting_down;        /* lock held */

/* ---- routing ---- */

static const sim_route_t *match(const char *url, char **param)
{
    *param = NULL;
    for (size_t i = 0; i < NROUTES; i++) {
        const char *p = ROUTES[i].path;
        size_t plen = strlen(p);
        if (p[plen - 1] != ':') {
            if (strcmp(url, p) == 0)
                return &ROUTES[i];
            continue;
        }
        plen--;
        if (strncmp(url, p, plen) != 0 || url[plen] == '\0' || strchr(url + plen, '/'))
            continue;
        *param = strdup(url + plen);
        return &ROUTES[i];
    }
    return NULL;
}

static unsigned method_bit(const char *m)
{
    if (strcmp(m, "GET") == 0)
        return SIM_M_GET;
    if (strcmp(m, "HEAD") == 0)
        return SIM_M_HEAD;
    if (strcmp(m, "POST") == 0)
        return SIM_M_POST;
    if (strcmp(m, "DELETE") == 0)
        return SIM_M_DELETE;
    if (strcmp(m, "OPTIONS") == 0)
        return SIM_M_OPTIONS;
    return SIM_M_OTHER;
}

/* ---- Ollama's browser policy: gin-contrib/cors with its origin list, then allowed hosts ---- */

static void origins_init(void)
{
    norigins = 0;
    const char *env = getenv("OLLAMA_ORIGINS");
    for (const char *p = env; p && *p;) {
        size_t len = strcspn(p, ",");
        while (len && (*p == ' ' || *p == '\t')) {
            p++;
            len--;
        }
        size_t end = len;
        while (end && (p[end - 1] == ' ' || p[end - 1] == '\t'))
            end--;
        if (end && end < sizeof origins[0] && norigins < ORIGINS_MAX)
            snprintf(origins[norigins++], sizeof origins[0], "%.*s", (int)end, p);
        p += len;
        if (*p == ',')
            p++;
    }
    static const char *const hosts[] = {"localhost", "127.0.0.1", "0.0.0.0"};
    static const char *const forms[] = {"http://%s", "https://%s", "http://%s:*", "https://%s:*"};
    for (size_t h = 0; h < 3; h++)
        for (size_t f = 0; f < 4; f++)
            snprintf(origins[norigins++], sizeof origins[0], forms[f], hosts[h]);
    static const char *const schemes[] = {"app://*", "file://*", "tauri://*", "vscode-webview://*",
                                          "vscode-file://*"};
    for (size_t s = 0; s < 5; s++)
        snprintf(origins[norigins++], sizeof origins[0], "%s", schemes[s]);
}

static bool origin_allowed(const char *origin)
{
    size_t olen = strlen(origin);
    for (int i = 0; i < norigins; i++) {
        const char *rule = origins[i];
        const char *star = strchr(rule, '*');
        if (!star) {
            if (strcmp(rule, origin) == 0)
                return true;
            continue;
        }
        size_t pre = (size_t)(star - rule), post = strlen(star + 1);
        if (olen >= pre + post && strncmp(origin, rule, pre) == 0 &&
            strcmp(origin + olen - post, star + 1) == 0)
            return true;
    }
    return false;
}

static bool ip_local(const char *host)
{
    struct in_addr v4;
    struct in6_addr v6;
    if (inet_pton(AF_INET, host, &v4) == 1) {
        uint32_t ip = ntohl(v4.s_addr);
        return (ip >> 24) == 127 || (ip >> 24) == 10 || (ip >> 20) == 0xAC1 ||
               (ip >> 16) == 0xC0A8 || ip == 0;
    }
    if (inet_pton(AF_INET6, host, &v6) == 1) {
        static const struct in6_addr any = IN6ADDR_ANY_INIT;
        return IN6_IS_ADDR_LOOPBACK(&v6) || memcmp(&v6, &any, sizeof any) == 0 ||
               (v6.s6_addr[0] & 0xfe) == 0xfc;
    }
    return false;
}

/* 0: allowed; 1: an IP literal that is not local; -1: a name to check. */
static int host_kind(const char *header, char *host, size_t size)
{
    snprintf(host, size, "%s", header ? header : "");
    if (host[0] == '[') {
        char *end = strchr(host, ']');
        if (end) {
            *end = '\0';
            memmove(host, host + 1, strlen(host + 1) + 1);
        }
    } else {
        char *colon = strchr(host, ':');
        if (colon && !strchr(colon + 1, ':'))
            *colon = '\0';
    }
    struct in6_addr any6;
    if (inet_pton(AF_INET, host, &any6) == 1 || inet_pton(AF_INET6, host, &any6) == 1)
        return ip_local(host) ? 0 : 1;
    return -1;
}

static bool name_allowed(const char *host)
{
    if (!host[0] || strcasecmp(host, "localhost") == 0 || strcasecmp(host, hostname) == 0)
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

/* Sets req->origin (to echo) or req->early_status (403, or 204 for a preflight). */
static void browser_policy(sim_req_t *req)
{
    const char *origin = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Origin");
    const char *host_header = MHD_lookup_connection_value(req->conn, MHD_HEADER_KIND, "Host");
    if (origin && *origin) {
        char same[300];
        bool same_origin = false;
        if (host_header) {
            snprintf(same, sizeof same, "http://%s", host_header);
            same_origin = strcmp(origin, same) == 0;
            snprintf(same, sizeof same, "https://%s", host_header);
            same_origin = same_origin || strcmp(origin, same) == 0;
        }
        if (!same_origin) {
            if (!origin_allowed(origin)) {
                req->early_status = MHD_HTTP_FORBIDDEN;
                return;
            }
            req->origin = origin;
            if (req->method == SIM_M_OPTIONS) {
                req->early_status = MHD_HTTP_NO_CONTENT;
                return;
            }
        }
    }
    if (!listen_loopback)
        return;
    char host[300];
    int kind = host_kind(host_header, host, sizeof host);
    if (kind == 1) {
        req->early_status = MHD_HTTP_FORBIDDEN;
    } else if (kind == -1) {
        if (!name_allowed(host))
            req->early_status = MHD_HTTP_FORBIDDEN;
        else if (req->method == SIM_M_OPTIONS)
            req->early_status = MHD_HTTP_NO_CONTENT;
    }
}

/* ---- replies ---- */

static void add_common_headers(sim_req_t *req, struct MHD_Response *resp)
{
    if (req->origin) {
        MHD_add_response_header(resp, "Access-Control-Allow-Origin", req->origin);
        MHD_add_response_header(resp, "Vary", "Origin");
    }
}

static enum MHD_Result queue(sim_req_t *req, unsigned status, struct MHD_Response *resp)
{
    if (!resp)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(req->conn, status, resp);
    req->answered = true;
    req->status = status;
    return ok;
}

enum MHD_Result sim_reply(sim_req_t *req, unsigned status, const char *ctype, sim_buf_t *body)
{
    struct MHD_Response *resp;
    if (body && body->len) {
        resp = MHD_create_response_from_buffer(body->len, body->data, MHD_RESPMEM_MUST_FREE);
        if (resp)
            body->data = NULL;
        sim_buf_free(body);
    } else {
        if (body)
            sim_buf_free(body);
        resp = MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
    }
    if (!resp)
        return MHD_NO;
    if (ctype)
        MHD_add_response_header(resp, "Content-Type", ctype);
    add_common_headers(req, resp);
    enum MHD_Result ok = queue(req, status, resp);
    MHD_destroy_response(resp);
    return ok;
}

enum MHD_Result sim_reply_text(sim_req_t *req, unsigned status, const char *ctype, const char *text)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, text);
    return sim_reply(req, status, ctype, &b);
}

static enum MHD_Result reply_error_typed(sim_req_t *req, unsigned status, const char *msg,
                                         const char *ctype)
{
    sim_buf_t b = {0};
    sim_buf_str(&b, "{\"error\":");
    sim_buf_jcstr(&b, msg);
    sim_buf_str(&b, "}");
    return sim_reply(req, status, ctype, &b);
}

enum MHD_Result sim_reply_error(sim_req_t *req, unsigned status, const char *msg)
{
    return reply_error_typed(req, status, msg, "application/json; charset=utf-8");
}

enum MHD_Result sim_reply_error_plain(sim_req_t *req, unsigned status, const char *msg)
{
    return reply_error_typed(req, status, msg, "application/json");
}

/* MHD asks for stream bytes: hand out what is buffered, pump what is due, else sleep
 * until the next line is due. */
static ssize_t stream_reader(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    sim_req_t *req = cls;
    for (;;) {
        if (req->out_off < req->out.len) {
            size_t n = req->out.len - req->out_off;
            if (n > max)
                n = max;
            memcpy(buf, req->out.data + req->out_off, n);
            req->out_off += n;
            if (req->out_off == req->out.len)
                req->out.len = req->out_off = 0;
            return (ssize_t)n;
        }
        if (req->stream_end)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (sim_req_canceled(req))
            return MHD_CONTENT_READER_END_WITH_ERROR;
        int64_t next = req->pump(req, sim_mono_ns(), &req->out);
        if (next == 0)
            req->stream_end = true;
        if (req->out.len || req->stream_end)
            continue;
        sim_lock();
        if (sim_req_canceled(req) || shutting_down) {
            sim_unlock();
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        sim_req_wake_at(req, next);
        sim_req_suspend(req);
        sim_unlock();
        return 0;
    }
}

enum MHD_Result sim_reply_stream(sim_req_t *req, const char *ctype, sim_pump_fn pump)
{
    req->pump = pump;
    struct MHD_Response *resp =
        MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 16 * 1024, stream_reader, req, NULL);
    if (!resp)
        return MHD_NO;
    MHD_add_response_header(resp, "Content-Type", ctype);
    add_common_headers(req, resp);
    enum MHD_Result ok = queue(req, MHD_HTTP_OK, resp);
    MHD_destroy_response(resp);
    return ok;
}

/* ---- waits ---- */

static void watch_fired(void *arg)
{
    sim_req_t *req = arg;
    req->watching = false;
    atomic_store(&req->canceled, true);
    if (req->job_cancel)
        req->job_cancel(req);
    sim_req_wake(req);
}

static void timer_fired(sim_timer_t *t)
{
    sim_req_wake((sim_req_t *)((char *)t - offsetof(sim_req_t, timer)));
}

void sim_req_suspend(sim_req_t *req)
{
    if (req->suspended)
        return;
    if (shutting_down) {
        atomic_store(&req->canceled, true); /* its next callback ends it */
        return;
    }
    if (!req->watching) {
        const union MHD_ConnectionInfo *info =
            MHD_get_connection_info(req->conn, MHD_CONNECTION_INFO_CONNECTION_FD);
        if (info && sim_watch_add(info->connect_fd, &req->watch_gen, watch_fired, req) == 0) {
            req->watch_fd = info->connect_fd;
            req->watching = true;
        }
    }
    req->suspended = true;
    req->susp_prev = NULL;
    req->susp_next = suspended_head;
    if (suspended_head)
        suspended_head->susp_prev = req;
    suspended_head = req;
    MHD_suspend_connection(req->conn);
}

void sim_req_wake(sim_req_t *req)
{
    if (!req->suspended)
        return;
    req->suspended = false;
    if (req->susp_prev)
        req->susp_prev->susp_next = req->susp_next;
    else
        suspended_head = req->susp_next;
    if (req->susp_next)
        req->susp_next->susp_prev = req->susp_prev;
    MHD_resume_connection(req->conn);
}

void sim_req_wake_at(sim_req_t *req, int64_t due)
{
    req->timer.fn = timer_fired;
    sim_timer_arm(&req->timer, due);
}

/* ---- a request's life ---- */

static enum MHD_Result route_stats(sim_req_t *req)
{
    sim_buf_t b = {0};
    sim_sched_stats_json(&b);
    return sim_reply(req, MHD_HTTP_OK, "application/json; charset=utf-8", &b);
}

static enum MHD_Result answer_early(sim_req_t *req)
{
    switch (req->early_status) {
    case MHD_HTTP_NO_CONTENT: {
        struct MHD_Response *resp =
            MHD_create_response_from_buffer(0, NULL, MHD_RESPMEM_PERSISTENT);
        if (!resp)
            return MHD_NO;
        add_common_headers(req, resp);
        if (req->origin) {
            MHD_add_response_header(resp, "Access-Control-Allow-Methods",
                                    "GET,POST,PUT,PATCH,DELETE,HEAD,OPTIONS");
            MHD_add_response_header(
                resp, "Access-Control-Allow-Headers",
                "Authorization,Content-Type,User-Agent,Accept,X-Requested-With,OpenAI-Beta,"
                "x-stainless-arch,x-stainless-async,x-stainless-custom-poll-interval,"
                "x-stainless-helper-method,x-stainless-lang,x-stainless-os,"
                "x-stainless-package-version,x-stainless-poll-helper,x-stainless-retry-count,"
                "x-stainless-runtime,x-stainless-runtime-version,x-stainless-timeout");
            MHD_add_response_header(resp, "Access-Control-Max-Age", "43200");
        }
        enum MHD_Result ok = queue(req, MHD_HTTP_NO_CONTENT, resp);
        MHD_destroy_response(resp);
        return ok;
    }
    case MHD_HTTP_FORBIDDEN:
        return sim_reply(req, MHD_HTTP_FORBIDDEN, NULL, NULL);
    case MHD_HTTP_NOT_FOUND:
        return sim_reply_text(req, MHD_HTTP_NOT_FOUND, "text/plain", "404 page not found");
    default:
        return sim_reply_text(req, MHD_HTTP_METHOD_NOT_ALLOWED, "text/plain",
                              "405 method not allowed");
    }
}

static sim_req_t *req_new(struct MHD_Connection *conn, const char *url, const char *method)
{
    sim_req_t *req = calloc(1, sizeof *req);
    if (!req)
        return NULL;
    req->conn = conn;
    req->t_start = sim_mono_ns();
    req->watch_fd = -1;
    atomic_init(&req->canceled, false);
    req->method = method_bit(method);
    req->route = match(url, &req->param);
    if (req->route && req->route->path[strlen(req->route->path) - 1] == ':' && !req->param) {
        free(req);
        return NULL; /* out of memory */
    }
    if (!req->route || strcmp(req->route->path, "/sim/stats") != 0)
        sim_sched_count_request();
    browser_policy(req);
    if (!req->early_status) {
        if (!req->route) {
            req->early_status = MHD_HTTP_NOT_FOUND;
        } else if (!(req->route->methods & req->method)) {
            /* gin answers 405 when another method has this path */
            req->early_status = MHD_HTTP_METHOD_NOT_ALLOWED;
        }
    }
    if (!req->early_status && req->route->handler == sim_route_blob && req->method == SIM_M_POST) {
        req->blob_hash = true;
        crypto_hash_sha256_init(&req->sha);
    }
    return req;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **con_cls)
{
    (void)cls;
    (void)version;
    sim_req_t *req = *con_cls;
    if (!req) {
        req = req_new(conn, url, method);
        if (!req)
            return MHD_NO;
        *con_cls = req;
        return MHD_YES;
    }
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (req->early_status)
            return MHD_YES; /* drained, then answered */
        if (req->blob_hash) {
            crypto_hash_sha256_update(&req->sha, (const unsigned char *)upload_data, n);
            req->blob_bytes += (int64_t)n;
        } else if (req->body.len + n > SIM_MAX_BODY) {
            req->body_too_large = true;
        } else if (!req->body_too_large) {
            sim_buf_add(&req->body, upload_data, n);
        }
        return MHD_YES;
    }
    if (sim_req_canceled(req))
        return MHD_NO;
    if (req->answered)
        return MHD_YES;
    if (!req->dispatched) {
        req->dispatched = true;
        if (req->early_status)
            return answer_early(req);
        if (req->body_too_large)
            return sim_reply_error(req, MHD_HTTP_BAD_REQUEST, "http: request body too large");
    }
    return req->route->handler(req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    (void)cls;
    (void)conn;
    sim_req_t *req = *con_cls;
    if (!req)
        return;
    *con_cls = NULL;
    sim_lock();
    if (req->watching)
        sim_watch_del(req->watch_fd, req->watch_gen);
    sim_timer_cancel(&req->timer);
    if (toe != MHD_REQUEST_TERMINATED_COMPLETED_OK)
        atomic_store(&req->canceled, true);
    if (req->job_cancel)
        req->job_cancel(req); /* a no-op once the job has finished */
    sim_unlock();
    if (sim_cfg.verbose) {
        const sim_route_t *r = req->route;
        sim_log("%s %s%s%s %u %.3fms%s",
                req->method == SIM_M_GET      ? "GET"
                : req->method == SIM_M_POST   ? "POST"
                : req->method == SIM_M_HEAD   ? "HEAD"
                : req->method == SIM_M_DELETE ? "DELETE"
                                              : "OTHER",
                r ? r->path : "?", req->param ? " " : "", req->param ? req->param : "", req->status,
                (double)(sim_mono_ns() - req->t_start) / 1e6,
                toe == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (client gone)");
    }
    if (req->job_free)
        req->job_free(req);
    sim_buf_free(&req->body);
    sim_buf_free(&req->out);
    free(req->param);
    free(req);
}

/* ---- the daemon ---- */

int sim_http_start(void)
{
    origins_init();
    if (gethostname(hostname, sizeof hostname - 1) != 0)
        hostname[0] = '\0';

    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *ai = NULL;
    char port[16];
    snprintf(port, sizeof port, "%d", sim_cfg.listen_port);
    int rc = getaddrinfo(sim_cfg.listen_host, port, &hints, &ai);
    if (rc != 0) {
        sim_log("cannot resolve %s: %s", sim_cfg.listen_host, gai_strerror(rc));
        return -1;
    }
    struct sockaddr_storage addr;
    memcpy(&addr, ai->ai_addr, ai->ai_addrlen);
    bool v6 = ai->ai_family == AF_INET6;
    freeaddrinfo(ai);
    if (v6) {
        struct in6_addr *a = &((struct sockaddr_in6 *)&addr)->sin6_addr;
        listen_loopback = IN6_IS_ADDR_LOOPBACK(a);
    } else {
        uint32_t ip = ntohl(((struct sockaddr_in *)&addr)->sin_addr.s_addr);
        listen_loopback = (ip >> 24) == 127;
    }

    /* thousands of parked streams need thousands of descriptors */
    struct rlimit rl;
    unsigned limit = 1000;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        getrlimit(RLIMIT_NOFILE, &rl);
        limit = rl.rlim_cur > 200000 ? 200000 : (unsigned)rl.rlim_cur;
        limit = limit > 64 ? limit - 64 : limit;
    }

    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME |
                     MHD_USE_TURBO | (v6 ? MHD_USE_IPv6 : 0);
    if (sim_cfg.verbose)
        flags |= MHD_USE_ERROR_LOG;
    daemon_ = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, NULL, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
        MHD_OPTION_THREAD_POOL_SIZE, (unsigned)sim_cfg.threads, MHD_OPTION_NOTIFY_COMPLETED,
        on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, limit, MHD_OPTION_CONNECTION_TIMEOUT, 0u,
        MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)CONN_MEMORY, MHD_OPTION_LISTEN_BACKLOG_SIZE,
        (unsigned)LISTEN_BACKLOG, MHD_OPTION_END);
    if (!daemon_) {
        sim_log("cannot listen on %s:%d (in use, or not an address of this machine)",
                sim_cfg.listen_host, sim_cfg.listen_port);
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(daemon_, MHD_DAEMON_INFO_BIND_PORT);
    bound_port = info ? info->port : sim_cfg.listen_port;
    return 0;
}

int sim_http_port(void)
{
    return bound_port;
}

void sim_http_stop(void)
{
    if (!daemon_)
        return;
    /* MHD must not be stopped with parked connections: release every one */
    sim_lock();
    shutting_down = true;
    while (suspended_head) {
        sim_req_t *req = suspended_head;
        atomic_store(&req->canceled, true);
        sim_req_wake(req);
    }
    sim_unlock();
    MHD_stop_daemon(daemon_);
    daemon_ = NULL;
}
