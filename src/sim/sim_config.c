/* sim_config: one option table drives the command line, the OLLAMA_* environment and --help. */
#include "sim_config.h"

#include "sim_decode.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

sim_config_t sim_cfg;

typedef int (*setter_fn)(const char *value);

typedef struct {
    const char *flag;    /* "--parallel" */
    const char *metavar; /* NULL for a switch */
    const char *env;     /* environment variable read first, or NULL */
    const char *dflt;    /* default, as text (also shown by --help) */
    const char *help;
    setter_fn set;
} option_t;

static const char *const DEFAULT_MODELS[] = {"llama3.2:latest", "qwen2.5:0.5b",
                                             "nomic-embed-text:latest"};

static int parse_int(const char *v, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long n = strtol(v, &end, 10);
    if (errno || end == v || *end || n < lo || n > hi)
        return -1;
    *out = (int)n;
    return 0;
}

static int parse_ms(const char *v, int64_t *ns)
{
    char *end;
    errno = 0;
    double ms = strtod(v, &end);
    if (errno || end == v || *end || ms < 0 || ms > 1e9)
        return -1;
    *ns = (int64_t)(ms * 1e6);
    return 0;
}

/* OLLAMA_HOST rules: [scheme://]host[:port][/path]; missing parts default to 127.0.0.1:11434. */
static int set_listen(const char *v)
{
    const char *s = v;
    int dflt = 11434;
    const char *scheme = strstr(s, "://");
    if (scheme) {
        dflt = strncmp(s, "https", 5) == 0 ? 443 : 80;
        s = scheme + 3;
    }
    size_t len = strcspn(s, "/");
    char hostport[sizeof sim_cfg.listen_host];
    if (len >= sizeof hostport)
        return -1;
    memcpy(hostport, s, len);
    hostport[len] = '\0';
    const char *host = hostport;
    const char *port = NULL;
    char *close = NULL;
    if (hostport[0] == '[' && (close = strchr(hostport, ']'))) {
        *close = '\0';
        host = hostport + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1])
            return -1;
    } else {
        char *colon = strrchr(hostport, ':');
        if (colon && strchr(hostport, ':') == colon) {
            *colon = '\0';
            port = colon + 1;
        }
    }
    snprintf(sim_cfg.listen_host, sizeof sim_cfg.listen_host, "%s", *host ? host : "127.0.0.1");
    sim_cfg.listen_port = dflt;
    if (port && parse_int(port, 0, 65535, &sim_cfg.listen_port) != 0)
        return -1;
    return 0;
}

static bool models_from_flags;

static int set_model(const char *v)
{
    if (!models_from_flags) {
        sim_config_free();
        models_from_flags = true;
    }
    const char *eq = strchr(v, '=');
    size_t len = eq ? (size_t)(eq - v) : strlen(v);
    int64_t size = 0;
    if (len == 0)
        return -1;
    if (eq) {
        char *end;
        errno = 0;
        long long n = strtoll(eq + 1, &end, 10);
        if (errno || end == eq + 1 || *end || n <= 0)
            return -1;
        size = n;
    }
    sim_config_model_t *grown =
        realloc(sim_cfg.models, (size_t)(sim_cfg.nmodels + 1) * sizeof *grown);
    if (!grown)
        return -1;
    sim_cfg.models = grown;
    sim_cfg.models[sim_cfg.nmodels].name = strndup(v, len);
    sim_cfg.models[sim_cfg.nmodels].size = size;
    if (!sim_cfg.models[sim_cfg.nmodels].name)
        return -1;
    sim_cfg.nmodels++;
    return 0;
}

static int set_tps(const char *v)
{
    char *end;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || end == v || *end || d < 0 || d > 1e7)
        return -1;
    sim_cfg.tokens_per_sec = d;
    return 0;
}

/* Ollama's envconfig.Uint treats 0 as "unset" for these two. */
static int set_parallel(const char *v)
{
    if (parse_int(v, 0, 4096, &sim_cfg.parallel) != 0)
        return -1;
    if (sim_cfg.parallel == 0)
        sim_cfg.parallel = 1;
    return 0;
}

static int set_max_loaded(const char *v)
{
    if (parse_int(v, 0, 4096, &sim_cfg.max_loaded) != 0)
        return -1;
    if (sim_cfg.max_loaded == 0)
        sim_cfg.max_loaded = 3;
    return 0;
}

static int set_load_ms(const char *v)
{
    return parse_ms(v, &sim_cfg.load_ns);
}

static int set_pull_ms(const char *v)
{
    return parse_ms(v, &sim_cfg.pull_ns);
}

/* OLLAMA_KEEP_ALIVE: a Go duration, else whole seconds; negative = forever. */
static int set_keep_alive(const char *v)
{
    char msg[200];
    int64_t ns;
    if (sim_go_duration(v, &ns, msg, sizeof msg) != 0) {
        char *end;
        errno = 0;
        long long secs = strtoll(v, &end, 10);
        if (errno || end == v || *end)
            return -1;
        ns = secs < 0 ? -1 : secs > INT64_MAX / 1000000000LL ? INT64_MAX : secs * 1000000000LL;
    }
    sim_cfg.keep_alive_ns = ns < 0 ? INT64_MAX : ns;
    return 0;
}

static int set_max_queue(const char *v)
{
    return parse_int(v, 0, 1 << 24, &sim_cfg.max_queue);
}

static int set_num_ctx(const char *v)
{
    return parse_int(v, 1, 1 << 24, &sim_cfg.num_ctx);
}

static int set_embed_dim(const char *v)
{
    return parse_int(v, 1, 65536, &sim_cfg.embed_dim);
}

static int set_version(const char *v)
{
    if (!*v || strlen(v) >= sizeof sim_cfg.version)
        return -1;
    snprintf(sim_cfg.version, sizeof sim_cfg.version, "%s", v);
    return 0;
}

static int set_threads(const char *v)
{
    return parse_int(v, 1, 1024, &sim_cfg.threads);
}

static int set_verbose(const char *v)
{
    (void)v;
    sim_cfg.verbose = true;
    return 0;
}

static const option_t OPTIONS[] = {
    {"--listen", "HOST:PORT", "OLLAMA_HOST", "127.0.0.1:11434", "address to serve on", set_listen},
    {"--model", "NAME[=BYTES]", NULL, NULL,
     "install a model (repeatable; replaces the defaults llama3.2:latest, qwen2.5:0.5b, "
     "nomic-embed-text:latest)",
     set_model},
    {"--tokens-per-sec", "N", NULL, "50", "generation speed of one slot; 0 = as fast as possible",
     set_tps},
    {"--parallel", "N", "OLLAMA_NUM_PARALLEL", "1", "requests served at once by a loaded model",
     set_parallel},
    {"--max-loaded", "N", "OLLAMA_MAX_LOADED_MODELS", "3", "models loaded at once", set_max_loaded},
    {"--load-ms", "N", NULL, "0", "time a cold model takes to load", set_load_ms},
    {"--keep-alive", "DUR", "OLLAMA_KEEP_ALIVE", "5m",
     "how long an idle model stays loaded (seconds or 5m, 1h; negative = forever)", set_keep_alive},
    {"--max-queue", "N", "OLLAMA_MAX_QUEUE", "512", "waiting requests before 503 server busy",
     set_max_queue},
    {"--num-ctx", "N", "OLLAMA_CONTEXT_LENGTH", "4096", "default context length", set_num_ctx},
    {"--embed-dim", "N", NULL, "384", "length of embedding vectors", set_embed_dim},
    {"--pull-ms", "N", NULL, "0", "time a pull (or push) of a new model takes", set_pull_ms},
    {"--version-string", "X.Y.Z", NULL, "0.12.6", "version /api/version reports", set_version},
    {"--threads", "N", NULL, NULL, "HTTP worker threads (default: one per CPU)", set_threads},
    {"-v", NULL, NULL, NULL, "log every request to stderr", set_verbose},
};
#define NOPTIONS (sizeof OPTIONS / sizeof OPTIONS[0])

static void usage(void)
{
    printf("usage: ollama-sim [options]\n\nA simulated Ollama server for tests, benchmarks and "
           "demos.\n\n");
    for (size_t i = 0; i < NOPTIONS; i++) {
        const option_t *o = &OPTIONS[i];
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->flag, o->metavar ? " " : "",
                 o->metavar ? o->metavar : "");
        printf("  %-30s %s", left, o->help);
        if (o->dflt)
            printf(" (default %s%s%s)", o->dflt, o->env ? ", or $" : "", o->env ? o->env : "");
        else if (o->env)
            printf(" (or $%s)", o->env);
        printf("\n");
    }
    printf("  %-30s %s\n", "--help", "show this help");
}

static const option_t *find_option(const char *flag, size_t len)
{
    for (size_t i = 0; i < NOPTIONS; i++)
        if (strlen(OPTIONS[i].flag) == len && strncmp(OPTIONS[i].flag, flag, len) == 0)
            return &OPTIONS[i];
    return NULL;
}

int sim_config_load(int argc, char **argv)
{
    memset(&sim_cfg, 0, sizeof sim_cfg);
    models_from_flags = false;
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    sim_cfg.threads = cpus > 0 ? (int)(cpus > 64 ? 64 : cpus) : 2;

    /* defaults, then the environment, then the flags */
    for (size_t i = 0; i < NOPTIONS; i++)
        if (OPTIONS[i].dflt)
            OPTIONS[i].set(OPTIONS[i].dflt);
    for (size_t i = 0; i < NOPTIONS; i++) {
        const char *env = OPTIONS[i].env ? getenv(OPTIONS[i].env) : NULL;
        if (env && *env && OPTIONS[i].set(env) != 0) {
            fprintf(stderr, "ollama-sim: ignoring invalid $%s '%s'\n", OPTIONS[i].env, env);
            OPTIONS[i].set(OPTIONS[i].dflt);
        }
    }
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage();
            return 1;
        }
        const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
        const option_t *o = find_option(arg, eq ? (size_t)(eq - arg) : strlen(arg));
        if (!o) {
            fprintf(stderr, "ollama-sim: unknown option '%s' (see --help)\n", arg);
            return 2;
        }
        const char *value = NULL;
        if (o->metavar) {
            if (eq) {
                value = eq + 1;
            } else if (i + 1 < argc) {
                value = argv[++i];
            } else {
                fprintf(stderr, "ollama-sim: %s needs a value %s\n", o->flag, o->metavar);
                return 2;
            }
        } else if (eq) {
            fprintf(stderr, "ollama-sim: %s takes no value\n", o->flag);
            return 2;
        }
        if (o->set(value) != 0) {
            fprintf(stderr, "ollama-sim: invalid value '%s' for %s (expected %s)\n", value, o->flag,
                    o->metavar);
            return 2;
        }
    }
    if (!models_from_flags) {
        for (size_t i = 0; i < sizeof DEFAULT_MODELS / sizeof DEFAULT_MODELS[0]; i++)
            if (set_model(DEFAULT_MODELS[i]) != 0)
                return 2;
        models_from_flags = false;
    }
    return 0;
}

void sim_config_free(void)
{
    for (int i = 0; i < sim_cfg.nmodels; i++)
        free(sim_cfg.models[i].name);
    free(sim_cfg.models);
    sim_cfg.models = NULL;
    sim_cfg.nmodels = 0;
}
