/* hypha-dp: parse the options, open the sidecar, run the loop until
 * SIGINT/SIGTERM, leave the zone politely, close. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "dp.h"
#include "poison.h"

#define O(field) offsetof(struct hy_dp_cfg, field)

static const struct hy_option options[] = {
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

static void on_signal(uv_signal_t *s, int signum)
{
    hy_log(HY_LOG_INFO, "dp", "signal %d: shutting down", signum);
    hy_dp_shutdown(s->data);
}

int main(int argc, char **argv)
{
    struct hy_dp_cfg cfg = {0};
    int rc = hy_config_run_command(&spec, &cfg, argc, argv, "--cp-address wss://ZONE:5678 ...");
    if (rc >= 0)
        return rc;
    hy_log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct hy_dp d;
    uv_signal_t sigs[2];
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = &d;
        uv_signal_start(&sigs[i], on_signal, signums[i]);
    }
    rc = hy_dp_open(&d, &cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    /* close our handles; lws closes its own: run until all have finished */
    hy_dp_stop(&d);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hy_dp_close(&d);
    uv_loop_close(&loop);
    hy_config_fini(&spec, &cfg);
    hy_log(HY_LOG_INFO, "dp", "stopped");
    return rc < 0 ? 1 : 0;
}
