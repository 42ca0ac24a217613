/* The process runner every Hypha binary's main() hands itself to: parse
 * the option table (and the one command), open, run the libuv loop until
 * SIGINT/SIGTERM and the shutdown that follows, stop, let libwebsockets
 * close its handles, close; with a watchdog that ends a process whose
 * shutdown is stuck. */
#ifndef HY_RUNNER_H
#define HY_RUNNER_H

#include <stddef.h>
#include <uv.h>

#include "config.h"

/* The option-table row hy_main looks for (by its name, "shutdown-timeout")
 * in any binary's table: after SIGINT/SIGTERM the process ends within this
 * time even if its loop is stuck. F is an int64_t field of S. */
#define HY_SHUTDOWN_OPTION(S, F)                                                                   \
    {                                                                                              \
        "shutdown-timeout", "HYPHA_SHUTDOWN_TIMEOUT", "shutdownTimeout", HY_OPT_DURATION,          \
            offsetof(S, F), HY_SHUTDOWN_TIMEOUT_DEFAULT,                                           \
            "after SIGINT/SIGTERM, exit anyway (status 70) when shutting down takes longer; 0: "   \
            "wait for ever"                                                                        \
    }
#define HY_SHUTDOWN_TIMEOUT_DEFAULT "10s"
#define HY_EXIT_SHUTDOWN_TIMEOUT 70 /* the watchdog's exit status (EX_SOFTWARE) */

/* What a Hypha binary hands hy_main: the control planes, and the
 * sidecar and the ingress (which add a command and a graceful shutdown). */
struct hy_main_program {
    const struct hy_config_spec *spec;
    void *cfg;               /* the binary's zeroed config struct, which spec fills */
    size_t log_level_offset; /* offsetof its enum hy_log_level field */
    const char *component;   /* for logs: "global", "zone", "dp", "ingress" */
    const char *command;     /* the one command it takes ("run"), or NULL: none */
    const char *hint;        /* with command: how to run it, for the error without one */
    void *state;             /* the binary's state, passed to the functions below */
    int (*open)(void *state, const void *cfg, uv_loop_t *loop);
    /* SIGINT/SIGTERM: starts leaving, and stops the loop when done (or at
     * once when called again). NULL: the loop is stopped at once. */
    void (*shutdown)(void *state);
    void (*stop)(void *state);
    void (*close)(void *state);
};

/* Parses the options (--help and --version print and return 0; a bad
 * option or command prints why and returns 2), opens, runs the loop until
 * SIGINT or SIGTERM (and the shutdown that follows), stops, lets
 * libwebsockets finish closing, closes. Returns the process exit code: 0,
 * or 1 when open failed. The first SIGINT/SIGTERM also arms a watchdog:
 * when the process has not ended within the "shutdown-timeout" option of
 * the binary's table (HY_SHUTDOWN_OPTION; HY_SHUTDOWN_TIMEOUT_DEFAULT when it
 * has none), it writes one line to stderr and _exits with
 * HY_EXIT_SHUTDOWN_TIMEOUT, stuck loop or not. */
int hy_main(const struct hy_main_program *p, int argc, char **argv);

#endif
