/* The CLI's shared context and the command table: what every command gets
 * (output streams, parsed flags, the control plane it talks to) and how it
 * reports failure. Exit status: 0 success, 1 error, 2 usage error. */
#ifndef HY_CLI_CLI_H
#define HY_CLI_CLI_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#include "args.h"
#include "cliconfig.h"
#include "buf.h"
#include "http_client.h"
#include "resource.h"

struct hy_cli;

struct hy_cmd {
    const char *path;     /* words that name it: "config control-planes add" */
    const char *synopsis; /* its arguments: "TYPE [NAME]" */
    const char *summary;  /* one line for help listings */
    const char *help;     /* more lines for its --help, or NULL */
    const char *complete; /* bash completion of its first argument: "@types", "bash" */
    int min_args, max_args;
    const struct hy_flag *flags; /* its own flags (the global ones apply too) */
    /* Runs the command: 0, or a negative code after the failure has been
     * printed (hy_cli_error, hy_cli_usage). */
    int (*run)(struct hy_cli *cli);
};

struct hy_cli {
    FILE *in, *out, *err;
    int64_t now;      /* wall-clock seconds, for AGE columns */
    bool usage_error; /* a usage error was reported: exit status 2 */
    const struct hy_cmd *cmd;
    struct hy_args args;
    /* the control plane, resolved by hy_cli_connect() */
    struct hy_cliconfig cfg;
    bool cfg_loaded;
    const char *base_url; /* borrowed from args, environment or cfg */
    const char *ca_file;  /* NULL: system CAs */
    const char *token;    /* NULL: no Authorization header */
    struct hy_httpc_options http;
};

/* Runs one command line (argv[0] is the program name) and returns the exit
 * status. Output goes to out, errors to err; in is read for "-f -". Frees
 * everything it allocates before returning. */
int hy_cli_main(int argc, char **argv, FILE *in, FILE *out, FILE *err);
/* The same with a context the caller prepared (in, out, err and now set,
 * the rest zeroed): what tests use to fix the clock. */
int hy_cli_run(struct hy_cli *cli, int argc, char **argv);

/* The command table and the global flags (commands.c). */
const struct hy_cmd *hy_cli_commands(size_t *n);
extern const struct hy_flag hy_cli_global_flags[];

/* Prints "Error: <message>" to cli->err. */
void hy_cli_error(struct hy_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints "Error: <message>" and a hint to run --help, marks the run as a
 * usage error (exit status 2) and returns HY_EINVAL. */
int hy_cli_usage(struct hy_cli *cli, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Loads the configuration file once (--config, HYPHACTL_CONFIG, or
 * ~/.hypha/config.yaml). 0, or a negative code after printing why. */
int hy_cli_load_config(struct hy_cli *cli);
/* Chooses the control plane: --cp (a URL or a configured name), HYPHA_CP,
 * the current one in the configuration, else http://127.0.0.1:5681; and
 * its CA file and token (--ca-cert-file / HYPHA_CA_CERT_FILE, --auth-token
 * / HYPHA_AUTH_TOKEN, else the configured ones). 0 or a printed failure. */
int hy_cli_connect(struct hy_cli *cli);

/* Shared by the commands (cmd_common.c). */

/* Resolves TYPE (name, plural or short name) for get and delete; NULL
 * after a usage error that lists the known types. */
const struct hy_rtype *hy_cmd_find_type(struct hy_cli *cli, const char *s);
/* Appends the API path of a type's collection, or of one resource when
 * name is given: /meshes/MESH/PLURAL[/NAME] for mesh-scoped types with a
 * mesh, else /PLURAL[/NAME]. 0 or HY_ENOMEM. */
int hy_cmd_resource_path(struct hy_buf *b, const struct hy_rtype *t, const char *mesh,
                         const char *name);
/* Prints "meshtrafficpermission/NAME <what>" (kubectl's way) on cli->out. */
void hy_cmd_print_done(struct hy_cli *cli, const char *type, const char *name, const char *what);

/* The commands (cmd_*.c). */
int hy_cmd_apply(struct hy_cli *cli);
int hy_cmd_get(struct hy_cli *cli);
int hy_cmd_delete(struct hy_cli *cli);
int hy_cmd_inspect_zones(struct hy_cli *cli);
int hy_cmd_inspect_dataplanes(struct hy_cli *cli);
int hy_cmd_inspect_zoneingresses(struct hy_cli *cli);
int hy_cmd_inspect_services(struct hy_cli *cli);
int hy_cmd_inspect_dataplane(struct hy_cli *cli);
int hy_cmd_explain(struct hy_cli *cli);
int hy_cmd_generate_zone_token(struct hy_cli *cli);
int hy_cmd_generate_dataplane_token(struct hy_cli *cli);
int hy_cmd_generate_ingress_token(struct hy_cli *cli);
int hy_cmd_cp_add(struct hy_cli *cli);
int hy_cmd_cp_list(struct hy_cli *cli);
int hy_cmd_cp_switch(struct hy_cli *cli);
int hy_cmd_cp_remove(struct hy_cli *cli);
int hy_cmd_version(struct hy_cli *cli);
int hy_cmd_completion(struct hy_cli *cli);

#endif
