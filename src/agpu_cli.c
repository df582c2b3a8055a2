/* `agpu peers`: the mesh as one node sees it, as a table for a person or JSON for scripts. */
#include "agpu_cli.h"

#include "agpu_fetch.h"

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 3000
#define CLI_MAX_ANSWER (16U << 20)
#define CLI_WATCH_INTERVAL_US 1000000

typedef struct {
    const char *host;
    bool json, watch;
} peers_options_t;

static void peers_usage(FILE *out)
{
    fprintf(out, "Usage: agpu peers [--json] [--watch] [--host URL]\n\n"
                 "Shows every node of the mesh as the node at URL sees it.\n"
                 "  --host URL   the node to ask (default: AGPU_HOST, else http://127.0.0.1:11435)\n"
                 "  --json       print the node's JSON answer as it is\n"
                 "  --watch      refresh every second until interrupted\n");
}

static int parse_peers_options(int argc, char *argv[], peers_options_t *o)
{
    const char *env = getenv("AGPU_HOST");
    o->host = env && env[0] ? env : "http://127.0.0.1:11435";
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0)
            o->json = true;
        else if (strcmp(argv[i], "--watch") == 0)
            o->watch = true;
        else if (strcmp(argv[i], "--host") == 0 && i + 1 < argc)
            o->host = argv[++i];
        else if (strncmp(argv[i], "--host=", 7) == 0)
            o->host = argv[i] + 7;
        else if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            peers_usage(stdout);
            return 1;
        } else {
            fprintf(stderr, "agpu peers: unknown option '%s' (see agpu peers --help)\n", argv[i]);
            return -1;
        }
    }
    return 0;
}

/* "a, b, c" of a JSON array of strings, cut to fit width. */
static void join_names(json_t *array, char *out, size_t width)
{
    size_t used = 0, i;
    json_t *item;
    out[0] = '\0';
    json_array_foreach(array, i, item)
    {
        const char *name = json_string_value(item);
        int n = snprintf(out + used, width - used, "%s%s", i ? ", " : "", name ? name : "?");
        if (n < 0 || (size_t)n >= width - used) {
            if (width > 4)
                memcpy(out + width - 4, "...", 4);
            return;
        }
        used += (size_t)n;
    }
    if (!used)
        snprintf(out, width, "-");
}

static void format_age(json_int_t ms, bool self, char *out, size_t size)
{
    if (self)
        snprintf(out, size, "self");
    else if (ms < 1000)
        snprintf(out, size, "%lldms ago", (long long)ms);
    else if (ms < 120000)
        snprintf(out, size, "%.1fs ago", (double)ms / 1000);
    else
        snprintf(out, size, "%lldm ago", (long long)(ms / 60000));
}

static void print_table(json_t *root, FILE *out)
{
    json_t *peers = json_object_get(root, "peers");
    fprintf(out, "%-16s %-22s %-8s %-7s %-30s %-24s %-9s %s\n", "NAME", "ADDRESS", "STATE",
            "OLLAMA", "MODELS", "LOADED", "LOAD", "LAST SEEN");
    size_t i;
    json_t *p;
    json_array_foreach(peers, i, p)
    {
        char models[31], loaded[25], load[48], age[48];
        const char *http = json_string_value(json_object_get(p, "http"));
        if (http && strncmp(http, "http://", 7) == 0)
            http += 7;
        join_names(json_object_get(p, "models"), models, sizeof models);
        join_names(json_object_get(p, "loaded"), loaded, sizeof loaded);
        snprintf(load, sizeof load, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(p, "inflight")),
                 (long long)json_integer_value(json_object_get(p, "capacity")));
        format_age(json_integer_value(json_object_get(p, "last_seen_ms")),
                   json_is_true(json_object_get(p, "self")), age, sizeof age);
        const char *state = json_string_value(json_object_get(p, "state"));
        fprintf(out, "%-16.16s %-22.22s %-8s %-7s %-30s %-24s %-9s %s\n",
                json_string_value(json_object_get(p, "name")), http ? http : "?",
                state ? state : "?", json_string_value(json_object_get(p, "ollama")), models,
                loaded, load, age);
    }
}

/* One look at the mesh. Returns 0, or 1 with the reason on stderr. */
static int show_peers(const peers_options_t *o)
{
    char url[1100], error[600];
    size_t len = strlen(o->host);
    snprintf(url, sizeof url, "%.*s/agpu/v1/peers", (int)(len && o->host[len - 1] == '/' ? len - 1 : len),
             o->host);
    agpu_fetch_result_t result;
    if (agpu_fetch("GET", url, NULL, CLI_TIMEOUT_MS, CLI_MAX_ANSWER, &result, error,
                   sizeof error) != 0) {
        fprintf(stderr, "agpu peers: cannot reach an agpu node at %s (%s)\n", o->host, error);
        return 1;
    }
    json_t *root = result.status == 200 ? json_loads(result.body, 0, NULL) : NULL;
    int rc = 0;
    if (!root) {
        fprintf(stderr, "agpu peers: %s answered %ld, not an agpu peer list%s%s\n", o->host,
                result.status, result.body ? ": " : "", result.body ? result.body : "");
        rc = 1;
    } else if (o->json) {
        printf("%s\n", result.body);
    } else {
        print_table(root, stdout);
    }
    json_decref(root);
    agpu_fetch_free(&result);
    return rc;
}

int agpu_cli_peers(int argc, char *argv[])
{
    peers_options_t o = {0};
    int parsed = parse_peers_options(argc, argv, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    if (!o.watch)
        return show_peers(&o);
    while (true) {
        if (isatty(STDOUT_FILENO))
            fputs("\033[H\033[2J", stdout); /* refresh in place */
        if (show_peers(&o) != 0)
            return 1;
        fflush(stdout);
        usleep(CLI_WATCH_INTERVAL_US);
    }
}
