/* agpu's settings: the option table, and the three sources it reads (file, environment,
 * flags), each validated by the same setter so a value means the same wherever it is given. */
#include "agpu_config.h"

#include "agpu_text.h"
#include "agpu_url.h"

#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef enum { OPT_LISTEN, OPT_OLLAMA, OPT_GOSSIP, OPT_PEER, OPT_NAME, OPT_NO_MDNS, OPT_CONFIG,
               OPT_VERBOSE, OPT_MAX_BODY, OPT_CONNECT_TIMEOUT, OPT_THREADS, OPT_MAX_CONNECTIONS,
               OPT_ORIGINS, OPT_ADVERTISE, OPT_SLOTS, OPT_HEARTBEAT, OPT_QUEUE_MAX,
               OPT_QUEUE_TIMEOUT, OPT_COLD_AFTER, OPT_FIRST_BYTE_TIMEOUT, OPT_HELP } option_id_t;

typedef struct {
    option_id_t id;
    const char *flag; /* long flag and config-file key */
    char short_flag;
    const char *env;
    const char *arg;  /* NULL: a switch */
    const char *help;
} option_t;

static const option_t options[] = {
    {OPT_LISTEN, "listen", 0, "AGPU_LISTEN", "HOST:PORT",
     "where clients reach this node (default 0.0.0.0:11435)"},
    {OPT_OLLAMA, "ollama", 0, "AGPU_OLLAMA", "URL",
     "this node's Ollama, or 'none' (default: from OLLAMA_HOST, else http://127.0.0.1:11434)"},
    {OPT_GOSSIP, "gossip", 0, "AGPU_GOSSIP", "HOST:PORT",
     "the gossip bus endpoint (default 0.0.0.0:11436)"},
    {OPT_PEER, "peer", 0, "AGPU_PEER", "HOST:PORT",
     "a seed node's gossip address; repeatable (env: comma-separated)"},
    {OPT_NAME, "name", 0, "AGPU_NAME", "NAME", "this node's name (default: the host name)"},
    {OPT_NO_MDNS, "no-mdns", 0, "AGPU_NO_MDNS", NULL, "do not use mDNS (Avahi) discovery"},
    {OPT_CONFIG, "config", 0, "AGPU_CONFIG", "FILE",
     "read settings from FILE: 'key = value' lines, keys as the long flags"},
    {OPT_VERBOSE, "verbose", 'v', "AGPU_VERBOSE", NULL, "log debug detail"},
    {OPT_MAX_BODY, "max-body", 0, "AGPU_MAX_BODY", "BYTES",
     "largest request body accepted, with K/M/G suffixes (default 64G)"},
    {OPT_CONNECT_TIMEOUT, "connect-timeout", 0, "AGPU_CONNECT_TIMEOUT", "MS",
     "give up connecting to an Ollama after MS milliseconds (default 3000)"},
    {OPT_THREADS, "threads", 0, "AGPU_THREADS", "N",
     "HTTP event-loop threads (default: one per CPU)"},
    {OPT_MAX_CONNECTIONS, "max-connections", 0, "AGPU_MAX_CONNECTIONS", "N",
     "most client connections open at once (default 10000)"},
    {OPT_ORIGINS, "origins", 0, "OLLAMA_ORIGINS", "LIST",
     "extra allowed CORS origins, comma-separated, as Ollama's OLLAMA_ORIGINS"},
    {OPT_ADVERTISE, "advertise", 0, "AGPU_ADVERTISE", "HOST",
     "the address peers reach this node on (default: the listen address, or this host's "
     "first LAN address when listening on all)"},
    {OPT_SLOTS, "slots", 0, "AGPU_SLOTS", "N",
     "requests this node's Ollama runs at once per model (default: OLLAMA_NUM_PARALLEL, else 1)"},
    {OPT_HEARTBEAT, "heartbeat", 0, "AGPU_HEARTBEAT", "MS",
     "how often this node tells the mesh its state (default 1000)"},
    {OPT_QUEUE_MAX, "queue-max", 0, "AGPU_QUEUE_MAX", "N",
     "requests per model this node holds while every slot in the mesh is busy; more get 503 "
     "(default 512, as OLLAMA_MAX_QUEUE)"},
    {OPT_QUEUE_TIMEOUT, "queue-timeout", 0, "AGPU_QUEUE_TIMEOUT", "MS",
     "longest a request waits for a free slot before it gets 503 (default 60000)"},
    {OPT_COLD_AFTER, "cold-after", 0, "AGPU_COLD_AFTER", "MS",
     "how long a request waits for a busy warm replica before it may load the model on an "
     "idle node (default 3000)"},
    {OPT_FIRST_BYTE_TIMEOUT, "first-byte-timeout", 0, "AGPU_FIRST_BYTE_TIMEOUT", "MS",
     "a peer that has not begun to answer after MS milliseconds is given up for the next "
     "one (default 300000, as OLLAMA_LOAD_TIMEOUT)"},
    {OPT_HELP, "help", 'h', NULL, NULL, "show this help"},
};
#define OPTION_COUNT (sizeof options / sizeof options[0])

/* Which source last set each option: a list (--peer) restarts when a later source names it. */
typedef enum { SRC_DEFAULT, SRC_FILE, SRC_ENV, SRC_FLAG } source_t;

typedef struct {
    agpu_config_t *config;
    source_t set_by[OPTION_COUNT];
    char *error;
    size_t error_size;
} loader_t;

static int fail(loader_t *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int fail(loader_t *l, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(l->error, l->error_size, fmt, ap);
    va_end(ap);
    return -1;
}

static int copy_text(char *out, size_t size, const char *text)
{
    size_t len = strlen(text);
    if (len >= size)
        return -1;
    memcpy(out, text, len + 1);
    return 0;
}

static int parse_uint(const char *text, unsigned long long max, unsigned long long *out)
{
    if (!isdigit((unsigned char)text[0]))
        return -1;
    errno = 0;
    char *end;
    unsigned long long value = strtoull(text, &end, 10);
    if (errno || *end || value > max)
        return -1;
    *out = value;
    return 0;
}

static int parse_size(const char *text, uint64_t *out)
{
    char digits[32];
    size_t len = strlen(text);
    if (len == 0 || len >= sizeof digits)
        return -1;
    memcpy(digits, text, len + 1);
    unsigned shift = 0;
    char suffix = (char)toupper((unsigned char)digits[len - 1]);
    if (suffix == 'K' || suffix == 'M' || suffix == 'G' || suffix == 'T') {
        shift = suffix == 'K' ? 10 : suffix == 'M' ? 20 : suffix == 'G' ? 30 : 40;
        digits[--len] = '\0';
    }
    unsigned long long value;
    if (parse_uint(digits, UINT64_MAX >> shift, &value) || value == 0)
        return -1;
    *out = (uint64_t)value << shift;
    return 0;
}

static bool parse_bool(const char *text, bool *out)
{
    static const char *const yes[] = {"1", "true", "yes", "on"}, *const no[] = {"0", "false",
                                                                                "no", "off", ""};
    for (size_t i = 0; i < 4; i++)
        if (strcasecmp(text, yes[i]) == 0)
            return (*out = true);
    for (size_t i = 0; i < 5; i++)
        if (strcasecmp(text, no[i]) == 0)
            return !(*out = false);
    return false;
}

/* The forwarder speaks plain HTTP/1.1 (Ollama serves nothing else); a TLS proxy in front of
 * an Ollama elsewhere is not an upstream agpu can use. */
static bool is_https(const char *base_url)
{
    return strncmp(base_url, "https://", 8) == 0;
}

static int set_hostport(loader_t *l, const option_t *o, const char *value, char *host,
                        uint16_t *port)
{
    if (agpu_url_split_hostport(value, host, AGPU_HOSTPORT_MAX, port) != 0)
        return fail(l, "--%s: '%s' is not HOST:PORT", o->flag, value);
    return 0;
}

static int add_peer(loader_t *l, const option_t *o, const char *value, source_t source)
{
    agpu_config_t *c = l->config;
    if (l->set_by[o->id] != source) {
        c->peer_count = 0; /* a later source replaces the list */
        l->set_by[o->id] = source;
    }
    char host[AGPU_HOSTPORT_MAX];
    uint16_t port;
    if (agpu_url_split_hostport(value, host, sizeof host, &port) != 0)
        return fail(l, "--peer: '%s' is not HOST:PORT", value);
    if (c->peer_count == AGPU_MAX_SEEDS)
        return fail(l, "--peer: more than %d seeds", AGPU_MAX_SEEDS);
    return copy_text(c->peers[c->peer_count++], AGPU_HOSTPORT_MAX, value);
}

static int set_option(loader_t *l, const option_t *o, const char *value, source_t source)
{
    agpu_config_t *c = l->config;
    unsigned long long n;
    bool flag;
    int rc = 0;
    switch (o->id) {
    case OPT_LISTEN:
        rc = set_hostport(l, o, value, c->listen_host, &c->listen_port);
        break;
    case OPT_GOSSIP:
        rc = set_hostport(l, o, value, c->gossip_host, &c->gossip_port);
        break;
    case OPT_OLLAMA:
        c->ollama_none = strcmp(value, "none") == 0;
        if (c->ollama_none)
            c->ollama[0] = '\0';
        else if (agpu_url_ollama_base(value, c->ollama, sizeof c->ollama) != 0)
            rc = fail(l, "--ollama: '%s' is not an Ollama address (URL, HOST[:PORT] or none)",
                      value);
        else if (is_https(c->ollama))
            rc = fail(l, "--ollama: '%s': agpu forwards plain HTTP; give Ollama's http:// address",
                      value);
        break;
    case OPT_PEER: {
        char list[AGPU_URL_MAX * 4];
        if (copy_text(list, sizeof list, value) != 0)
            return fail(l, "--peer: list too long");
        if (source == SRC_FLAG || source == SRC_FILE)
            rc = add_peer(l, o, list, source);
        else /* the environment gives the whole list at once */
            for (char *item = list; *item && rc == 0;) {
                size_t len = strcspn(item, ", ");
                char *next = item + len + (item[len] ? 1 : 0);
                item[len] = '\0';
                if (len)
                    rc = add_peer(l, o, item, source);
                item = next;
            }
        break;
    }
    case OPT_NAME:
        if (value[0] == '\0' || copy_text(c->name, sizeof c->name, value) != 0)
            rc = fail(l, "--name: must be 1 to %d characters", AGPU_NAME_MAX - 1);
        break;
    case OPT_NO_MDNS:
    case OPT_VERBOSE:
        if (!parse_bool(value, &flag))
            return fail(l, "--%s: '%s' is not a yes/no value", o->flag, value);
        if (o->id == OPT_NO_MDNS)
            c->no_mdns = flag;
        else
            c->verbose = flag;
        break;
    case OPT_CONFIG:
        if (copy_text(c->config_file, sizeof c->config_file, value) != 0)
            rc = fail(l, "--config: path too long");
        break;
    case OPT_MAX_BODY:
        if (parse_size(value, &c->max_body) != 0)
            rc = fail(l, "--max-body: '%s' is not a size (e.g. 1048576, 512M, 64G)", value);
        break;
    case OPT_CONNECT_TIMEOUT:
        if (parse_uint(value, 600000, &n) || n == 0)
            return fail(l, "--connect-timeout: '%s' is not 1..600000 milliseconds", value);
        c->connect_timeout_ms = (unsigned)n;
        break;
    case OPT_THREADS:
        if (parse_uint(value, 256, &n) || n == 0)
            return fail(l, "--threads: '%s' is not 1..256", value);
        c->threads = (unsigned)n;
        break;
    case OPT_MAX_CONNECTIONS:
        if (parse_uint(value, 1000000, &n) || n == 0)
            return fail(l, "--max-connections: '%s' is not 1..1000000", value);
        c->max_connections = (unsigned)n;
        break;
    case OPT_ORIGINS:
        if (copy_text(c->origins, sizeof c->origins, value) != 0)
            rc = fail(l, "--origins: list too long");
        break;
    case OPT_ADVERTISE:
        if (value[0] == '\0' || strchr(value, ' ') ||
            copy_text(c->advertise, sizeof c->advertise, value) != 0)
            rc = fail(l, "--advertise: '%s' is not a host name or address", value);
        break;
    case OPT_SLOTS:
        if (parse_uint(value, 1024, &n) || n == 0)
            return fail(l, "--slots: '%s' is not 1..1024", value);
        c->slots = (unsigned)n;
        break;
    case OPT_HEARTBEAT:
        if (parse_uint(value, 60000, &n) || n < 100)
            return fail(l, "--heartbeat: '%s' is not 100..60000 milliseconds", value);
        c->heartbeat_ms = (unsigned)n;
        break;
    case OPT_QUEUE_MAX:
        if (parse_uint(value, 1000000, &n))
            return fail(l, "--queue-max: '%s' is not 0..1000000", value);
        c->queue_max = (unsigned)n;
        break;
    case OPT_QUEUE_TIMEOUT:
    case OPT_COLD_AFTER:
    case OPT_FIRST_BYTE_TIMEOUT:
        if (parse_uint(value, 86400000, &n))
            return fail(l, "--%s: '%s' is not 0..86400000 milliseconds", o->flag, value);
        if (o->id == OPT_QUEUE_TIMEOUT)
            c->queue_timeout_ms = (unsigned)n;
        else if (o->id == OPT_COLD_AFTER)
            c->cold_after_ms = (unsigned)n;
        else
            c->first_byte_timeout_ms = (unsigned)n;
        break;
    case OPT_HELP:
        break;
    }
    l->set_by[o->id] = source;
    return rc;
}

static const option_t *find_long(const char *name, size_t len)
{
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (strlen(options[i].flag) == len && strncmp(options[i].flag, name, len) == 0)
            return &options[i];
    return NULL;
}

static void set_defaults(agpu_config_t *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen_host, sizeof c->listen_host, "0.0.0.0");
    c->listen_port = 11435;
    snprintf(c->gossip_host, sizeof c->gossip_host, "0.0.0.0");
    c->gossip_port = 11436;
    snprintf(c->ollama, sizeof c->ollama, "http://127.0.0.1:11434");
    if (gethostname(c->name, sizeof c->name - 1) != 0 || c->name[0] == '\0')
        snprintf(c->name, sizeof c->name, "agpu");
    char *dot = strchr(c->name, '.');
    if (dot)
        *dot = '\0'; /* the short host name, as people call their machines */
    c->max_body = AGPU_MAX_BODY_DEFAULT;
    c->connect_timeout_ms = AGPU_CONNECT_TIMEOUT_MS_DEFAULT;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    c->threads = cpus <= 0 ? 2 : cpus > AGPU_MAX_SHARDS ? AGPU_MAX_SHARDS : (unsigned)cpus;
    c->max_connections = AGPU_MAX_CONNECTIONS_DEFAULT;
    c->slots = 1;
    c->heartbeat_ms = 1000;
    c->queue_max = AGPU_QUEUE_MAX_DEFAULT;
    c->queue_timeout_ms = AGPU_QUEUE_TIMEOUT_MS_DEFAULT;
    c->cold_after_ms = AGPU_COLD_AFTER_MS_DEFAULT;
    c->first_byte_timeout_ms = AGPU_FIRST_BYTE_TIMEOUT_MS_DEFAULT;
}

static const char *env_value(char *const envp[], const char *name)
{
    size_t len = strlen(name);
    for (size_t i = 0; envp && envp[i]; i++)
        if (strncmp(envp[i], name, len) == 0 && envp[i][len] == '=')
            return envp[i] + len + 1;
    return NULL;
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t len = strlen(s);
    while (len && isspace((unsigned char)s[len - 1]))
        s[--len] = '\0';
    return s;
}

static int load_file(loader_t *l, const char *path)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return fail(l, "--config: cannot read %s: %s", path, strerror(errno));
    char line[AGPU_URL_MAX * 4];
    int rc = 0;
    for (unsigned number = 1; rc == 0 && fgets(line, sizeof line, f); number++) {
        char *text = trim(line);
        if (text[0] == '\0' || text[0] == '#')
            continue;
        char *eq = strchr(text, '=');
        char *key = trim(text), *value = eq ? trim(eq + 1) : (char *)"true";
        if (eq)
            *eq = '\0', key = trim(text);
        const option_t *o = find_long(key, strlen(key));
        if (!o || o->id == OPT_CONFIG || o->id == OPT_HELP)
            rc = fail(l, "%s:%u: unknown setting '%s'", path, number, key);
        else if (set_option(l, o, value, SRC_FILE) != 0) {
            char why[256];
            agpu_text_copy(why, sizeof why, l->error);
            rc = fail(l, "%s:%u: %s", path, number, why);
        }
    }
    fclose(f);
    return rc;
}

/* The Ollama default comes from OLLAMA_HOST, read the way Ollama's own client reads it. */
static int load_env(loader_t *l, char *const envp[])
{
    const char *ollama_host = env_value(envp, "OLLAMA_HOST");
    if (ollama_host && ollama_host[0] && l->set_by[OPT_OLLAMA] == SRC_DEFAULT) {
        if (agpu_url_ollama_base(ollama_host, l->config->ollama, sizeof l->config->ollama) != 0)
            return fail(l, "OLLAMA_HOST: '%s' is not an Ollama address", ollama_host);
        if (is_https(l->config->ollama))
            return fail(l, "OLLAMA_HOST: '%s': agpu forwards plain HTTP; give --ollama Ollama's "
                           "http:// address", ollama_host);
    }
    unsigned long long parallel;
    const char *num_parallel = env_value(envp, "OLLAMA_NUM_PARALLEL");
    if (num_parallel && parse_uint(num_parallel, 1024, &parallel) == 0 && parallel > 0 &&
        l->set_by[OPT_SLOTS] == SRC_DEFAULT)
        l->config->slots = (unsigned)parallel;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const char *value = options[i].env ? env_value(envp, options[i].env) : NULL;
        if (value && options[i].id != OPT_CONFIG && set_option(l, &options[i], value, SRC_ENV))
            return -1;
    }
    return 0;
}

static int load_flags(loader_t *l, int argc, char *const argv[], bool *help)
{
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i], *value = NULL;
        const option_t *o = NULL;
        if (strncmp(arg, "--", 2) == 0) {
            const char *eq = strchr(arg + 2, '=');
            o = find_long(arg + 2, eq ? (size_t)(eq - arg - 2) : strlen(arg + 2));
            value = eq ? eq + 1 : NULL;
        } else if (arg[0] == '-' && arg[1] && !arg[2]) {
            for (size_t k = 0; k < OPTION_COUNT; k++)
                if (options[k].short_flag == arg[1])
                    o = &options[k];
        }
        if (!o)
            return fail(l, "unknown option '%s' (see agpu serve --help)", arg);
        if (o->id == OPT_HELP) {
            *help = true;
            continue;
        }
        if (!o->arg) {
            if (value && !parse_bool(value, &(bool){false}))
                return fail(l, "--%s takes no value", o->flag);
            value = value ? value : "true";
        } else if (!value) {
            if (i + 1 >= argc)
                return fail(l, "--%s needs a value (%s)", o->flag, o->arg);
            value = argv[++i];
        }
        if (o->id != OPT_CONFIG && set_option(l, o, value, SRC_FLAG) != 0)
            return -1;
    }
    return 0;
}

/* --config is looked for first, in the flags then the environment, since the file is read
 * before everything else. */
static const char *find_config_path(int argc, char *const argv[], char *const envp[])
{
    const char *path = env_value(envp, "AGPU_CONFIG");
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path && path[0] ? path : NULL;
}

int agpu_config_load(agpu_config_t *config, int argc, char *const argv[], char *const envp[],
                     FILE *out, char *error, size_t error_size)
{
    loader_t l = {.config = config, .error = error, .error_size = error_size};
    set_defaults(config);
    bool help = false;
    const char *path = find_config_path(argc, argv, envp);
    if (path && (copy_text(config->config_file, sizeof config->config_file, path) != 0 ||
                 load_file(&l, path) != 0))
        return -1;
    if (load_env(&l, envp) != 0 || load_flags(&l, argc, argv, &help) != 0)
        return -1;
    if (help) {
        agpu_config_print_help(out);
        return 1;
    }
    return 0;
}

void agpu_config_print_help(FILE *out)
{
    fprintf(out, "Usage: agpu serve [OPTIONS]\n\n"
                 "Serve the Ollama API on this node and join the mesh of agpu nodes.\n\n"
                 "Options (each also an environment variable; a config file takes the long\n"
                 "names as keys):\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_t *o = &options[i];
        char flag[64];
        if (o->short_flag)
            snprintf(flag, sizeof flag, "-%c, --%s%s%s", o->short_flag, o->flag, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        else
            snprintf(flag, sizeof flag, "    --%s%s%s", o->flag, o->arg ? " " : "",
                     o->arg ? o->arg : "");
        fprintf(out, "  %-28s %s%s%s%s\n", flag, o->help, o->env ? " [" : "", o->env ? o->env : "",
                 o->env ? "]" : "");
    }
}
