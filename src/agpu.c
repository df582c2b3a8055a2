/* agpu: every machine runs it beside its Ollama; together the nodes serve one Ollama API. */
#include "config.h"

#include "agpu_cli.h"
#include "agpu_config.h"
#include "agpu_serve.h"

#include <curl/curl.h>

#include <stdio.h>
#include <string.h>

extern char **environ;

static void usage(FILE *out)
{
    fprintf(out, "Usage: agpu COMMAND [OPTIONS]\n\n"
                 "Commands:\n"
                 "  serve      run a node: serve the Ollama API here and join the mesh\n"
                 "  peers      show the mesh as a node sees it\n"
                 "  route      show where a node would send a request for a model, and why\n"
                 "  drain      stop a node taking new work (it finishes what it has)\n"
                 "  undrain    let a drained node take work again\n"
                 "  version    print the version\n"
                 "  help       show this help\n\n"
                 "Run 'agpu COMMAND --help' for a command's options.\n");
}

/* The commands that ask a running node over HTTP (agpu_cli). */
static const struct {
    const char *name;
    int (*run)(int argc, char *argv[]);
} node_commands[] = {
    {"peers", agpu_cli_peers},
    {"route", agpu_cli_route},
    {"drain", agpu_cli_drain},
    {"undrain", agpu_cli_undrain},
};

static int run_serve(int argc, char *argv[])
{
    agpu_config_t config;
    char error[512];
    int rc = agpu_config_load(&config, argc, argv, environ, stdout, error, sizeof error);
    if (rc < 0) {
        fprintf(stderr, "agpu: %s\n", error);
        return 2;
    }
    return rc == 1 ? 0 : agpu_serve(&config);
}

int main(int argc, char *argv[])
{
    const char *command = argc > 1 ? argv[1] : "help";
    if (strcmp(command, "serve") == 0)
        return run_serve(argc - 2, argv + 2);
    for (size_t i = 0; i < sizeof node_commands / sizeof node_commands[0]; i++) {
        if (strcmp(command, node_commands[i].name) == 0) {
            curl_global_init(CURL_GLOBAL_DEFAULT);
            int status = node_commands[i].run(argc - 2, argv + 2);
            curl_global_cleanup();
            return status;
        }
    }
    if (strcmp(command, "version") == 0 || strcmp(command, "--version") == 0) {
        printf("agpu %s\n", PACKAGE_VERSION);
        return 0;
    }
    if (strcmp(command, "help") == 0 || strcmp(command, "--help") == 0 ||
        strcmp(command, "-h") == 0) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "agpu: unknown command '%s' (see agpu --help)\n", command);
    return 2;
}
