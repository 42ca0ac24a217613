/* Table-driven configuration shared by every binary: one table of options
 * gives the flags, HYPHA_* environment variables, config file keys and --help.
 * Precedence: defaults < YAML file (--config or the program's config
 * variable) < environment < flags. */
#ifndef HY_CONFIG_H
#define HY_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* Each type names the C type of the field the option's offset points at. */
enum hy_opt_type {
    HY_OPT_STRING,    /* char *: owned by the config struct, freed by hy_config_fini */
    HY_OPT_INT,       /* int64_t, decimal */
    HY_OPT_UINT,      /* uint64_t, decimal */
    HY_OPT_BOOL,      /* bool: true/false, yes/no, on/off, 1/0 (any case) */
    HY_OPT_DURATION,  /* int64_t milliseconds: "500ms", "30s", "1m30s", "1d", "0" */
    HY_OPT_SIZE,      /* uint64_t bytes: "512", "64K", "16Mi", "1G" (see hy_size_parse) */
    HY_OPT_LOG_LEVEL, /* enum hy_log_level (log.h): debug, info, warn, error */
    HY_OPT_ADDRESS,   /* struct hy_addr: "host:port" (see hy_addr_parse) */
    HY_OPT_STRINGS,   /* struct hy_strings: a list. Every value is split at commas ("a,b");
                       * a repeated flag adds to the list; in the file, a scalar or a YAML
                       * list. Each source replaces the list a lower one set. */
};

/* The field of an HY_OPT_STRINGS option: owned by the config struct, freed
 * by hy_config_fini. */
struct hy_strings {
    char **v; /* n owned, non-empty strings; NULL when n is 0 */
    size_t n;
};

/* One row of a binary's option table. */
struct hy_option {
    const char *name; /* long flag without dashes: "api-address" */
    const char *env;  /* environment variable, "HYPHA_API_ADDRESS"; NULL for none */
    const char
        *key; /* config file key, lowerCamelCase; dots nest: "apiServer.port"; NULL for none */
    enum hy_opt_type type;
    size_t offset;    /* offsetof(struct <binary>_cfg, field), field of the type above */
    const char *def;  /* default, as text, parsed like every other source; NULL leaves the field */
    const char *help; /* one line for --help */
};

/* What a binary tells the parser about itself. */
struct hy_config_spec {
    const char *program; /* "hypha-global", for the usage line */
    const char *summary; /* one line under the usage line, or NULL */
    const struct hy_option *opts;
    size_t nopts;
    const char *config_env; /* variable naming the config file, "HYPHA_CONFIG"; or NULL */
    const char *args;       /* positional part of the usage line, "COMMAND [ARGS...]"; NULL
                             * when the program takes no positional arguments */
    bool stop_at_args;      /* the first positional argument ends option parsing: it and
                             * everything after it go to res->args (for subcommands) */
};

#define HY_CONFIG_ERROR_MAX 512

struct hy_config_result {
    char **args; /* positional arguments: a slice of argv (NULL-terminated) */
    int nargs;
    bool help;               /* --help or -h: print hy_config_usage and exit 0 */
    bool version;            /* --version: print the version and exit 0 */
    const char *config_file; /* the file that was read (borrowed from argv or environ), or NULL */
    char error[HY_CONFIG_ERROR_MAX]; /* after a failure: what is wrong, naming the source */
};

/* Fills cfg from spec's defaults, the config file, the environment and argv,
 * in that order of precedence. cfg must start zeroed (or hold only what an
 * earlier call set): strings are freed when overridden.
 *
 * Flags are "--name value" or "--name=value"; bools "--name" or
 * "--name=false"; "--" ends the flags. A list option (HY_OPT_STRINGS) may be
 * given more than once: its flags add up. Built in: --config FILE, --help (-h),
 * --version. An empty environment variable counts as unset; a null value in
 * the file leaves the field as the lower sources set it.
 *
 * argv's pointers may be reordered so that the positional arguments come
 * last, in order; res->args points at them. With --help or --version
 * anywhere among the flags, returns 0 with res->help or res->version set and
 * cfg untouched. Otherwise returns 0, or HY_EINVAL (or HY_ENOMEM) with
 * res->error saying what is wrong where:
 *   unknown flag "--api-adress"; did you mean --api-address?
 *   --api-port: "abc" is not an integer
 *   HYPHA_LOG_LEVEL: "loud" is not a log level (debug, info, warn or error)
 *   hypha.yaml:3:1: unknown key "apiAdress"; did you mean apiAddress?
 * Never exits. Whatever it returns, release cfg with hy_config_fini. */
int hy_config_parse(const struct hy_config_spec *spec, void *cfg, int argc, char **argv,
                    struct hy_config_result *res);

/* The start of a program's main(): hy_config_parse, then, when command is
 * not NULL, the one command it takes (`PROGRAM run`) checked. Returns -1
 * when the program goes on with cfg, else the exit code, having printed the
 * usage (0), the version (0) or the error with a pointer to --help (2) and
 * freed cfg's strings; hint shows how to run the command. */
int hy_config_run_command(const struct hy_config_spec *spec, void *cfg, int argc, char **argv,
                          const char *command, const char *hint);

/* Frees the strings (and lists) the options own in cfg and sets them to NULL
 * (empty); cfg can be parsed into again. Cannot fail. */
void hy_config_fini(const struct hy_config_spec *spec, void *cfg);

/* Appends the --help text: usage line, summary, then one aligned row per
 * option with its flag, environment variable, file key, default and help.
 * Returns 0 or HY_ENOMEM. */
int hy_config_usage(const struct hy_config_spec *spec, struct hy_buf *out);

/* Parses a byte size: digits with an optional suffix K, M, G, T (powers of
 * 1000) or Ki, Mi, Gi, Ti (powers of 1024). Returns false on anything else
 * or on overflow. */
bool hy_size_parse(const char *s, uint64_t *bytes);

enum hy_addr_kind {
    HY_ADDR_ANY,  /* ":5681": no host, every interface */
    HY_ADDR_IPV4, /* "127.0.0.1:5681" */
    HY_ADDR_IPV6, /* "[::1]:5681"; host is without brackets, may hold a %zone */
    HY_ADDR_NAME, /* "localhost:5681" */
};

struct hy_addr {
    enum hy_addr_kind kind;
    char host[256]; /* NUL-terminated, "" for HY_ADDR_ANY */
    uint16_t port;  /* 0 means an ephemeral port */
};

/* Parses "host:port": IPv4, [IPv6], a host name, or nothing before the
 * colon. Returns 0, or HY_EINVAL with err (if not NULL) saying why, e.g.
 * "\"::1:80\": put IPv6 addresses in brackets, e.g. [::1]:80". */
int hy_addr_parse(const char *s, struct hy_addr *out, char *err, size_t errlen);

/* Writes a as "host:port" ("[host]:port" for IPv6) into buf, truncated to
 * size. Returns buf. */
char *hy_addr_format(const struct hy_addr *a, char *buf, size_t size);

#endif
