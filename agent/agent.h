/* What a data-plane process is, whichever it is (hypha-dp, hypha-ingress):
 * the options they share, the resource file and the token it presents,
 * the control stream to the zone control plane (wss, subprotocol
 * hypha.dp.v2: DpHello, then config updates each answered DpAck or DpNack, a
 * DpReject ending it; a DpStatsRequest answered with what /metrics
 * renders), the admin server (GET /ready, /config, /metrics)
 * and a shutdown that tells the zone it is leaving. The binary adds what
 * it alone does through struct hy_agent_ops: what its configs are, when it
 * is ready, its workers. What it has keeps serving while the zone is away.
 *
 * Life: hy_agent_open (options, file, token, metrics, admin server, then
 * ops->start, then the stream) → the loop runs → hy_agent_shutdown
 * (SIGTERM) → hy_agent_stop → the loop's last run → hy_agent_close.
 * hy_agent_main does all of it for a binary's main.c. */
#ifndef HY_AGENT_H
#define HY_AGENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <uv.h>

#include "agent_file.h"
#include "agent_snap.h"
#include "config.h"
#include "dp.pb-c.h"
#include "log.h"
#include "net.h"

#define HY_AGENT_SHUTDOWN_GRACE_MS 5000 /* wait for the zone to answer our close, at most */
#define HY_AGENT_STATUS_MAX 320

/* The options of every data-plane process: a binary's cfg struct starts
 * with it (member base), and its option table with HY_AGENT_OPTIONS. */
struct hy_agent_cfg {
    int64_t shutdown_timeout; /* ms after SIGTERM before a stuck process exits anyway */
    /* wss://ZONE:5678, one or more (replicas of one zone) */
    struct hy_strings cp_addresses;
    char *ca_cert_file;     /* PEM CA(s) the zone's DP server certificate chains to */
    char *resource_file;    /* the resource presented, YAML or JSON */
    char *token_file;       /* its token */
    struct hy_strings vars; /* NAME=VALUE, for {{ NAME }} in the file */
    struct hy_addr admin_address;
    enum hy_log_level log_level;
    uint64_t workers; /* worker threads; 0: one per CPU */
};

/* The rows of the shared options, for a cfg struct T whose first member is
 * struct hy_agent_cfg base. FILE and TOKEN name the binary's own flags
 * (FILE "dataplane" gives --dataplane-file, HYPHA_DATAPLANE_FILE,
 * dataplaneFile, --dataplane-var, HYPHA_DATAPLANE_VARS, dataplaneVars);
 * the strings after them are their help, then the admin port's default
 * address and what the workers are. */
#define HY_AGENT_OPT_(T, f) (offsetof(T, base) + offsetof(struct hy_agent_cfg, f))
#define HY_AGENT_OPTIONS(T, FLAG, ENV, KEY, file_help, TFLAG, TENV, TKEY, token_help, admin,       \
                         workers_help)                                                             \
    HY_SHUTDOWN_OPTION(T, base.shutdown_timeout),                                                  \
        {"cp-address",                                                                             \
         "HYPHA_CP_ADDRESS",                                                                       \
         "cpAddress",                                                                              \
         HY_OPT_STRINGS,                                                                           \
         HY_AGENT_OPT_(T, cp_addresses),                                                           \
         NULL,                                                                                     \
         "the zone control plane's DP server, wss://ZONE:5678; several replicas of one zone: "     \
         "repeat it or separate with commas (one is used, the next on failure)"},                  \
        {"ca-cert-file",                                                                           \
         "HYPHA_CA_CERT_FILE",                                                                     \
         "caCertFile",                                                                             \
         HY_OPT_STRING,                                                                            \
         HY_AGENT_OPT_(T, ca_cert_file),                                                           \
         NULL,                                                                                     \
         "CA certificate (PEM) that verifies the zone's DP server"},                               \
        {FLAG "-file",                                                                             \
         "HYPHA_" ENV "_FILE",                                                                     \
         KEY "File",                                                                               \
         HY_OPT_STRING,                                                                            \
         HY_AGENT_OPT_(T, resource_file),                                                          \
         NULL,                                                                                     \
         file_help},                                                                               \
        {TFLAG, TENV, TKEY, HY_OPT_STRING, HY_AGENT_OPT_(T, token_file), NULL, token_help},        \
        {FLAG "-var",                                                                              \
         "HYPHA_" ENV "_VARS",                                                                     \
         KEY "Vars",                                                                               \
         HY_OPT_STRINGS,                                                                           \
         HY_AGENT_OPT_(T, vars),                                                                   \
         NULL,                                                                                     \
         "NAME=VALUE for {{ NAME }} in the " FLAG " file; repeat it, or separate with commas"},    \
        {"admin-address",                                                                          \
         "HYPHA_ADMIN_ADDRESS",                                                                    \
         "adminAddress",                                                                           \
         HY_OPT_ADDRESS,                                                                           \
         HY_AGENT_OPT_(T, admin_address),                                                          \
         admin,                                                                                    \
         "admin server: /ready, /config, /metrics (port 0 picks a free port)"},                    \
        {"workers", "HYPHA_WORKERS", "workers", HY_OPT_UINT, HY_AGENT_OPT_(T, workers),            \
         "0",       workers_help},                                                                 \
    {                                                                                              \
        "log-level", "HYPHA_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, HY_AGENT_OPT_(T, log_level), \
            "info", "debug, info, warn or error"                                                   \
    }

struct hy_agent;
struct hy_buf;
struct hy_http_server;
struct hy_metrics;
struct hy_series;
struct hy_ws_client;

/* What a binary adds. Every function runs on the main loop's thread. */
struct hy_agent_ops {
    const char *program;       /* "hypha-dp": the started line */
    const char *component;     /* "dp": logs, and hypha_<component>_connected */
    const char *what;          /* "dataplane": "the zone control plane rejected this dataplane" */
    const char *type;          /* the resource type of the file: "Dataplane" */
    const char *configs;       /* what the zone sends, for people: "config", "routes" */
    const char *file_help;     /* what the file is, for a missing --FLAG-file */
    const char *token_command; /* hyphactl generate TOKEN_COMMAND: "dataplane-token" */
    const char *file_flag, *token_flag; /* "--dataplane-file", "--dataplane-token-file" */
    size_t size; /* of the binary's state struct, which starts with struct hy_agent */

    /* After the agent's own opening (metrics made, admin server listening),
     * before the stream: the binary's metrics and workers. 0, or a negative
     * code (logged by it); hy_agent_close undoes a partial open. */
    int (*start)(struct hy_agent *a);
    /* Fills the binary's part of a DpHello before it is sent (a sidecar's
     * CSR). 0, or a negative code: the stream is closed (logged by it).
     * NULL: nothing to add. */
    int (*hello)(struct hy_agent *a, Hypha__V1__DpHello *h);
    /* A message other than DpReject while neither rejected nor shutting
     * down. It may detach what it keeps from m (setting the field NULL and
     * msg_case to NOT_SET); the agent frees the rest. Returns false when
     * the message is not one it takes (logged as unexpected). */
    bool (*message)(struct hy_agent *a, Hypha__V1__DpMessage *m);
    /* Given the current snapshot s (not NULL) of generation gen: true, or
     * false with why (one sentence). NULL: ready as soon as there is one. */
    bool (*ready)(struct hy_agent *a, struct hy_agent_snap *s, uint64_t gen, char *why,
                  size_t size);
    /* Appends to b the fields of /ready after "version" (",\"k\":v..."),
     * and the JSON body of /config, for snapshot s. 0 or HY_ENOMEM. */
    int (*ready_json)(struct hy_agent *a, struct hy_agent_snap *s, struct hy_buf *b);
    int (*config_json)(struct hy_agent *a, struct hy_agent_snap *s, struct hy_buf *b);
    /* hy_agent_stop's and hy_agent_close's first step: the binary's own. */
    void (*stop)(struct hy_agent *a);
    void (*close)(struct hy_agent *a);
};

struct hy_agent {
    const struct hy_agent_cfg *cfg;
    const struct hy_agent_ops *ops;
    uv_loop_t *loop;
    struct hy_agent_file file;
    char *token;                     /* owned; read again at every connect */
    struct hy_agent_current current; /* of the binary's snapshot type */

    /* the control stream */
    struct hy_ws_client *ws;
    uv_timer_t grace_timer; /* shutdown: stop waiting for the close handshake */
    bool grace_init;
    bool open;          /* the websocket is open */
    bool rejected;      /* the zone sent DpReject on this connection */
    bool shutting_down; /* hy_agent_shutdown was called */
    bool stopped;       /* hy_agent_stop was called: the runner drains the loop, leave it be */
    char status[HY_AGENT_STATUS_MAX]; /* the last thing that happened to the stream */
    /* which of cfg->cp_addresses the stream dials (several: zone replicas,
     * the next one after every failure) */
    size_t cp_index;
    ssize_t cp_last_open;         /* the address of the last open stream; -1: none yet */
    struct hy_series **cp_series; /* hypha_<component>_zone_address{address}, one per address */
    struct hy_series *failovers;  /* hypha_<component>_zone_failovers_total */

    struct hy_metrics *metrics; /* with the process's and hypha_<component>_connected */
    struct hy_http_server *admin;
};

/* Zeroes the binary's whole state (ops->size bytes at a), checks the
 * options (every missing one logged with what to give), loads and
 * validates the file (every problem on its own line), reads the token,
 * makes the metrics, starts the admin server, calls ops->start, starts the
 * control stream on loop. 0, or a negative code after logging why;
 * hy_agent_close undoes a partial open. */
int hy_agent_open(struct hy_agent *a, const struct hy_agent_cfg *cfg,
                  const struct hy_agent_ops *ops, uv_loop_t *loop);
/* SIGINT/SIGTERM: closes the stream with 1000 "<what> shutting down" (the
 * zone deregisters the resource) and stops the loop once the zone
 * answered, or after HY_AGENT_SHUTDOWN_GRACE_MS; at once when not
 * connected or when called a second time. */
void hy_agent_shutdown(struct hy_agent *a);
/* ops->stop, then stops the admin server, the stream and the timer; run
 * the loop until every handle has closed, then hy_agent_close. */
void hy_agent_stop(struct hy_agent *a);
void hy_agent_close(struct hy_agent *a);

/* The binary's main(): parses spec's options into cfg (whose first member
 * is struct hy_agent_cfg), runs state (ops->size bytes) with hy_main.
 * Returns the process's exit code. */
struct hy_config_spec;
int hy_agent_main(int argc, char **argv, const struct hy_config_spec *spec, void *cfg,
                  struct hy_agent *state, const struct hy_agent_ops *ops);

/* Ready: a snapshot is published and ops->ready agrees. Returns true, or
 * false with why (one sentence) filled. Loop thread. */
bool hy_agent_ready(struct hy_agent *a, char *why, size_t size);

/* Sends m on the stream; a failure is logged and returned. */
int hy_agent_send(struct hy_agent *a, const Hypha__V1__DpMessage *m);
/* Answers a config: DpAck of version, or DpNack of version with error
 * (version NULL: ""). */
int hy_agent_answer(struct hy_agent *a, const char *version, const char *error);

/* The zone control-plane address the stream dials now (or dialled last):
 * one of cfg->cp_addresses, borrowed. */
const char *hy_agent_cp_address(const struct hy_agent *a);

/* The port the admin server listens on (with port 0 in the address); 0 if
 * none. */
int hy_agent_admin_port(const struct hy_agent *a);

#endif
