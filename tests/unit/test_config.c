/* Unit tests of table-driven configuration: precedence of defaults, file,
 * environment and flags; every flag form; every error message; --help; and
 * the size, duration and host:port parsers. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config.h"
#include "error.h"
#include "log.h"
#include "poison.h"

struct cfg {
    char *api_address;
    struct hy_addr kds;
    int64_t workers;
    uint64_t max_conns;
    bool debug;
    int64_t timeout_ms;
    uint64_t cache;
    enum hy_log_level log_level;
    char *store_name;
    char *flag_only;
};

#define F(field) offsetof(struct cfg, field)
static const struct hy_option opts[] = {
    {"api-address", "HYPHA_TEST_API_ADDRESS", "apiAddress", HY_OPT_STRING, F(api_address),
     "127.0.0.1:5681", "address the HTTP API listens on"},
    {"kds-address", "HYPHA_TEST_KDS_ADDRESS", "kds.address", HY_OPT_ADDRESS, F(kds), "0.0.0.0:5685",
     "address the KDS server listens on"},
    {"workers", "HYPHA_TEST_WORKERS", "workers", HY_OPT_INT, F(workers), "2", "worker threads"},
    {"max-conns", "HYPHA_TEST_MAX_CONNS", "maxConns", HY_OPT_UINT, F(max_conns), "1000",
     "connection limit"},
    {"debug", "HYPHA_TEST_DEBUG", "debug", HY_OPT_BOOL, F(debug), "false", "debug endpoints"},
    {"timeout", "HYPHA_TEST_TIMEOUT", "timeout", HY_OPT_DURATION, F(timeout_ms), "30s",
     "request timeout"},
    {"cache-size", "HYPHA_TEST_CACHE_SIZE", "store.cacheSize", HY_OPT_SIZE, F(cache), "64Mi",
     "store cache"},
    {"log-level", "HYPHA_TEST_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, F(log_level), "info",
     "debug, info, warn or error"},
    {"store-name", NULL, "store.name", HY_OPT_STRING, F(store_name), "", "store name"},
    {"flag-only", NULL, NULL, HY_OPT_STRING, F(flag_only), NULL, "only as a flag"},
};
#define NOPTS (sizeof(opts) / sizeof(opts[0]))

static const struct hy_config_spec spec = {
    .program = "hypha-test",
    .summary = "A program to test the option table.",
    .opts = opts,
    .nopts = NOPTS,
    .config_env = "HYPHA_TEST_CONFIG",
    .args = "[FILE...]",
};

static int clear_env(void **state)
{
    (void)state;
    unsetenv("HYPHA_TEST_CONFIG");
    for (size_t i = 0; i < NOPTS; i++)
        if (opts[i].env)
            unsetenv(opts[i].env);
    return 0;
}

/* A temporary file holding text; the caller unlinks path. */
static void write_temp(const char *text, char path[64])
{
    snprintf(path, 64, "/tmp/hypha-test-config-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    size_t len = strlen(text);
    assert_int_equal(write(fd, text, len), (ssize_t)len);
    close(fd);
}

/* Parses a NULL-terminated argument list (argv[0] added) into cfg. */
static int parse_spec(const struct hy_config_spec *sp, struct cfg *c, struct hy_config_result *res,
                      char **argv_out, const char *arg, va_list ap)
{
    char *argv[32];
    int argc = 0;
    argv[argc++] = (char *)"hypha-test";
    for (; arg && argc < 31; arg = va_arg(ap, const char *))
        argv[argc++] = (char *)arg;
    argv[argc] = NULL;
    int rc = hy_config_parse(sp, c, argc, argv, res);
    if (argv_out)
        memcpy(argv_out, argv, (size_t)(argc + 1) * sizeof(*argv));
    /* res->args points into argv: rebase it onto the copy */
    if (argv_out && res->args)
        res->args = argv_out + (res->args - argv);
    return rc;
}

static int parse(struct cfg *c, struct hy_config_result *res, char **argv_out, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    int rc = parse_spec(&spec, c, res, argv_out, arg, ap);
    va_end(ap);
    return rc;
}

static void expect_error_va(int code, const char *want, const char *arg, va_list ap)
{
    struct cfg c = {0};
    struct hy_config_result res;
    int rc = parse_spec(&spec, &c, &res, NULL, arg, ap);
    hy_config_fini(&spec, &c);
    if (rc != code || strcmp(res.error, want) != 0)
        fail_msg("rc %d, error\n  %s\nwanted rc %d,\n  %s", rc, res.error, code, want);
}

/* Parses args that must fail with HY_EINVAL and exactly want. */
static void expect_error(const char *want, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    expect_error_va(HY_EINVAL, want, arg, ap);
    va_end(ap);
}

/* The same with another return code. */
static void expect_error_code(int code, const char *want, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    expect_error_va(code, want, arg, ap);
    va_end(ap);
}

static void test_defaults(void **state)
{
    (void)state;
    struct cfg c = {0};
    struct hy_config_result res;
    assert_int_equal(parse(&c, &res, NULL, NULL), 0);
    assert_string_equal(c.api_address, "127.0.0.1:5681");
    assert_int_equal(c.kds.kind, HY_ADDR_IPV4);
    assert_string_equal(c.kds.host, "0.0.0.0");
    assert_int_equal(c.kds.port, 5685);
    assert_int_equal(c.workers, 2);
    assert_int_equal(c.max_conns, 1000);
    assert_false(c.debug);
    assert_int_equal(c.timeout_ms, 30000);
    assert_int_equal(c.cache, 64u << 20);
    assert_int_equal(c.log_level, HY_LOG_INFO);
    assert_string_equal(c.store_name, "");
    assert_null(c.flag_only);
    assert_int_equal(res.nargs, 0);
    assert_false(res.help);
    assert_false(res.version);
    assert_null(res.config_file);
    assert_string_equal(res.error, "");
    hy_config_fini(&spec, &c);
    assert_null(c.api_address);
    assert_null(c.store_name);
}

static void test_precedence(void **state)
{
    (void)state;
    char path[64], other[64];
    write_temp("# every key, some overridden later\n"
               "apiAddress: 10.0.0.1:5681\n"
               "workers: 3\n"
               "maxConns: 5\n"
               "timeout: 1m\n"
               "logLevel: debug\n"
               "debug: true\n"
               "store:\n"
               "  cacheSize: 1Gi\n"
               "  name: file-store\n"
               "kds:\n"
               "  address: \"[::1]:7000\"\n",
               path);
    write_temp("workers: 99\n", other);
    setenv("HYPHA_TEST_WORKERS", "4", 1);
    setenv("HYPHA_TEST_TIMEOUT", "2m", 1);
    setenv("HYPHA_TEST_API_ADDRESS", "10.0.0.2:5681", 1);
    setenv("HYPHA_TEST_CACHE_SIZE", "", 1); /* empty counts as unset */

    struct cfg c = {0};
    struct hy_config_result res;
    assert_int_equal(parse(&c, &res, NULL, "--config", path, "--workers", "5", NULL), 0);
    assert_string_equal(res.config_file, path);
    assert_int_equal(c.workers, 5);                      /* flag > env > file > default */
    assert_int_equal(c.timeout_ms, 120000);              /* env > file */
    assert_string_equal(c.api_address, "10.0.0.2:5681"); /* env > file, string replaced */
    assert_int_equal(c.max_conns, 5);                    /* file > default */
    assert_int_equal(c.log_level, HY_LOG_DEBUG);
    assert_true(c.debug);
    assert_int_equal(c.cache, 1u << 30);
    assert_string_equal(c.store_name, "file-store");
    assert_int_equal(c.kds.kind, HY_ADDR_IPV6);
    assert_string_equal(c.kds.host, "::1");
    assert_int_equal(c.kds.port, 7000);
    hy_config_fini(&spec, &c);

    /* the file named by the program's variable; --config overrides it */
    unsetenv("HYPHA_TEST_WORKERS");
    setenv("HYPHA_TEST_CONFIG", path, 1);
    memset(&c, 0, sizeof(c));
    assert_int_equal(parse(&c, &res, NULL, NULL), 0);
    assert_string_equal(res.config_file, path);
    assert_int_equal(c.workers, 3);
    hy_config_fini(&spec, &c);
    memset(&c, 0, sizeof(c));
    assert_int_equal(parse(&c, &res, NULL, "--config=", NULL), HY_EINVAL);
    assert_string_equal(res.error, "--config: empty file name");
    hy_config_fini(&spec, &c);
    assert_int_equal(parse(&c, &res, NULL, "--config", other, NULL), 0);
    assert_string_equal(res.config_file, other);
    assert_int_equal(c.workers, 99);
    assert_int_equal(c.max_conns, 1000);
    /* parsing again into the same struct replaces (and frees) its strings */
    assert_int_equal(parse(&c, &res, NULL, "--flag-only", "a", "--flag-only", "b", NULL), 0);
    assert_string_equal(c.flag_only, "b");
    hy_config_fini(&spec, &c);
    unlink(path);
    unlink(other);
}

static void test_flag_forms(void **state)
{
    (void)state;
    struct cfg c = {0};
    struct hy_config_result res;
    char *argv[32];
    assert_int_equal(parse(&c, &res, argv, "one", "--workers=-7", "--debug", "two", "--timeout",
                           "1m30s", "--max-conns=0", "--api-address=", "-", "--cache-size", "512",
                           "--", "--not-a-flag", "-x", NULL),
                     0);
    assert_int_equal(c.workers, -7);
    assert_true(c.debug);
    assert_int_equal(c.timeout_ms, 90000);
    assert_int_equal(c.max_conns, 0);
    assert_string_equal(c.api_address, "");
    assert_int_equal(c.cache, 512);
    /* positional arguments, in order, moved after the flags */
    assert_int_equal(res.nargs, 5);
    assert_string_equal(res.args[0], "one");
    assert_string_equal(res.args[1], "two");
    assert_string_equal(res.args[2], "-");
    assert_string_equal(res.args[3], "--not-a-flag");
    assert_string_equal(res.args[4], "-x");
    assert_null(res.args[5]);
    assert_string_equal(argv[1], "--workers=-7");
    assert_string_equal(argv[2], "--debug");
    hy_config_fini(&spec, &c);

    /* bool values, and a value that starts with a single dash */
    const char *yes[] = {"--debug=true", "--debug=yes", "--debug=ON", "--debug=1", "--debug"};
    const char *no[] = {"--debug=false", "--debug=no", "--debug=off", "--debug=0", "--debug=False"};
    for (size_t i = 0; i < 5; i++) {
        memset(&c, 0, sizeof(c));
        assert_int_equal(parse(&c, &res, NULL, yes[i], NULL), 0);
        assert_true(c.debug);
        hy_config_fini(&spec, &c);
        memset(&c, 0, sizeof(c));
        setenv("HYPHA_TEST_DEBUG", "true", 1);
        assert_int_equal(parse(&c, &res, NULL, no[i], NULL), 0);
        assert_false(c.debug);
        unsetenv("HYPHA_TEST_DEBUG");
        hy_config_fini(&spec, &c);
    }
    memset(&c, 0, sizeof(c));
    assert_int_equal(parse(&c, &res, NULL, "--workers", "-3", NULL), 0);
    assert_int_equal(c.workers, -3);
    hy_config_fini(&spec, &c);
}

static int parse_with(const struct hy_config_spec *sp, struct cfg *c, struct hy_config_result *res,
                      char **argv_out, const char *arg, ...)
{
    va_list ap;
    va_start(ap, arg);
    int rc = parse_spec(sp, c, res, argv_out, arg, ap);
    va_end(ap);
    return rc;
}

static void test_subcommands(void **state)
{
    (void)state;
    struct hy_config_spec sub = spec;
    sub.stop_at_args = true;
    sub.args = "COMMAND [ARGS...]";
    struct cfg c = {0};
    struct hy_config_result res;
    char *argv[32];
    /* the first argument ends option parsing: the rest is the command's */
    assert_int_equal(parse_with(&sub, &c, &res, argv, "--workers", "3", "get", "meshes", "--output",
                                "yaml", "--help", NULL),
                     0);
    assert_false(res.help); /* the command's own --help */
    assert_int_equal(c.workers, 3);
    assert_int_equal(res.nargs, 5);
    assert_string_equal(res.args[0], "get");
    assert_string_equal(res.args[2], "--output");
    assert_string_equal(res.args[4], "--help");
    assert_null(res.args[5]);
    assert_ptr_equal(res.args, &argv[3]); /* argv is left in order */
    hy_config_fini(&sub, &c);
    /* "--" ends the options too, and is not passed on */
    assert_int_equal(parse_with(&sub, &c, &res, argv, "--debug", "--", "--run", NULL), 0);
    assert_true(c.debug);
    assert_int_equal(res.nargs, 1);
    assert_string_equal(res.args[0], "--run");
    hy_config_fini(&sub, &c);
    /* no command at all */
    assert_int_equal(parse_with(&sub, &c, &res, argv, "--debug", NULL), 0);
    assert_int_equal(res.nargs, 0);
    assert_null(res.args[0]);
    hy_config_fini(&sub, &c);
}

/* `PROGRAM run`: the one command of hypha-dp and hypha-ingress. */
static void test_run_command(void **state)
{
    (void)state;
    struct hy_config_spec run = spec;
    run.args = "run";
    struct cfg c = {0};
    char p[] = "hypha-test", r[] = "run", x[] = "extra", v[] = "--version", w[] = "--workers",
         three[] = "3", go[] = "go";
    char *ok[] = {p, w, three, r, NULL};
    assert_int_equal(hy_config_run_command(&run, &c, 4, ok, "run", "..."), -1); /* go on */
    assert_int_equal(c.workers, 3);
    hy_config_fini(&run, &c);
    char *none[] = {p, NULL}, *other[] = {p, go, NULL}, *more[] = {p, r, x, NULL};
    char *version[] = {p, v, NULL};
    assert_int_equal(hy_config_run_command(&run, &c, 1, none, "run", "..."), 2);
    assert_int_equal(hy_config_run_command(&run, &c, 2, other, "run", "..."), 2);
    assert_int_equal(hy_config_run_command(&run, &c, 3, more, "run", "..."), 2);
    assert_int_equal(hy_config_run_command(&run, &c, 2, version, "run", "..."), 0);
}

static void test_help_and_version(void **state)
{
    (void)state;
    struct cfg c = {0};
    struct hy_config_result res;
    /* --help wins over mistakes made before it; nothing is applied */
    assert_int_equal(parse(&c, &res, NULL, "--bogus", "--workers", "x", "--help", NULL), 0);
    assert_true(res.help);
    assert_string_equal(res.error, "");
    assert_null(c.api_address);
    assert_int_equal(parse(&c, &res, NULL, "-h", NULL), 0);
    assert_true(res.help);
    assert_int_equal(parse(&c, &res, NULL, "--version", NULL), 0);
    assert_true(res.version);
    assert_false(res.help);
    /* after "--" it is an argument */
    assert_int_equal(parse(&c, &res, NULL, "--", "--help", NULL), 0);
    assert_false(res.help);
    assert_int_equal(res.nargs, 1);
    hy_config_fini(&spec, &c);

    struct hy_buf b = {0};
    assert_int_equal(hy_config_usage(&spec, &b), 0);
    assert_true(strncmp(b.data,
                        "Usage: hypha-test [OPTIONS] [FILE...]\n"
                        "A program to test the option table.\n",
                        strlen("Usage: hypha-test [OPTIONS] [FILE...]\n"
                               "A program to test the option table.\n")) == 0);
    for (size_t i = 0; i < NOPTS; i++) {
        char flag[64];
        snprintf(flag, sizeof(flag), "  --%s", opts[i].name);
        const char *line = strstr(b.data, flag);
        assert_non_null(line);
        const char *eol = strchr(line, '\n');
        char row[512];
        snprintf(row, sizeof(row), "%.*s", (int)(eol - line), line);
        if (opts[i].env)
            assert_non_null(strstr(row, opts[i].env));
        if (opts[i].key)
            assert_non_null(strstr(row, opts[i].key));
        if (opts[i].def && opts[i].def[0])
            assert_non_null(strstr(row, opts[i].def));
        assert_non_null(strstr(row, opts[i].help));
        assert_true(row[strlen(row) - 1] != ' ');
    }
    assert_non_null(strstr(b.data, "  --config FILE "));
    assert_non_null(strstr(b.data, "HYPHA_TEST_CONFIG"));
    assert_non_null(strstr(b.data, "  --help, -h "));
    assert_non_null(strstr(b.data, "  --version "));
    assert_non_null(strstr(b.data, "--kds-address HOST:PORT"));
    assert_non_null(strstr(b.data, "--timeout DURATION"));
    /* columns line up: every row has its environment column at the same place */
    const char *head = strstr(b.data, "  FLAG ");
    assert_non_null(head);
    size_t env_col = (size_t)(strstr(head, "ENVIRONMENT") - head);
    const char *row = strstr(b.data, "  --workers");
    assert_int_equal((size_t)(strstr(row, "HYPHA_TEST_WORKERS") - row), env_col);
    row = strstr(b.data, "  --kds-address");
    assert_int_equal((size_t)(strstr(row, "HYPHA_TEST_KDS_ADDRESS") - row), env_col);
    hy_buf_fini(&b);
}

static void test_flag_errors(void **state)
{
    (void)state;
    expect_error("unknown flag \"--api-adress\"; did you mean --api-address?", "--api-adress", "x",
                 NULL);
    expect_error("unknown flag \"--Workers\"; did you mean --workers?", "--Workers=1", NULL);
    expect_error("unknown flag \"--confgi\"; did you mean --config?", "--confgi", "f", NULL);
    expect_error("unknown flag \"--zzzzzzzz\"", "--zzzzzzzz", NULL);
    expect_error("unknown flag \"-w\": flags are spelled --name", "-w", "3", NULL);
    expect_error("--workers: missing value", "--workers", NULL);
    expect_error("--workers: missing value", "--workers", "--debug", NULL);
    expect_error("--config: missing value", "--config", NULL);
    expect_error("--help takes no value", "--help=yes", NULL);
    /* the first mistake is reported */
    expect_error("unknown flag \"--one\"", "--one", "--two", NULL);
    expect_error("--workers: \"abc\" is not an integer", "--workers", "abc", NULL);
    expect_error("--workers: \"12x\" is not an integer", "--workers=12x", NULL);
    expect_error("--workers: \"\" is not an integer", "--workers=", NULL);
    expect_error("--workers: \"99999999999999999999\" is out of range", "--workers",
                 "99999999999999999999", NULL);
    expect_error("--max-conns: \"-1\" is not a non-negative integer", "--max-conns=-1", NULL);
    expect_error("--max-conns: \"18446744073709551616\" is out of range", "--max-conns",
                 "18446744073709551616", NULL);
    expect_error("--debug: \"maybe\" is not a boolean (true or false)", "--debug=maybe", NULL);
    expect_error("--timeout: \"30\" is not a duration (e.g. 500ms, 30s, 5m, 1h30m, 1d)",
                 "--timeout", "30", NULL);
    expect_error("--timeout: \"1500us\" is not a whole number of milliseconds", "--timeout",
                 "1500us", NULL);
    expect_error("--cache-size: \"1.5Gi\" is not a size (bytes, or with a suffix K, M, G, T, "
                 "Ki, Mi, Gi or Ti, e.g. 64Mi)",
                 "--cache-size", "1.5Gi", NULL);
    expect_error("--log-level: \"loud\" is not a log level (debug, info, warn or error)",
                 "--log-level", "loud", NULL);
    expect_error("--kds-address: \"localhost\" has no port: write host:port, e.g. "
                 "localhost:5681",
                 "--kds-address", "localhost", NULL);
}

static void test_unexpected_args(void **state)
{
    (void)state;
    struct hy_config_spec none = spec;
    none.args = NULL;
    struct cfg c = {0};
    struct hy_config_result res;
    char *argv[] = {(char *)"hypha-test", (char *)"--debug", (char *)"extra", NULL};
    assert_int_equal(hy_config_parse(&none, &c, 3, argv, &res), HY_EINVAL);
    assert_string_equal(res.error,
                        "unexpected argument \"extra\": hypha-test takes only flags (see --help)");
    hy_config_fini(&none, &c);
}

static void test_env_errors(void **state)
{
    (void)state;
    setenv("HYPHA_TEST_WORKERS", "many", 1);
    expect_error("HYPHA_TEST_WORKERS: \"many\" is not an integer", NULL);
    /* a flag does not hide a bad variable: the variable is read first */
    expect_error("HYPHA_TEST_WORKERS: \"many\" is not an integer", "--workers", "1", NULL);
    unsetenv("HYPHA_TEST_WORKERS");
    setenv("HYPHA_TEST_LOG_LEVEL", "verbose", 1);
    expect_error("HYPHA_TEST_LOG_LEVEL: \"verbose\" is not a log level (debug, info, warn or "
                 "error)",
                 NULL);
    unsetenv("HYPHA_TEST_LOG_LEVEL");
    setenv("HYPHA_TEST_CONFIG", "/nonexistent/hypha.yaml", 1);
    expect_error_code(-ENOENT,
                      "HYPHA_TEST_CONFIG: cannot read \"/nonexistent/hypha.yaml\": No such file or "
                      "directory",
                      NULL);
    unsetenv("HYPHA_TEST_CONFIG");
    expect_error_code(-ENOENT,
                      "--config: cannot read \"/nonexistent/x.yaml\": No such file or directory",
                      "--config", "/nonexistent/x.yaml", NULL);
}

/* Writes text to a file, parses with --config and expects want, where "F"
 * stands for the file's name. */
static void expect_file_error(const char *text, const char *want)
{
    char path[64], expected[1024];
    write_temp(text, path);
    snprintf(expected, sizeof(expected), want, path);
    expect_error(expected, "--config", path, NULL);
    unlink(path);
}

static void test_file_errors(void **state)
{
    (void)state;
    expect_file_error("workers: 2\napiAdress: x\n",
                      "%s:2:1: unknown key \"apiAdress\"; did you mean apiAddress?");
    expect_file_error("api-address: x\n",
                      "%s:1:1: unknown key \"api-address\"; did you mean apiAddress?");
    expect_file_error("HYPHA_TEST_WORKERS: 1\n",
                      "%s:1:1: unknown key \"HYPHA_TEST_WORKERS\"; did you mean workers?");
    expect_file_error("store:\n  nmae: x\n",
                      "%s:2:3: unknown key \"store.nmae\"; did you mean store.name?");
    expect_file_error("zzzzzzzzzz: 1\n", "%s:1:1: unknown key \"zzzzzzzzzz\"");
    expect_file_error("store: 5\n", "%s:1:8: store: expected a mapping of settings");
    expect_file_error("workers: abc\n", "%s:1:10: workers: \"abc\" is not an integer");
    expect_file_error("store:\n  cacheSize: lots\n",
                      "%s:2:14: store.cacheSize: \"lots\" is not a size (bytes, or with a suffix "
                      "K, M, G, T, Ki, Mi, Gi or Ti, e.g. 64Mi)");
    expect_file_error("workers: 1\nworkers: 2\n", "%s:2:1: workers is set twice (first on line 1)");
    expect_file_error("workers: [1, 2]\n", "%s:1:10: workers: expected a single value, not a list");
    expect_file_error("workers:\n  a: 1\n",
                      "%s:2:3: workers: expected a single value, not a mapping");
    expect_file_error("- workers\n", "%s:1:1: expected a mapping of settings (key: value)");
    expect_file_error("workers: 1\n---\nworkers: 2\n", "%s:3:1: expected one YAML document");
    expect_file_error("workers: [1\n",
                      "%s:2:1: invalid YAML: did not find expected ',' or ']' while parsing a "
                      "flow sequence");
    expect_file_error("[1]: 2\n", "%s:1:1: keys must be plain names");
    expect_file_error("kds:\n  address: \"[::1]\"\n",
                      "%s:2:12: kds.address: \"[::1]\" has no port: write [host]:port, e.g. "
                      "[::1]:5681");
}

static void test_file_quiet_forms(void **state)
{
    (void)state;
    char path[64];
    struct cfg c = {0};
    struct hy_config_result res;
    /* empty file, null values and empty sections change nothing */
    const char *texts[] = {"", "# nothing\n", "~\n", "workers: ~\nstore:\napiAddress: null\n"};
    for (size_t i = 0; i < 4; i++) {
        write_temp(texts[i], path);
        memset(&c, 0, sizeof(c));
        assert_int_equal(parse(&c, &res, NULL, "--config", path, NULL), 0);
        assert_int_equal(c.workers, 2);
        assert_string_equal(c.api_address, "127.0.0.1:5681");
        hy_config_fini(&spec, &c);
        unlink(path);
    }
    /* quoted and JSON forms */
    write_temp("{\"workers\": \"8\", \"store\": {\"name\": \"\"}, \"debug\": \"yes\"}\n", path);
    memset(&c, 0, sizeof(c));
    assert_int_equal(parse(&c, &res, NULL, "--config", path, NULL), 0);
    assert_int_equal(c.workers, 8);
    assert_true(c.debug);
    assert_string_equal(c.store_name, "");
    hy_config_fini(&spec, &c);
    unlink(path);
}

static void test_table_errors(void **state)
{
    (void)state;
    struct cfg c = {0};
    struct hy_config_result res;
    char *argv[] = {(char *)"p", NULL};
    struct hy_option bad[2] = {opts[2], opts[3]};
    struct hy_config_spec sp = {.program = "p", .opts = bad, .nopts = 2};

    bad[1].name = "workers";
    assert_int_equal(hy_config_parse(&sp, &c, 1, argv, &res), HY_EINVAL);
    assert_string_equal(res.error,
                        "option table: --workers and --workers share a flag, variable or key");
    bad[1] = opts[3];
    bad[1].env = "HYPHA_TEST_WORKERS";
    assert_int_equal(hy_config_parse(&sp, &c, 1, argv, &res), HY_EINVAL);
    assert_string_equal(res.error,
                        "option table: --workers and --max-conns share a flag, variable or key");
    bad[1] = opts[3];
    bad[1].name = "help";
    assert_int_equal(hy_config_parse(&sp, &c, 1, argv, &res), HY_EINVAL);
    assert_string_equal(res.error, "option table: --help is built in");
    bad[1].name = "--dashed";
    assert_int_equal(hy_config_parse(&sp, &c, 1, argv, &res), HY_EINVAL);
    assert_string_equal(res.error, "option table: row 1 has no usable flag name");
    bad[1] = opts[3];
    bad[1].def = "lots";
    assert_int_equal(hy_config_parse(&sp, &c, 1, argv, &res), HY_EINVAL);
    assert_string_equal(res.error, "default of --max-conns: \"lots\" is not an integer");
    hy_config_fini(&sp, &c);
}

static void test_size_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        uint64_t bytes;
    } ok[] = {
        {"0", 0},
        {"512", 512},
        {"64K", 64000},
        {"16M", 16000000},
        {"1G", 1000000000},
        {"2T", 2000000000000ULL},
        {"1Ki", 1024},
        {"16Mi", 16u << 20},
        {"1Gi", 1u << 30},
        {"1Ti", 1ULL << 40},
        {"18446744073709551615", UINT64_MAX},
        {"16777215Ti", 16777215ULL << 40},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        uint64_t b = 1;
        if (!hy_size_parse(ok[i].text, &b))
            fail_msg("%s rejected", ok[i].text);
        assert_int_equal(b, ok[i].bytes);
    }
    static const char *const bad[] = {"",   "K",          "-1",   "1.5G", "1 G",
                                      "1g", "1KB",        "1Kib", "1E",   "18446744073709551616",
                                      "1Z", "16777216Ti", " 1",   "1 ",   NULL};
    uint64_t b;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        if (hy_size_parse(bad[i], &b))
            fail_msg("\"%s\" accepted", bad[i] ? bad[i] : "(null)");
}

static void test_duration_option(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        int64_t ms;
    } ok[] = {{"0", 0},        {"500ms", 500},        {"1s", 1000},   {"1m30s", 90000},
              {"2h", 7200000}, {"1d", 86400000},      {"1.5s", 1500}, {"2000us", 2},
              {"0s", 0},       {"10y", 315360000000}, {"250ms", 250}, {"1h1m1s1ms", 3661001}};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct cfg c = {0};
        struct hy_config_result res;
        char arg[64];
        snprintf(arg, sizeof(arg), "--timeout=%s", ok[i].text);
        if (parse(&c, &res, NULL, arg, NULL) != 0)
            fail_msg("%s: %s", arg, res.error);
        assert_int_equal(c.timeout_ms, ok[i].ms);
        hy_config_fini(&spec, &c);
    }
    expect_error("--timeout: \"-1s\" is not a duration (e.g. 500ms, 30s, 5m, 1h30m, 1d)",
                 "--timeout=-1s", NULL);
    expect_error("--timeout: \"5 s\" is not a duration (e.g. 500ms, 30s, 5m, 1h30m, 1d)",
                 "--timeout=5 s", NULL);
    expect_error("--timeout: \"1ns\" is not a whole number of milliseconds", "--timeout=1ns", NULL);
}

static void test_addr_parse(void **state)
{
    (void)state;
    static const struct {
        const char *text;
        enum hy_addr_kind kind;
        const char *host;
        uint16_t port;
        const char *formatted;
    } ok[] = {
        {"127.0.0.1:5681", HY_ADDR_IPV4, "127.0.0.1", 5681, "127.0.0.1:5681"},
        {"0.0.0.0:0", HY_ADDR_IPV4, "0.0.0.0", 0, "0.0.0.0:0"},
        {"[::1]:5681", HY_ADDR_IPV6, "::1", 5681, "[::1]:5681"},
        {"[::]:65535", HY_ADDR_IPV6, "::", 65535, "[::]:65535"},
        {"[fe80::1%eth0]:80", HY_ADDR_IPV6, "fe80::1%eth0", 80, "[fe80::1%eth0]:80"},
        {"[2001:db8::ff00:42:8329]:443", HY_ADDR_IPV6, "2001:db8::ff00:42:8329", 443,
         "[2001:db8::ff00:42:8329]:443"},
        {"localhost:8080", HY_ADDR_NAME, "localhost", 8080, "localhost:8080"},
        {"global-cp.hypha-system.svc.cluster.local.:5685", HY_ADDR_NAME,
         "global-cp.hypha-system.svc.cluster.local.", 5685,
         "global-cp.hypha-system.svc.cluster.local.:5685"},
        {"zone_1:1", HY_ADDR_NAME, "zone_1", 1, "zone_1:1"},
        {"1.2.3.4.nip.io:80", HY_ADDR_NAME, "1.2.3.4.nip.io", 80, "1.2.3.4.nip.io:80"},
        {":5681", HY_ADDR_ANY, "", 5681, ":5681"},
        {":0", HY_ADDR_ANY, "", 0, ":0"},
        {"host:00080", HY_ADDR_NAME, "host", 80, "host:80"},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct hy_addr a;
        char err[256] = "", buf[300];
        if (hy_addr_parse(ok[i].text, &a, err, sizeof(err)) != 0)
            fail_msg("%s: %s", ok[i].text, err);
        assert_int_equal(a.kind, ok[i].kind);
        assert_string_equal(a.host, ok[i].host);
        assert_int_equal(a.port, ok[i].port);
        assert_string_equal(hy_addr_format(&a, buf, sizeof(buf)), ok[i].formatted);
    }
    static const struct {
        const char *text, *err;
    } bad[] = {
        {"", "empty address: write host:port, e.g. 127.0.0.1:5681"},
        {NULL, "empty address: write host:port, e.g. 127.0.0.1:5681"},
        {"127.0.0.1", "\"127.0.0.1\" has no port: write host:port, e.g. 127.0.0.1:5681"},
        {"localhost:", "\"localhost:\" has no port: write host:port, e.g. 127.0.0.1:5681"},
        {"host:http", "\"host:http\": port \"http\" is not a number from 0 to 65535"},
        {"host:65536", "\"host:65536\": port \"65536\" is not a number from 0 to 65535"},
        {"host:123456", "\"host:123456\": port \"123456\" is not a number from 0 to 65535"},
        {"host:-1", "\"host:-1\": port \"-1\" is not a number from 0 to 65535"},
        {"host: 80", "\"host: 80\": port \" 80\" is not a number from 0 to 65535"},
        {"::1:5681", "\"::1:5681\": put IPv6 addresses in brackets, e.g. [::1]:5681"},
        {"[::1]", "\"[::1]\" has no port: write [host]:port, e.g. [::1]:5681"},
        {"[::1]5681", "\"[::1]5681\" has no port: write [host]:port, e.g. [::1]:5681"},
        {"[::1:5681", "\"[::1:5681\": no ']' after the IPv6 address"},
        {"[]:80", "\"[]:80\": \"\" is not an IPv6 address"},
        {"[1.2.3.4]:80", "\"[1.2.3.4]:80\": \"1.2.3.4\" is not an IPv6 address"},
        {"[fe80::1%]:80", "\"[fe80::1%]:80\": empty IPv6 zone after '%'"},
        {"300.1.1.1:80", "\"300.1.1.1:80\": \"300.1.1.1\" is not an IPv4 address"},
        {"1.2.3:80", "\"1.2.3:80\": \"1.2.3\" is not an IPv4 address"},
        {"bad host:80", "\"bad host:80\": \"bad host\" is not a valid host name"},
        {"-lead:80", "\"-lead:80\": \"-lead\" is not a valid host name"},
        {"trail-.x:80", "\"trail-.x:80\": \"trail-.x\" is not a valid host name"},
        {"a..b:80", "\"a..b:80\": \"a..b\" is not a valid host name"},
        {".a:80", "\".a:80\": \".a\" is not a valid host name"},
        {"x-:80", "\"x-:80\": \"x-\" is not a valid host name"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct hy_addr a = {.port = 7};
        char err[256] = "";
        assert_int_equal(hy_addr_parse(bad[i].text, &a, err, sizeof(err)), HY_EINVAL);
        if (strcmp(err, bad[i].err) != 0)
            fail_msg("%s:\n  got  %s\n  want %s", bad[i].text ? bad[i].text : "(null)", err,
                     bad[i].err);
        assert_int_equal(a.port, 7); /* untouched on failure */
    }
    char long_label[80], long_name[300];
    memset(long_label, 'a', 64);
    snprintf(long_label + 64, sizeof(long_label) - 64, ":80");
    struct hy_addr a;
    assert_int_equal(hy_addr_parse(long_label, &a, NULL, 0), HY_EINVAL);
    memset(long_name, 'a', 260);
    snprintf(long_name + 260, sizeof(long_name) - 260, ":80");
    char err[256];
    assert_int_equal(hy_addr_parse(long_name, &a, err, sizeof(err)), HY_EINVAL);
    assert_non_null(strstr(err, "the host is too long"));
}

/* A list option: comma-separated values, repeated flags that add up, a
 * YAML list or a scalar in the file, and each source replacing the lower
 * one's list. */
struct list_cfg {
    struct hy_strings vars;
    char *name;
};

static const struct hy_option list_opts[] = {
    {"var", "HYPHA_TEST_VAR", "vars", HY_OPT_STRINGS, offsetof(struct list_cfg, vars), NULL,
     "NAME=VALUE, repeatable"},
    {"name", NULL, NULL, HY_OPT_STRING, offsetof(struct list_cfg, name), NULL, "a name"},
};

static const struct hy_config_spec list_spec = {
    .program = "hypha-test",
    .opts = list_opts,
    .nopts = 2,
    .config_env = "HYPHA_TEST_CONFIG",
};

static int parse_list(struct list_cfg *c, struct hy_config_result *res, const char *arg, ...)
{
    char *argv[32];
    int argc = 0;
    va_list ap;
    va_start(ap, arg);
    argv[argc++] = (char *)"hypha-test";
    for (; arg && argc < 31; arg = va_arg(ap, const char *))
        argv[argc++] = (char *)arg;
    va_end(ap);
    argv[argc] = NULL;
    return hy_config_parse(&list_spec, c, argc, argv, res);
}

static void expect_list(const struct hy_strings *s, size_t n, ...)
{
    va_list ap;
    va_start(ap, n);
    assert_int_equal(s->n, n);
    for (size_t i = 0; i < n; i++)
        assert_string_equal(s->v[i], va_arg(ap, const char *));
    va_end(ap);
}

static void test_list_option(void **state)
{
    (void)state;
    struct list_cfg c = {0};
    struct hy_config_result res;
    assert_int_equal(parse_list(&c, &res, NULL), 0);
    expect_list(&c.vars, 0);
    assert_null(c.vars.v);

    /* flags: commas split, repeats add up, in order */
    assert_int_equal(parse_list(&c, &res, "--var", "a=1,b=2", "--name", "x", "--var=c=3", NULL), 0);
    expect_list(&c.vars, 3, "a=1", "b=2", "c=3");
    hy_config_fini(&list_spec, &c);
    expect_list(&c.vars, 0);
    assert_null(c.name);

    /* the file, as a list or a scalar; the environment replaces it; flags
     * replace the environment */
    char path[64], scalar[64];
    write_temp("vars:\n  - a=1\n  - b=2,c=3\n", path);
    write_temp("vars: d=4,e=5\n", scalar);
    assert_int_equal(parse_list(&c, &res, "--config", path, NULL), 0);
    expect_list(&c.vars, 3, "a=1", "b=2", "c=3");
    assert_int_equal(parse_list(&c, &res, "--config", scalar, NULL), 0);
    expect_list(&c.vars, 2, "d=4", "e=5");
    setenv("HYPHA_TEST_VAR", "f=6", 1);
    assert_int_equal(parse_list(&c, &res, "--config", path, NULL), 0);
    expect_list(&c.vars, 1, "f=6");
    assert_int_equal(parse_list(&c, &res, "--config", path, "--var", "g=7", "--var", "h=8", NULL),
                     0);
    expect_list(&c.vars, 2, "g=7", "h=8");
    unsetenv("HYPHA_TEST_VAR");
    hy_config_fini(&list_spec, &c);
    unlink(path);
    unlink(scalar);

    /* mistakes name where they are; the list is left as it was */
    assert_int_equal(parse_list(&c, &res, "--var", "a=1,,b=2", NULL), HY_EINVAL);
    assert_string_equal(res.error,
                        "--var: \"a=1,,b=2\" has an empty item (items are separated by commas)");
    assert_int_equal(parse_list(&c, &res, "--var", "a=1", "--var", "b=2,", NULL), HY_EINVAL);
    assert_string_equal(res.error,
                        "--var: \"b=2,\" has an empty item (items are separated by commas)");
    expect_list(&c.vars, 1, "a=1");
    hy_config_fini(&list_spec, &c);
    write_temp("vars:\n  - a=1\n  - {b: 2}\n", path);
    assert_int_equal(parse_list(&c, &res, "--config", path, NULL), HY_EINVAL);
    char want[160];
    snprintf(want, sizeof(want), "%s:3:5: vars[1]: expected a single value", path);
    assert_string_equal(res.error, want);
    hy_config_fini(&list_spec, &c);
    unlink(path);
    write_temp("vars: {a: 1}\n", path);
    assert_int_equal(parse_list(&c, &res, "--config", path, NULL), HY_EINVAL);
    snprintf(want, sizeof(want), "%s:1:7: vars: expected a single value, not a mapping", path);
    assert_string_equal(res.error, want);
    hy_config_fini(&list_spec, &c);
    unlink(path);

    /* --help shows that it takes a list */
    struct hy_buf out = {0};
    assert_int_equal(hy_config_usage(&list_spec, &out), 0);
    assert_non_null(strstr(out.data, "--var TEXT[,TEXT...]"));
    hy_buf_fini(&out);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_defaults, clear_env),
        cmocka_unit_test_setup(test_precedence, clear_env),
        cmocka_unit_test_setup(test_flag_forms, clear_env),
        cmocka_unit_test_setup(test_subcommands, clear_env),
        cmocka_unit_test_setup(test_run_command, clear_env),
        cmocka_unit_test_setup(test_help_and_version, clear_env),
        cmocka_unit_test_setup(test_flag_errors, clear_env),
        cmocka_unit_test_setup(test_unexpected_args, clear_env),
        cmocka_unit_test_setup(test_env_errors, clear_env),
        cmocka_unit_test_setup(test_file_errors, clear_env),
        cmocka_unit_test_setup(test_file_quiet_forms, clear_env),
        cmocka_unit_test_setup(test_table_errors, clear_env),
        cmocka_unit_test_setup(test_size_parse, clear_env),
        cmocka_unit_test_setup(test_duration_option, clear_env),
        cmocka_unit_test_setup(test_addr_parse, clear_env),
        cmocka_unit_test_setup(test_list_option, clear_env),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
