/* The commands that talk to a running node over its /agpu/v1 API: `agpu peers`, `agpu route`,
 * `agpu drain` and `agpu undrain`. Each prints the answer for a person, or as JSON for scripts. */
#include "agpu_cli.h"

#include "agpu_fetch.h"
#include "agpu_text.h"

#include <ctype.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CLI_TIMEOUT_MS 3000
#define CLI_MAX_ANSWER (16U << 20)
#define CLI_WATCH_INTERVAL_US 1000000
#define CLI_DEFAULT_HOST "http://127.0.0.1:11435"
/* Room for a URL: a host the user typed (kept under 1 KiB), a path and a model name escaped
 * three bytes per byte. */
#define CLI_HOST_MAX 1024
#define CLI_URL_MAX 4096

/* What each command accepts besides --host and --help. */
enum { CLI_JSON = 1 << 0, CLI_WATCH = 1 << 1, CLI_MODEL = 1 << 2 };

typedef struct {
    const char *command; /* "peers", "route"...: the start of every message */
    const char *host;
    const char *model; /* route's one argument */
    bool json, watch;
} cli_options_t;

/* ---- shared by every command ---- */

/* Returns 0, 1 when --help was answered, or -1 after one line on stderr (exit status 2). */
static int parse_options(int argc, char *argv[], unsigned accepts, void (*usage)(FILE *),
                         cli_options_t *o)
{
    const char *env = getenv("AGPU_HOST");
    o->host = env && env[0] ? env : CLI_DEFAULT_HOST;
    for (int i = 0; i < argc; i++) {
        const char *arg = argv[i];
        if ((accepts & CLI_JSON) && strcmp(arg, "--json") == 0)
            o->json = true;
        else if ((accepts & CLI_WATCH) && strcmp(arg, "--watch") == 0)
            o->watch = true;
        else if (strcmp(arg, "--host") == 0 && i + 1 < argc)
            o->host = argv[++i];
        else if (strncmp(arg, "--host=", 7) == 0)
            o->host = arg + 7;
        else if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            usage(stdout);
            return 1;
        } else if ((accepts & CLI_MODEL) && !o->model && arg[0] && arg[0] != '-') {
            o->model = arg;
        } else if (strcmp(arg, "--host") == 0) {
            fprintf(stderr, "agpu %s: --host needs a URL\n", o->command);
            return -1;
        } else if (arg[0] != '-') {
            fprintf(stderr, "agpu %s: unexpected argument '%s' (see agpu %s --help)\n", o->command,
                    arg, o->command);
            return -1;
        } else {
            fprintf(stderr, "agpu %s: unknown option '%s' (see agpu %s --help)\n", o->command, arg,
                    o->command);
            return -1;
        }
    }
    if ((accepts & CLI_MODEL) && !o->model) {
        fprintf(stderr, "agpu %s: which model? (see agpu %s --help)\n", o->command, o->command);
        return -1;
    }
    if (strlen(o->host) >= CLI_HOST_MAX) {
        fprintf(stderr, "agpu %s: --host is too long\n", o->command);
        return -1;
    }
    return 0;
}

/* Percent-encodes all but RFC 3986's unreserved characters, so a model name such as
 * "hf.co/user/repo:Q4" reaches the node whole as one query value. */
static bool url_escape(const char *text, char *out, size_t size)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t used = 0;
    for (const unsigned char *p = (const unsigned char *)text; *p; p++) {
        bool plain = isalnum(*p) || strchr("-._~", *p);
        if (used + (plain ? 1 : 3) >= size)
            return false;
        if (plain) {
            out[used++] = (char)*p;
        } else {
            out[used++] = '%';
            out[used++] = hex[*p >> 4];
            out[used++] = hex[*p & 15];
        }
    }
    out[used] = '\0';
    return true;
}

/* {host}{path}[?model=MODEL]; a host typed with a trailing '/' works too. */
static bool node_url(const cli_options_t *o, const char *path, char *url, size_t size)
{
    char model[CLI_URL_MAX / 2] = "";
    if (o->model && !url_escape(o->model, model, sizeof model))
        return false;
    size_t len = strlen(o->host);
    if (len && o->host[len - 1] == '/')
        len--;
    int n = snprintf(url, size, "%.*s%s%s%s", (int)len, o->host, path, o->model ? "?model=" : "",
                     model);
    return n > 0 && (size_t)n < size;
}

/* Sends one request to the node. Returns 0 with result filled (any status), or 1 after
 * saying on stderr that the node cannot be reached. */
static int ask_node(const cli_options_t *o, const char *method, const char *path, const char *body,
                    agpu_fetch_result_t *result)
{
    char url[CLI_URL_MAX], error[CLI_URL_MAX + 512];
    if (!node_url(o, path, url, sizeof url)) {
        fprintf(stderr, "agpu %s: the model name is too long\n", o->command);
        return 1;
    }
    if (agpu_fetch(method, url, body, CLI_TIMEOUT_MS, CLI_MAX_ANSWER, result, error,
                   sizeof error) != 0) {
        fprintf(stderr, "agpu %s: cannot reach an agpu node at %s (%s)\n", o->command, o->host,
                error);
        return 1;
    }
    return 0;
}

/* The answer as JSON when it is an object holding `field`; else NULL after saying on stderr
 * what came instead: the node's own error ({"error":...}, in Ollama's or OpenAI's shape), or
 * a body that is not what this command expects (a node too old for it, say). */
static json_t *read_answer(const cli_options_t *o, const agpu_fetch_result_t *result,
                           const char *field, const char *what)
{
    json_t *root = result->body ? json_loadb(result->body, result->len, 0, NULL) : NULL;
    json_t *error = json_object_get(root, "error");
    if (json_is_object(error))
        error = json_object_get(error, "message");
    if (json_object_get(root, field) && (result->status < 400 || !json_is_string(error)))
        return root;
    if (result->status >= 400 && json_is_string(error))
        fprintf(stderr, "agpu %s: %s (%ld from %s)\n", o->command, json_string_value(error),
                result->status, o->host);
    else
        fprintf(stderr, "agpu %s: %s answered %ld, not %s%s%.200s\n", o->command, o->host,
                result->status, what, result->body ? ": " : "", result->body ? result->body : "");
    json_decref(root);
    return NULL;
}

static const char *text_of(json_t *object, const char *key, const char *otherwise)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? value : otherwise;
}

/* "alive", or "alive,draining" for a node that takes no new work. */
static void format_state(json_t *node, char *out, size_t size)
{
    snprintf(out, size, "%s%s", text_of(node, "state", "?"),
             json_is_true(json_object_get(node, "draining")) ? ",draining" : "");
}

/* The width of a column of a table of nodes: its widest cell as format writes it, between
 * min and max, so that the table stays aligned whatever the names and states. */
static int column_width(json_t *nodes, void (*format)(json_t *, char *, size_t), int min, int max)
{
    size_t i;
    json_t *node;
    int width = min;
    json_array_foreach(nodes, i, node)
    {
        char cell[128];
        format(node, cell, sizeof cell);
        int len = (int)strlen(cell);
        if (len > width)
            width = len < max ? len : max;
    }
    return width;
}

/* ---- agpu peers ---- */

static void peers_usage(FILE *out)
{
    fprintf(out, "Usage: agpu peers [--json] [--watch] [--host URL]\n\n"
                 "Shows every node of the mesh as the node at URL sees it.\n"
                 "  --host URL   the node to ask (default: AGPU_HOST, else " CLI_DEFAULT_HOST ")\n"
                 "  --json       print the node's JSON answer as it is\n"
                 "  --watch      refresh every second until interrupted\n");
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

static void print_peers(json_t *root, FILE *out)
{
    json_t *peers = json_object_get(root, "peers");
    int sw = column_width(peers, format_state, 8, 64);
    fprintf(out, "%-16s %-22s %-*s %-7s %-30s %-24s %-9s %s\n", "NAME", "ADDRESS", sw, "STATE",
            "OLLAMA", "MODELS", "LOADED", "LOAD", "LAST SEEN");
    size_t i;
    json_t *p;
    json_array_foreach(peers, i, p)
    {
        char models[31], loaded[25], load[48], age[48], state[64];
        const char *http = text_of(p, "http", "?");
        if (strncmp(http, "http://", 7) == 0)
            http += 7;
        join_names(json_object_get(p, "models"), models, sizeof models);
        join_names(json_object_get(p, "loaded"), loaded, sizeof loaded);
        snprintf(load, sizeof load, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(p, "inflight")),
                 (long long)json_integer_value(json_object_get(p, "capacity")));
        format_age(json_integer_value(json_object_get(p, "last_seen_ms")),
                   json_is_true(json_object_get(p, "self")), age, sizeof age);
        format_state(p, state, sizeof state);
        fprintf(out, "%-16.16s %-22.22s %-*s %-7s %-30s %-24s %-9s %s\n", text_of(p, "name", "?"),
                http, sw, state, text_of(p, "ollama", "?"), models, loaded, load, age);
    }
}

/* One look at the mesh. Returns 0, or 1 with the reason on stderr. */
static int show_peers(const cli_options_t *o)
{
    agpu_fetch_result_t result;
    if (ask_node(o, "GET", "/agpu/v1/peers", NULL, &result) != 0)
        return 1;
    json_t *root = read_answer(o, &result, "peers", "an agpu peer list");
    if (root && o->json)
        printf("%s\n", result.body);
    else if (root)
        print_peers(root, stdout);
    json_decref(root);
    agpu_fetch_free(&result);
    return root ? 0 : 1;
}

int agpu_cli_peers(int argc, char *argv[])
{
    cli_options_t o = {.command = "peers"};
    int parsed = parse_options(argc, argv, CLI_JSON | CLI_WATCH, peers_usage, &o);
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

/* ---- agpu route ---- */

static void route_usage(FILE *out)
{
    fprintf(out, "Usage: agpu route MODEL [--json] [--host URL]\n\n"
                 "Shows where the node at URL would send a request for MODEL now, and why:\n"
                 "every node that has the model, best first.\n"
                 "  --host URL   the node to ask (default: AGPU_HOST, else " CLI_DEFAULT_HOST ")\n"
                 "  --json       print the node's JSON answer as it is\n");
}

static json_t *find_candidate(json_t *candidates, const char *name)
{
    size_t i;
    json_t *c;
    json_array_foreach(candidates, i, c)
    {
        if (name && strcmp(text_of(c, "name", ""), name) == 0)
            return c;
    }
    return NULL;
}

/* The verdict in one line: where the request goes, or why it goes nowhere yet. */
static void print_route_verdict(json_t *root, const char *asked, FILE *out)
{
    const char *model = text_of(root, "key", text_of(root, "model", asked));
    const char *verdict = text_of(root, "verdict", "?");
    const char *choice = json_string_value(json_object_get(root, "choice"));
    if (strcmp(verdict, "go") == 0 && choice) {
        json_t *chosen = find_candidate(json_object_get(root, "candidates"), choice);
        const char *tier = text_of(chosen, "tier", NULL);
        fprintf(out, "%s -> %s%s%s%s\n", model, choice, tier ? " (" : "", tier ? tier : "",
                tier ? ")" : "");
    } else if (strcmp(verdict, "wait") == 0) {
        fprintf(out, "%s: every holder is busy: it would wait in the queue\n", model);
    } else if (strcmp(verdict, "none") == 0) {
        fprintf(out, "%s: no node has it (404)\n", model);
    } else {
        fprintf(out, "%s: %s\n", model, verdict);
    }
}

/* "gpu-a (self)" for the node that was asked. */
static void format_candidate_name(json_t *c, char *out, size_t size)
{
    snprintf(out, size, "%s%s", text_of(c, "name", "?"),
             json_is_true(json_object_get(c, "self")) ? " (self)" : "");
}

/* Returns true when the speed is only an estimate (the table then explains the '*'). */
static bool format_speed(json_t *c, char *out, size_t size)
{
    double speed = json_number_value(json_object_get(c, "speed"));
    bool estimate = !json_is_true(json_object_get(c, "measured"));
    if (speed <= 0)
        snprintf(out, size, "-");
    else
        snprintf(out, size, "%.1f tok/s%s", speed, estimate ? "*" : "");
    return estimate && speed > 0;
}

static void print_route(json_t *root, const char *asked, FILE *out)
{
    print_route_verdict(root, asked, out);
    json_t *candidates = json_object_get(root, "candidates");
    if (json_array_size(candidates) == 0)
        return;
    int nw = column_width(candidates, format_candidate_name, 4, 40);
    int sw = column_width(candidates, format_state, 8, 64);
    fprintf(out, "\n%-*s %-*s %-10s %-9s %-12s %-8s %s\n", nw, "NAME", sw, "STATE", "TIER",
            "LOAD/CAP", "SPEED", "SCORE", "WHY");
    bool any_estimate = false;
    size_t i;
    json_t *c;
    json_array_foreach(candidates, i, c)
    {
        char name[64], state[64], load[48], speed[32], score[32];
        format_candidate_name(c, name, sizeof name);
        format_state(c, state, sizeof state);
        snprintf(load, sizeof load, "%lld/%lld",
                 (long long)json_integer_value(json_object_get(c, "load")),
                 (long long)json_integer_value(json_object_get(c, "capacity")));
        any_estimate |= format_speed(c, speed, sizeof speed);
        json_t *s = json_object_get(c, "score");
        if (json_is_number(s))
            snprintf(score, sizeof score, "%.3g", json_number_value(s));
        else
            snprintf(score, sizeof score, "-");
        fprintf(out, "%-*.*s %-*s %-10s %-9s %-12s %-8s %s\n", nw, nw, name, sw, state,
                text_of(c, "tier", "?"), load, speed, score, text_of(c, "why", ""));
    }
    if (any_estimate)
        fprintf(out, "\n* not measured yet: an estimate until the node has served this model\n");
}

int agpu_cli_route(int argc, char *argv[])
{
    cli_options_t o = {.command = "route"};
    int parsed = parse_options(argc, argv, CLI_JSON | CLI_MODEL, route_usage, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    agpu_fetch_result_t result;
    if (ask_node(&o, "GET", "/agpu/v1/route", NULL, &result) != 0)
        return 1;
    json_t *root = read_answer(&o, &result, "verdict", "an agpu route answer");
    if (root && o.json)
        printf("%s\n", result.body);
    else if (root)
        print_route(root, o.model, stdout);
    json_decref(root);
    agpu_fetch_free(&result);
    return root ? 0 : 1;
}

/* ---- agpu drain, agpu undrain ---- */

static void drain_usage(FILE *out)
{
    fprintf(out, "Usage: agpu drain [--host URL]\n"
                 "       agpu undrain [--host URL]\n\n"
                 "drain: the node at URL takes no new work and finishes what it has (before a\n"
                 "restart, say); the rest of the mesh serves in its place. undrain: it takes\n"
                 "work again.\n"
                 "  --host URL   the node (default: AGPU_HOST, else " CLI_DEFAULT_HOST ")\n");
}

/* The node's own name, for the message; "" when it cannot be told. The drain answer may name
 * the node; else its peer list does (the entry marked self). */
static void node_name(const cli_options_t *o, json_t *answer, char *out, size_t size)
{
    const char *name = text_of(answer, "node", text_of(answer, "name", NULL));
    agpu_text_copy(out, size, name ? name : "");
    if (name)
        return;
    agpu_fetch_result_t result;
    char url[CLI_URL_MAX], error[CLI_URL_MAX + 512];
    if (!node_url(o, "/agpu/v1/peers", url, sizeof url) ||
        agpu_fetch("GET", url, NULL, CLI_TIMEOUT_MS, CLI_MAX_ANSWER, &result, error,
                   sizeof error) != 0)
        return;
    json_t *root = result.status == 200 ? json_loadb(result.body, result.len, 0, NULL) : NULL;
    size_t i;
    json_t *p;
    json_array_foreach(json_object_get(root, "peers"), i, p)
    {
        if (json_is_true(json_object_get(p, "self")))
            agpu_text_copy(out, size, text_of(p, "name", ""));
    }
    json_decref(root);
    agpu_fetch_free(&result);
}

static int set_draining(const char *command, const char *path, int argc, char *argv[])
{
    cli_options_t o = {.command = command};
    int parsed = parse_options(argc, argv, 0, drain_usage, &o);
    if (parsed != 0)
        return parsed > 0 ? 0 : 2;
    agpu_fetch_result_t result;
    /* an empty JSON object makes a plain POST with a Content-Length */
    if (ask_node(&o, "POST", path, "{}", &result) != 0)
        return 1;
    json_t *root = read_answer(&o, &result, "draining", "an agpu drain answer");
    if (root) {
        char name[256];
        node_name(&o, root, name, sizeof name);
        printf("%s%s%s\n", name, name[0] ? ": " : "",
               json_is_true(json_object_get(root, "draining"))
                   ? "draining (takes no new work; finishes what it has)"
                   : "not draining (taking work again)");
    }
    json_decref(root);
    agpu_fetch_free(&result);
    return root ? 0 : 1;
}

int agpu_cli_drain(int argc, char *argv[])
{
    return set_draining("drain", "/agpu/v1/drain", argc, argv);
}

int agpu_cli_undrain(int argc, char *argv[])
{
    return set_draining("undrain", "/agpu/v1/undrain", argc, argv);
}
