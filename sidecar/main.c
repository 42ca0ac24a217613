/* hypha-dp: parse the options, open the sidecar, run the loop until
 * SIGINT/SIGTERM, leave the zone politely, close. */
#include <stddef.h>

#include "runner.h"
#include "dp.h"
#include "poison.h"

#define O(field) offsetof(struct hy_dp_cfg, field)

static const struct hy_option options[] = {
    HY_SHUTDOWN_OPTION(struct hy_dp_cfg, shutdown_timeout),
    {"cp-address", "HYPHA_CP_ADDRESS", "cpAddress", HY_OPT_STRING, O(cp_address), NULL,
     "the zone control plane's DP server, wss://ZONE:5678"},
    {"ca-cert-file", "HYPHA_CA_CERT_FILE", "caCertFile", HY_OPT_STRING, O(ca_cert_file), NULL,
     "CA certificate (PEM) that verifies the zone's DP server"},
    {"dataplane-file", "HYPHA_DATAPLANE_FILE", "dataplaneFile", HY_OPT_STRING, O(dataplane_file),
     NULL, "the Dataplane resource this sidecar presents (YAML or JSON)"},
    {"dataplane-token-file", "HYPHA_DATAPLANE_TOKEN_FILE", "dataplaneTokenFile", HY_OPT_STRING,
     O(dataplane_token_file), NULL, "the dataplane token (hyphactl generate dataplane-token)"},
    {"dataplane-var", "HYPHA_DATAPLANE_VARS", "dataplaneVars", HY_OPT_STRINGS, O(dataplane_vars),
     NULL, "NAME=VALUE for {{ NAME }} in the Dataplane file; repeat it, or separate with commas"},
    {"admin-address", "HYPHA_ADMIN_ADDRESS", "adminAddress", HY_OPT_ADDRESS, O(admin_address),
     "127.0.0.1:9901", "admin server: /ready, /config, /metrics (port 0 picks a free port)"},
    {"workers", "HYPHA_WORKERS", "workers", HY_OPT_UINT, O(workers), "0",
     "proxy worker threads, each with its own loop and listening sockets; 0: one per CPU"},
    {"log-level", "HYPHA_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, O(log_level), "info",
     "debug, info, warn or error"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-dp",
    .summary = "Hypha sidecar: presents its Dataplane to the zone control plane and keeps its "
               "config and certificate",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .config_env = "HYPHA_DP_CONFIG",
    .args = "run",
};

static int open_it(void *state, const void *cfg, uv_loop_t *loop)
{
    return hy_dp_open(state, cfg, loop);
}

static void shutdown_it(void *state)
{
    hy_dp_shutdown(state);
}

static void stop_it(void *state)
{
    hy_dp_stop(state);
}

static void close_it(void *state)
{
    hy_dp_close(state);
}

int main(int argc, char **argv)
{
    struct hy_dp_cfg cfg = {0};
    struct hy_dp state;
    const struct hy_main_program p = {
        .spec = &spec,
        .cfg = &cfg,
        .log_level_offset = offsetof(struct hy_dp_cfg, log_level),
        .component = "dp",
        .command = "run",
        .hint = "--cp-address wss://ZONE:5678 ...",
        .state = &state,
        .open = open_it,
        .shutdown = shutdown_it,
        .stop = stop_it,
        .close = close_it,
    };
    return hy_main(&p, argc, argv);
}
