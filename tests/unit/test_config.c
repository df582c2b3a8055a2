/* Unit tests of agpu_config: defaults, flags, environment, config file, and their precedence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agpu_config.h"

/* The CPU count agpu_config sees: the test links with -Wl,--wrap=sysconf, so a test can set
 * it (-2: the real one). */
static long fake_cpus = -2;
long __real_sysconf(int name);
long __wrap_sysconf(int name);
long __wrap_sysconf(int name)
{
    if (name == _SC_NPROCESSORS_ONLN && fake_cpus != -2)
        return fake_cpus;
    return __real_sysconf(name);
}

/* NULL-terminated argv and envp arrays written inline. */
#define ARGV(...) ((char *const[]){__VA_ARGS__, NULL})
#define ENVP(...) ((char *const[]){__VA_ARGS__, NULL})
#define NO_ARGS ((char *const[]){NULL})
#define NO_ENV ((char *const[]){NULL})

static agpu_config_t cfg;
static char error[512];
static char help[16384];
static char paths[4][64]; /* config files made by the running test */

static int setup(void **state)
{
    memset(&cfg, 0xa5, sizeof cfg); /* garbage: load must set every field */
    memset(error, 0, sizeof error);
    memset(help, 0, sizeof help);
    memset(paths, 0, sizeof paths);
    fake_cpus = -2;
    return 0;
}

static int teardown(void **state)
{
    for (size_t i = 0; i < 4; i++)
        if (paths[i][0])
            unlink(paths[i]);
    return 0;
}

/* Writes text to a new temporary file; returns its path (removed by teardown). */
static const char *config_file(const char *text)
{
    size_t slot = 0;
    while (paths[slot][0])
        slot++;
    assert_true(slot < 4);
    snprintf(paths[slot], sizeof paths[slot], "/tmp/agpu-test-config-XXXXXX");
    int fd = mkstemp(paths[slot]);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
    return paths[slot];
}

static int load_with_out(char *const argv[], char *const envp[], FILE *out)
{
    int argc = 0;
    while (argv[argc])
        argc++;
    return agpu_config_load(&cfg, argc, argv, envp, out, error, sizeof error);
}

/* Loads with the help text going to help[]. */
static int load(char *const argv[], char *const envp[])
{
    FILE *out = fmemopen(help, sizeof help - 1, "w");
    assert_non_null(out);
    int rc = load_with_out(argv, envp, out);
    fclose(out);
    return rc;
}

static void assert_ok(char *const argv[], char *const envp[])
{
    int rc = load(argv, envp);
    if (rc != 0)
        fail_msg("load failed (%d): %s", rc, error);
}

/* Loading fails, and the message contains `needle`. */
static void assert_fails(char *const argv[], char *const envp[], const char *needle)
{
    int rc = load(argv, envp);
    if (rc != -1)
        fail_msg("load returned %d, wanted -1 with '%s'", rc, needle);
    if (!strstr(error, needle))
        fail_msg("error '%s' does not contain '%s'", error, needle);
}

/* Every bad value of one flag fails with a message naming the flag. */
static void assert_flag_rejects(const char *flag, const char *value)
{
    char arg[128];
    snprintf(arg, sizeof arg, "--%s=%s", flag, value);
    char name[64];
    snprintf(name, sizeof name, "--%s", flag);
    assert_fails(ARGV(arg), NO_ENV, name);
}

/* ---- defaults ---- */

static void test_defaults(void **state)
{
    assert_ok(NO_ARGS, NO_ENV);
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_int_equal(cfg.listen_port, 11435);
    assert_string_equal(cfg.gossip_host, "0.0.0.0");
    assert_int_equal(cfg.gossip_port, 11436);
    assert_string_equal(cfg.ollama, "http://127.0.0.1:11434");
    assert_false(cfg.ollama_none);
    assert_int_equal(cfg.peer_count, 0);
    assert_false(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 0);
    assert_string_equal(cfg.config_file, "");
    assert_true(cfg.max_body == AGPU_MAX_BODY_DEFAULT);
    assert_int_equal(cfg.connect_timeout_ms, AGPU_CONNECT_TIMEOUT_MS_DEFAULT);
    assert_int_equal(cfg.max_connections, AGPU_MAX_CONNECTIONS_DEFAULT);
    assert_string_equal(cfg.origins, "");
    assert_string_equal(help, ""); /* nothing printed */
}

static void test_default_name_is_short_host_name(void **state)
{
    char host[256] = "";
    assert_int_equal(gethostname(host, sizeof host - 1), 0);
    char *dot = strchr(host, '.');
    if (dot)
        *dot = '\0';
    assert_ok(NO_ARGS, NO_ENV);
    if (host[0] == '\0' || strlen(host) >= AGPU_NAME_MAX)
        assert_true(cfg.name[0] != '\0');
    else
        assert_string_equal(cfg.name, host);
    assert_null(strchr(cfg.name, '.'));
}

static void test_default_threads_one_per_cpu(void **state)
{
    fake_cpus = 1;
    assert_ok(NO_ARGS, NO_ENV);
    assert_int_equal(cfg.threads, 1);
    fake_cpus = 12;
    assert_ok(NO_ARGS, NO_ENV);
    assert_int_equal(cfg.threads, 12);
    fake_cpus = 64;
    assert_ok(NO_ARGS, NO_ENV);
    assert_int_equal(cfg.threads, 64);
}

static void test_default_threads_when_cpu_count_unknown(void **state)
{
    fake_cpus = -1;
    assert_ok(NO_ARGS, NO_ENV);
    assert_int_equal(cfg.threads, 2);
    fake_cpus = 0;
    assert_ok(NO_ARGS, NO_ENV);
    assert_int_equal(cfg.threads, 2);
}

/* "--threads N: HTTP event-loop threads (default: one per CPU)": a 128-CPU GPU server must
 * not fall back to the 2 threads meant for an unknown CPU count (a cap is fine). */
static void test_default_threads_on_many_cpus(void **state)
{
    fake_cpus = 128;
    assert_ok(NO_ARGS, NO_ENV);
    if (cfg.threads < 64 || cfg.threads > 128)
        fail_msg("128 CPUs gave %u threads, want 64..128", cfg.threads);
}

static void test_null_envp_means_empty_environment(void **state)
{
    int rc = agpu_config_load(&cfg, 0, NO_ARGS, NULL, stdout, error, sizeof error);
    assert_int_equal(rc, 0);
    assert_string_equal(cfg.ollama, "http://127.0.0.1:11434");
}

/* ---- flags ---- */

static void test_flag_listen(void **state)
{
    assert_ok(ARGV("--listen", "127.0.0.1:8080"), NO_ENV);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 8080);
}

static void test_flag_equals_form(void **state)
{
    assert_ok(ARGV("--listen=[::1]:9000", "--threads=3", "--name=box"), NO_ENV);
    assert_string_equal(cfg.listen_host, "::1");
    assert_int_equal(cfg.listen_port, 9000);
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.name, "box");
}

static void test_flag_equals_value_may_contain_equals(void **state)
{
    assert_ok(ARGV("--origins=https://a.example/?x=1"), NO_ENV);
    assert_string_equal(cfg.origins, "https://a.example/?x=1");
}

static void test_flag_gossip(void **state)
{
    assert_ok(ARGV("--gossip", "10.0.0.2:7000"), NO_ENV);
    assert_string_equal(cfg.gossip_host, "10.0.0.2");
    assert_int_equal(cfg.gossip_port, 7000);
}

static void test_flag_ollama_url(void **state)
{
    assert_ok(ARGV("--ollama", "http://gpu.example/ollama/"), NO_ENV);
    assert_string_equal(cfg.ollama, "http://gpu.example:80/ollama");
    assert_false(cfg.ollama_none);
    assert_fails(ARGV("--ollama", "https://gpu.example/ollama/"), NO_ENV,
                 "--ollama: 'https://gpu.example/ollama/': agpu forwards plain HTTP");
}

static void test_flag_ollama_host_port_and_wildcard(void **state)
{
    assert_ok(ARGV("--ollama", "0.0.0.0:11500"), NO_ENV);
    assert_string_equal(cfg.ollama, "http://127.0.0.1:11500");
}

static void test_flag_ollama_none(void **state)
{
    assert_ok(ARGV("--ollama", "none"), NO_ENV);
    assert_true(cfg.ollama_none);
    assert_string_equal(cfg.ollama, "");
}

static void test_flag_ollama_after_none_clears_none(void **state)
{
    assert_ok(ARGV("--ollama", "none", "--ollama", "h:1"), NO_ENV);
    assert_false(cfg.ollama_none);
    assert_string_equal(cfg.ollama, "http://h:1");
}

static void test_flag_ollama_bad(void **state)
{
    assert_fails(ARGV("--ollama", "ftp://x"), NO_ENV, "--ollama");
    assert_fails(ARGV("--ollama", "h:99999"), NO_ENV, "'h:99999'");
}

static void test_flag_peer_repeatable(void **state)
{
    assert_ok(ARGV("--peer", "a:1", "--peer=b:2", "--peer", "[::1]:3"), NO_ENV);
    assert_int_equal(cfg.peer_count, 3);
    assert_string_equal(cfg.peers[0], "a:1");
    assert_string_equal(cfg.peers[1], "b:2");
    assert_string_equal(cfg.peers[2], "[::1]:3");
}

static void test_flag_peer_bad(void **state)
{
    assert_fails(ARGV("--peer", "nohost"), NO_ENV, "--peer: 'nohost' is not HOST:PORT");
    assert_fails(ARGV("--peer", "a:1,b:2"), NO_ENV, "--peer"); /* a flag takes one peer */
}

static void test_flag_peer_limit(void **state)
{
    enum { N = AGPU_MAX_SEEDS + 1 };
    static char values[N][16];
    static char *argv[2 * N + 1];
    for (int i = 0; i < N; i++) {
        snprintf(values[i], sizeof values[i], "p%d:1", i);
        argv[2 * i] = "--peer";
        argv[2 * i + 1] = values[i];
    }
    argv[2 * N] = NULL;
    assert_fails(argv, NO_ENV, "--peer: more than 64 seeds");
    argv[2 * (N - 1)] = NULL; /* exactly the limit */
    assert_ok(argv, NO_ENV);
    assert_int_equal(cfg.peer_count, AGPU_MAX_SEEDS);
    assert_string_equal(cfg.peers[AGPU_MAX_SEEDS - 1], "p63:1");
}

static void test_flag_name_bounds(void **state)
{
    char name[AGPU_NAME_MAX + 1];
    memset(name, 'n', sizeof name);
    name[AGPU_NAME_MAX - 1] = '\0'; /* 63 characters: fits */
    assert_ok(ARGV("--name", name), NO_ENV);
    assert_string_equal(cfg.name, name);
    name[AGPU_NAME_MAX - 1] = 'n';
    name[AGPU_NAME_MAX] = '\0'; /* 64: does not */
    assert_fails(ARGV("--name", name), NO_ENV, "--name");
    assert_fails(ARGV("--name="), NO_ENV, "--name");
}

static void test_flag_switches(void **state)
{
    assert_ok(ARGV("--no-mdns", "--verbose"), NO_ENV);
    assert_true(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 1);
}

static void test_flag_short_verbose(void **state)
{
    assert_ok(ARGV("-v"), NO_ENV);
    assert_int_equal(cfg.verbose, 1);
}

static void test_flag_switch_takes_bool_value(void **state)
{
    assert_ok(ARGV("--no-mdns=false", "--verbose=yes"), NO_ENV);
    assert_false(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 1);
    assert_ok(ARGV("--no-mdns=ON", "--verbose=0"), NO_ENV);
    assert_true(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 0);
}

static void test_flag_switch_rejects_other_value(void **state)
{
    assert_fails(ARGV("--no-mdns=maybe"), NO_ENV, "--no-mdns takes no value");
}

static void test_flag_switch_does_not_eat_next_argument(void **state)
{
    assert_ok(ARGV("--no-mdns", "--threads", "2"), NO_ENV);
    assert_true(cfg.no_mdns);
    assert_int_equal(cfg.threads, 2);
}

static void test_flag_max_body_sizes(void **state)
{
    assert_ok(ARGV("--max-body", "1"), NO_ENV);
    assert_true(cfg.max_body == 1);
    assert_ok(ARGV("--max-body", "1k"), NO_ENV);
    assert_true(cfg.max_body == 1024);
    assert_ok(ARGV("--max-body", "512M"), NO_ENV);
    assert_true(cfg.max_body == 512ULL << 20);
    assert_ok(ARGV("--max-body", "64G"), NO_ENV);
    assert_true(cfg.max_body == 64ULL << 30);
    assert_ok(ARGV("--max-body", "2t"), NO_ENV);
    assert_true(cfg.max_body == 2ULL << 40);
    assert_ok(ARGV("--max-body", "18446744073709551615"), NO_ENV);
    assert_true(cfg.max_body == UINT64_MAX);
}

static void test_flag_max_body_rejects(void **state)
{
    const char *bad[] = {"0",         "0K",
                         "K",         "",
                         "-1",        "1.5G",
                         "1KB",       " 1",
                         "1 ",        "abc",
                         "1P",        "18446744073709551616",
                         "16777216T", "99999999999999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_flag_rejects("max-body", bad[i]);
}

static void test_flag_connect_timeout_range(void **state)
{
    assert_ok(ARGV("--connect-timeout", "1"), NO_ENV);
    assert_int_equal(cfg.connect_timeout_ms, 1);
    assert_ok(ARGV("--connect-timeout", "600000"), NO_ENV);
    assert_int_equal(cfg.connect_timeout_ms, 600000);
    assert_flag_rejects("connect-timeout", "0");
    assert_flag_rejects("connect-timeout", "600001");
    assert_flag_rejects("connect-timeout", "3s");
    assert_flag_rejects("connect-timeout", "-5");
}

static void test_flag_threads_range(void **state)
{
    assert_ok(ARGV("--threads", "1"), NO_ENV);
    assert_int_equal(cfg.threads, 1);
    assert_ok(ARGV("--threads", "256"), NO_ENV);
    assert_int_equal(cfg.threads, 256);
    assert_flag_rejects("threads", "0");
    assert_flag_rejects("threads", "257");
    assert_flag_rejects("threads", "4x");
    assert_flag_rejects("threads", "");
}

static void test_flag_max_connections_range(void **state)
{
    assert_ok(ARGV("--max-connections", "1000000"), NO_ENV);
    assert_int_equal(cfg.max_connections, 1000000);
    assert_flag_rejects("max-connections", "0");
    assert_flag_rejects("max-connections", "1000001");
}

static void test_flag_listen_and_gossip_reject_bad(void **state)
{
    const char *bad[] = {"0.0.0.0", "h:0", "h:65536", ":80", "::1:80", "", "h:x"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        assert_flag_rejects("listen", bad[i]);
        assert_flag_rejects("gossip", bad[i]);
    }
}

static void test_flag_origins(void **state)
{
    assert_ok(ARGV("--origins", "https://a.example,app://*"), NO_ENV);
    assert_string_equal(cfg.origins, "https://a.example,app://*");
}

static void test_flag_later_wins(void **state)
{
    assert_ok(ARGV("--threads", "2", "--threads", "5", "--listen", "a:1", "--listen", "b:2"),
              NO_ENV);
    assert_int_equal(cfg.threads, 5);
    assert_string_equal(cfg.listen_host, "b");
}

static void test_flag_missing_value(void **state)
{
    assert_fails(ARGV("--threads"), NO_ENV, "--threads needs a value");
    assert_fails(ARGV("--config"), NO_ENV, "--config needs a value");
}

static void test_unknown_long_flag(void **state)
{
    assert_fails(ARGV("--bogus"), NO_ENV, "unknown option '--bogus'");
    assert_fails(ARGV("--bogus=1"), NO_ENV, "unknown option '--bogus=1'");
    assert_fails(ARGV("--listenx", "a:1"), NO_ENV, "unknown option '--listenx'");
    assert_fails(ARGV("--"), NO_ENV, "unknown option '--'");
}

static void test_unknown_short_flag(void **state)
{
    assert_fails(ARGV("-x"), NO_ENV, "unknown option '-x'");
    assert_fails(ARGV("-vv"), NO_ENV, "unknown option '-vv'");
    assert_fails(ARGV("-"), NO_ENV, "unknown option '-'");
}

static void test_positional_argument_is_unknown(void **state)
{
    assert_fails(ARGV("serve"), NO_ENV, "unknown option 'serve'");
}

/* ---- help ---- */

static void test_help_returns_1_and_prints(void **state)
{
    assert_int_equal(load(ARGV("--help"), NO_ENV), 1);
    assert_non_null(strstr(help, "Usage: agpu serve"));
}

static void test_help_short_flag(void **state)
{
    assert_int_equal(load(ARGV("-h"), NO_ENV), 1);
    assert_non_null(strstr(help, "Usage: agpu serve"));
}

static void test_help_lists_every_option(void **state)
{
    assert_int_equal(load(ARGV("--help"), NO_ENV), 1);
    const char *expect[] = {"--listen HOST:PORT",   "--ollama URL",     "--gossip HOST:PORT",
                            "--peer HOST:PORT",     "--name NAME",      "--no-mdns",
                            "--config FILE",        "-v, --verbose",    "--max-body BYTES",
                            "--connect-timeout MS", "--threads N",      "--max-connections N",
                            "--origins LIST",       "-h, --help",       "[AGPU_LISTEN]",
                            "[AGPU_PEER]",          "[OLLAMA_ORIGINS]", "[AGPU_CONFIG]"};
    for (size_t i = 0; i < sizeof expect / sizeof expect[0]; i++)
        if (!strstr(help, expect[i]))
            fail_msg("help lacks '%s'", expect[i]);
}

static void test_help_after_other_flags(void **state)
{
    assert_int_equal(load(ARGV("--threads", "2", "--help"), NO_ENV), 1);
    assert_non_null(strstr(help, "Usage"));
}

static void test_help_with_bad_flag_is_error(void **state)
{
    assert_fails(ARGV("--help", "--bogus"), NO_ENV, "unknown option");
}

static void test_print_help_matches_load_help(void **state)
{
    static char direct[16384];
    FILE *out = fmemopen(direct, sizeof direct - 1, "w");
    assert_non_null(out);
    agpu_config_print_help(out);
    fclose(out);
    assert_int_equal(load(ARGV("--help"), NO_ENV), 1);
    assert_string_equal(direct, help);
}

/* ---- environment ---- */

static void test_env_agpu_variables(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_LISTEN=127.0.0.1:1", "AGPU_GOSSIP=[::]:2", "AGPU_NAME=envbox",
                            "AGPU_NO_MDNS=1", "AGPU_VERBOSE=true", "AGPU_MAX_BODY=1M",
                            "AGPU_CONNECT_TIMEOUT=50", "AGPU_THREADS=7", "AGPU_MAX_CONNECTIONS=99",
                            "AGPU_OLLAMA=h:5"));
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 1);
    assert_string_equal(cfg.gossip_host, "::");
    assert_int_equal(cfg.gossip_port, 2);
    assert_string_equal(cfg.name, "envbox");
    assert_true(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 1);
    assert_true(cfg.max_body == 1ULL << 20);
    assert_int_equal(cfg.connect_timeout_ms, 50);
    assert_int_equal(cfg.threads, 7);
    assert_int_equal(cfg.max_connections, 99);
    assert_string_equal(cfg.ollama, "http://h:5");
}

static void test_env_switch_false_values(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_NO_MDNS=off", "AGPU_VERBOSE="));
    assert_false(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 0);
}

static void test_env_switch_bad_value(void **state)
{
    assert_fails(NO_ARGS, ENVP("AGPU_NO_MDNS=perhaps"), "--no-mdns: 'perhaps'");
}

static void test_env_bad_value_names_flag(void **state)
{
    assert_fails(NO_ARGS, ENVP("AGPU_THREADS=0"), "--threads");
    assert_fails(NO_ARGS, ENVP("AGPU_LISTEN=nope"), "--listen: 'nope' is not HOST:PORT");
}

static void test_env_ollama_host(void **state)
{
    assert_ok(NO_ARGS, ENVP("OLLAMA_HOST=10.0.0.9"));
    assert_string_equal(cfg.ollama, "http://10.0.0.9:11434");
}

static void test_env_ollama_host_wildcard_is_loopback(void **state)
{
    assert_ok(NO_ARGS, ENVP("OLLAMA_HOST=0.0.0.0:11434"));
    assert_string_equal(cfg.ollama, "http://127.0.0.1:11434");
}

static void test_env_ollama_host_quoted(void **state)
{
    assert_ok(NO_ARGS, ENVP("OLLAMA_HOST=\"http://gpu.example\""));
    assert_string_equal(cfg.ollama, "http://gpu.example:80");
    assert_fails(NO_ARGS, ENVP("OLLAMA_HOST=\"https://gpu.example\""),
                 "OLLAMA_HOST: '\"https://gpu.example\"': agpu forwards plain HTTP");
}

static void test_env_ollama_host_empty_ignored(void **state)
{
    assert_ok(NO_ARGS, ENVP("OLLAMA_HOST="));
    assert_string_equal(cfg.ollama, "http://127.0.0.1:11434");
}

static void test_env_ollama_host_bad(void **state)
{
    assert_fails(NO_ARGS, ENVP("OLLAMA_HOST=ftp://x"), "OLLAMA_HOST");
}

static void test_env_agpu_ollama_beats_ollama_host(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_OLLAMA=h:1", "OLLAMA_HOST=g:2"));
    assert_string_equal(cfg.ollama, "http://h:1");
    assert_ok(NO_ARGS, ENVP("OLLAMA_HOST=g:2", "AGPU_OLLAMA=none"));
    assert_true(cfg.ollama_none);
    assert_string_equal(cfg.ollama, "");
}

static void test_flag_ollama_beats_ollama_host(void **state)
{
    assert_ok(ARGV("--ollama", "h:1"), ENVP("OLLAMA_HOST=g:2"));
    assert_string_equal(cfg.ollama, "http://h:1");
}

static void test_env_ollama_origins(void **state)
{
    assert_ok(NO_ARGS, ENVP("OLLAMA_ORIGINS=https://a.example,*"));
    assert_string_equal(cfg.origins, "https://a.example,*");
}

static void test_env_peer_comma_list(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_PEER=a:1,b:2,c:3"));
    assert_int_equal(cfg.peer_count, 3);
    assert_string_equal(cfg.peers[0], "a:1");
    assert_string_equal(cfg.peers[1], "b:2");
    assert_string_equal(cfg.peers[2], "c:3");
}

static void test_env_peer_list_spaces_and_empty_items(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_PEER= a:1 ,, b:2,"));
    assert_int_equal(cfg.peer_count, 2);
    assert_string_equal(cfg.peers[0], "a:1");
    assert_string_equal(cfg.peers[1], "b:2");
}

static void test_env_peer_single(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_PEER=[fd00::1]:11436"));
    assert_int_equal(cfg.peer_count, 1);
    assert_string_equal(cfg.peers[0], "[fd00::1]:11436");
}

static void test_env_peer_bad_item(void **state)
{
    assert_fails(NO_ARGS, ENVP("AGPU_PEER=a:1,oops"), "--peer: 'oops' is not HOST:PORT");
}

static void test_env_names_must_match_exactly(void **state)
{
    fake_cpus = 3;
    assert_ok(NO_ARGS, ENVP("AGPU_THREADSX=9", "AGPU_THREAD=9", "XAGPU_THREADS=9", "AGPU_THREADS",
                            "agpu_threads=9", "AGPU_PEERS=x"));
    assert_int_equal(cfg.threads, 3); /* the default from the fake CPU count */
    assert_int_equal(cfg.peer_count, 0);
}

static void test_env_first_duplicate_wins(void **state)
{
    /* getenv's rule: the first NAME= entry counts */
    assert_ok(NO_ARGS, ENVP("AGPU_THREADS=3", "AGPU_THREADS=4"));
    assert_int_equal(cfg.threads, 3);
}

/* ---- config file ---- */

static void test_file_settings(void **state)
{
    const char *path = config_file("listen = 127.0.0.1:9001\n"
                                   "ollama = http://10.1.1.1:11434\n"
                                   "gossip = 0.0.0.0:9002\n"
                                   "name = filebox\n"
                                   "threads = 4\n"
                                   "max-body = 2G\n"
                                   "connect-timeout = 250\n"
                                   "max-connections = 500\n"
                                   "origins = https://x.example\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 9001);
    assert_string_equal(cfg.ollama, "http://10.1.1.1:11434");
    assert_int_equal(cfg.gossip_port, 9002);
    assert_string_equal(cfg.name, "filebox");
    assert_int_equal(cfg.threads, 4);
    assert_true(cfg.max_body == 2ULL << 30);
    assert_int_equal(cfg.connect_timeout_ms, 250);
    assert_int_equal(cfg.max_connections, 500);
    assert_string_equal(cfg.origins, "https://x.example");
    assert_string_equal(cfg.config_file, path);
}

static void test_file_comments_blanks_and_spacing(void **state)
{
    const char *path = config_file("# agpu settings\n"
                                   "\n"
                                   "   # indented comment\n"
                                   "\t\n"
                                   "  threads=6  \n"
                                   "name\t=\t  spaced  \r\n"
                                   "# threads = 99\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_int_equal(cfg.threads, 6);
    assert_string_equal(cfg.name, "spaced");
}

static void test_file_last_line_without_newline(void **state)
{
    const char *path = config_file("threads = 2\nmax-connections = 77");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_int_equal(cfg.max_connections, 77);
}

static void test_file_equals_form_flag(void **state)
{
    const char *path = config_file("threads = 2\n");
    char arg[128];
    snprintf(arg, sizeof arg, "--config=%s", path);
    assert_ok(ARGV(arg), NO_ENV);
    assert_int_equal(cfg.threads, 2);
    assert_string_equal(cfg.config_file, path);
}

static void test_file_switch_without_value(void **state)
{
    const char *path = config_file("no-mdns\nverbose = no\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_true(cfg.no_mdns);
    assert_int_equal(cfg.verbose, 0);
}

static void test_file_value_keeps_later_equals(void **state)
{
    const char *path = config_file("origins = https://a.example/?k=v\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_string_equal(cfg.origins, "https://a.example/?k=v");
}

static void test_file_peer_lines_accumulate(void **state)
{
    const char *path = config_file("peer = a:1\npeer = b:2\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_int_equal(cfg.peer_count, 2);
    assert_string_equal(cfg.peers[0], "a:1");
    assert_string_equal(cfg.peers[1], "b:2");
}

static void test_file_ollama_none(void **state)
{
    const char *path = config_file("ollama = none\n");
    assert_ok(ARGV("--config", (char *)path), NO_ENV);
    assert_true(cfg.ollama_none);
    assert_string_equal(cfg.ollama, "");
}

static void test_file_unknown_key_names_line(void **state)
{
    const char *path = config_file("# comment\nthreads = 2\nbogus = 1\n");
    char want[128];
    snprintf(want, sizeof want, "%s:3: unknown setting 'bogus'", path);
    assert_fails(ARGV("--config", (char *)path), NO_ENV, want);
}

static void test_file_bad_value_names_line_and_flag(void **state)
{
    const char *path = config_file("\n\nthreads = lots\n");
    char want[128];
    snprintf(want, sizeof want, "%s:3: --threads: 'lots' is not 1..256", path);
    assert_fails(ARGV("--config", (char *)path), NO_ENV, want);
}

static void test_file_stops_at_first_error(void **state)
{
    const char *path = config_file("threads = 0\nbogus = 1\n");
    char want[128];
    snprintf(want, sizeof want, "%s:1:", path);
    assert_fails(ARGV("--config", (char *)path), NO_ENV, want);
}

static void test_file_may_not_name_config_or_help(void **state)
{
    const char *a = config_file("config = /etc/other.conf\n");
    assert_fails(ARGV("--config", (char *)a), NO_ENV, "unknown setting 'config'");
    const char *b = config_file("help\n");
    assert_fails(ARGV("--config", (char *)b), NO_ENV, "unknown setting 'help'");
}

static void test_file_short_names_are_not_keys(void **state)
{
    const char *path = config_file("v\n");
    assert_fails(ARGV("--config", (char *)path), NO_ENV, "unknown setting 'v'");
}

static void test_file_missing(void **state)
{
    assert_fails(ARGV("--config", "/nonexistent/agpu.conf"), NO_ENV,
                 "--config: cannot read /nonexistent/agpu.conf");
}

static void test_file_from_env_agpu_config(void **state)
{
    const char *path = config_file("threads = 3\n");
    char env[128];
    snprintf(env, sizeof env, "AGPU_CONFIG=%s", path);
    assert_ok(NO_ARGS, ENVP(env));
    assert_int_equal(cfg.threads, 3);
    assert_string_equal(cfg.config_file, path);
}

static void test_file_flag_beats_env_agpu_config(void **state)
{
    const char *env_file = config_file("threads = 3\n");
    const char *flag_file = config_file("threads = 5\n");
    char env[128];
    snprintf(env, sizeof env, "AGPU_CONFIG=%s", env_file);
    assert_ok(ARGV("--config", (char *)flag_file), ENVP(env));
    assert_int_equal(cfg.threads, 5);
    assert_string_equal(cfg.config_file, flag_file);
}

static void test_empty_agpu_config_reads_no_file(void **state)
{
    assert_ok(NO_ARGS, ENVP("AGPU_CONFIG="));
    assert_string_equal(cfg.config_file, "");
}

/* ---- precedence: file < env < flags ---- */

static void test_env_beats_file(void **state)
{
    const char *path = config_file("threads = 3\nname = fromfile\n");
    assert_ok(ARGV("--config", (char *)path), ENVP("AGPU_THREADS=5"));
    assert_int_equal(cfg.threads, 5);
    assert_string_equal(cfg.name, "fromfile");
}

static void test_flag_beats_env_and_file(void **state)
{
    const char *path = config_file("threads = 3\n");
    assert_ok(ARGV("--config", (char *)path, "--threads", "7"), ENVP("AGPU_THREADS=5"));
    assert_int_equal(cfg.threads, 7);
}

static void test_flag_beats_env(void **state)
{
    assert_ok(ARGV("--listen", "b:2"), ENVP("AGPU_LISTEN=a:1"));
    assert_string_equal(cfg.listen_host, "b");
}

static void test_flag_before_config_still_beats_file(void **state)
{
    const char *path = config_file("threads = 3\n");
    assert_ok(ARGV("--threads", "7", "--config", (char *)path), NO_ENV);
    assert_int_equal(cfg.threads, 7);
}

static void test_env_peers_replace_file_peers(void **state)
{
    const char *path = config_file("peer = a:1\npeer = b:2\n");
    assert_ok(ARGV("--config", (char *)path), ENVP("AGPU_PEER=c:3"));
    assert_int_equal(cfg.peer_count, 1);
    assert_string_equal(cfg.peers[0], "c:3");
}

static void test_flag_peers_replace_env_list(void **state)
{
    assert_ok(ARGV("--peer", "c:3", "--peer", "d:4"), ENVP("AGPU_PEER=a:1,b:2"));
    assert_int_equal(cfg.peer_count, 2);
    assert_string_equal(cfg.peers[0], "c:3");
    assert_string_equal(cfg.peers[1], "d:4");
}

static void test_flag_peers_replace_file_peers(void **state)
{
    const char *path = config_file("peer = a:1\n");
    assert_ok(ARGV("--config", (char *)path, "--peer", "b:2"), NO_ENV);
    assert_int_equal(cfg.peer_count, 1);
    assert_string_equal(cfg.peers[0], "b:2");
}

/* The header: ollama is "" exactly when ollama_none. A file's `ollama = none` must not be
 * half-undone by an OLLAMA_HOST meant for the local Ollama server. */
static void test_file_ollama_none_survives_ollama_host(void **state)
{
    const char *path = config_file("ollama = none\n");
    assert_ok(ARGV("--config", (char *)path), ENVP("OLLAMA_HOST=0.0.0.0"));
    assert_true(cfg.ollama_none == (cfg.ollama[0] == '\0'));
    assert_true(cfg.ollama_none);
}

/* OLLAMA_HOST is only the default of --ollama (its help says so): a file that names the
 * Ollama explicitly wins over it. */
static void test_file_ollama_beats_ollama_host_default(void **state)
{
    const char *path = config_file("ollama = http://10.0.0.5:11434\n");
    assert_ok(ARGV("--config", (char *)path), ENVP("OLLAMA_HOST=0.0.0.0"));
    assert_string_equal(cfg.ollama, "http://10.0.0.5:11434");
}

/* ---- the error buffer ---- */

static void test_error_truncated_to_error_size(void **state)
{
    char small[16];
    memset(small, '#', sizeof small);
    int rc = agpu_config_load(&cfg, 1, ARGV("--this-is-a-long-unknown-option"), NO_ENV, stdout,
                              small, 8);
    assert_int_equal(rc, -1);
    assert_int_equal(strlen(small), 7);
    for (size_t i = 8; i < sizeof small; i++)
        assert_int_equal(small[i], '#');
}

static void test_long_file_error_fits(void **state)
{
    /* a long bad value in a file: prefix and message are cut to fit, never overrun */
    char text[600] = "origins = x\nthreads = ";
    size_t len = strlen(text);
    memset(text + len, '9', 500);
    text[len + 500] = '\0';
    const char *path = config_file(text);
    assert_int_equal(load(ARGV("--config", (char *)path), NO_ENV), -1);
    assert_true(strlen(error) < sizeof error);
    assert_non_null(strstr(error, ":2: --threads: '999"));
}

#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(test_defaults),
        T(test_default_name_is_short_host_name),
        T(test_default_threads_one_per_cpu),
        T(test_default_threads_when_cpu_count_unknown),
        T(test_default_threads_on_many_cpus),
        T(test_null_envp_means_empty_environment),
        T(test_flag_listen),
        T(test_flag_equals_form),
        T(test_flag_equals_value_may_contain_equals),
        T(test_flag_gossip),
        T(test_flag_ollama_url),
        T(test_flag_ollama_host_port_and_wildcard),
        T(test_flag_ollama_none),
        T(test_flag_ollama_after_none_clears_none),
        T(test_flag_ollama_bad),
        T(test_flag_peer_repeatable),
        T(test_flag_peer_bad),
        T(test_flag_peer_limit),
        T(test_flag_name_bounds),
        T(test_flag_switches),
        T(test_flag_short_verbose),
        T(test_flag_switch_takes_bool_value),
        T(test_flag_switch_rejects_other_value),
        T(test_flag_switch_does_not_eat_next_argument),
        T(test_flag_max_body_sizes),
        T(test_flag_max_body_rejects),
        T(test_flag_connect_timeout_range),
        T(test_flag_threads_range),
        T(test_flag_max_connections_range),
        T(test_flag_listen_and_gossip_reject_bad),
        T(test_flag_origins),
        T(test_flag_later_wins),
        T(test_flag_missing_value),
        T(test_unknown_long_flag),
        T(test_unknown_short_flag),
        T(test_positional_argument_is_unknown),
        T(test_help_returns_1_and_prints),
        T(test_help_short_flag),
        T(test_help_lists_every_option),
        T(test_help_after_other_flags),
        T(test_help_with_bad_flag_is_error),
        T(test_print_help_matches_load_help),
        T(test_env_agpu_variables),
        T(test_env_switch_false_values),
        T(test_env_switch_bad_value),
        T(test_env_bad_value_names_flag),
        T(test_env_ollama_host),
        T(test_env_ollama_host_wildcard_is_loopback),
        T(test_env_ollama_host_quoted),
        T(test_env_ollama_host_empty_ignored),
        T(test_env_ollama_host_bad),
        T(test_env_agpu_ollama_beats_ollama_host),
        T(test_flag_ollama_beats_ollama_host),
        T(test_env_ollama_origins),
        T(test_env_peer_comma_list),
        T(test_env_peer_list_spaces_and_empty_items),
        T(test_env_peer_single),
        T(test_env_peer_bad_item),
        T(test_env_names_must_match_exactly),
        T(test_env_first_duplicate_wins),
        T(test_file_settings),
        T(test_file_comments_blanks_and_spacing),
        T(test_file_last_line_without_newline),
        T(test_file_equals_form_flag),
        T(test_file_switch_without_value),
        T(test_file_value_keeps_later_equals),
        T(test_file_peer_lines_accumulate),
        T(test_file_ollama_none),
        T(test_file_unknown_key_names_line),
        T(test_file_bad_value_names_line_and_flag),
        T(test_file_stops_at_first_error),
        T(test_file_may_not_name_config_or_help),
        T(test_file_short_names_are_not_keys),
        T(test_file_missing),
        T(test_file_from_env_agpu_config),
        T(test_file_flag_beats_env_agpu_config),
        T(test_empty_agpu_config_reads_no_file),
        T(test_env_beats_file),
        T(test_flag_beats_env_and_file),
        T(test_flag_beats_env),
        T(test_flag_before_config_still_beats_file),
        T(test_env_peers_replace_file_peers),
        T(test_flag_peers_replace_env_list),
        T(test_flag_peers_replace_file_peers),
        T(test_file_ollama_none_survives_ollama_host),
        T(test_file_ollama_beats_ollama_host_default),
        T(test_error_truncated_to_error_size),
        T(test_long_file_error_fits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
