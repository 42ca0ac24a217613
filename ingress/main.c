/* hypha-ingress: parse the options, open the ingress, run the loop until
 * SIGINT/SIGTERM, leave the zone politely (it deregisters the ZoneIngress),
 * close. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "ingress.h"
#include "poison.h"

#define O(field) offsetof(struct hy_ing_cfg, field)

static const struct hy_option options[] = {
    {"cp-address", "HYPHA_CP_ADDRESS", "cpAddress", HY_OPT_STRING, O(cp_address), NULL,
     "the zone control plane's DP server, wss://ZONE:5678"},
    {"ca-cert-file", "HYPHA_CA_CERT_FILE", "caCertFile", HY_OPT_STRING, O(ca_cert_file), NULL,
     "CA certificate (PEM) that verifies the zone's DP server"},
    {"ingress-file", "HYPHA_INGRESS_FILE", "ingressFile", HY_OPT_STRING, O(ingress_file), NULL,
     "the ZoneIngress resource this ingress presents (YAML or JSON)"},
    {"token-file", "HYPHA_TOKEN_FILE", "tokenFile", HY_OPT_STRING, O(token_file), NULL,
     "the zone-ingress token (hyphactl generate zone-ingress-token)"},
    {"ingress-var", "HYPHA_INGRESS_VARS", "ingressVars", HY_OPT_STRINGS, O(vars), NULL,
     "NAME=VALUE for {{ NAME }} in the ingress file; repeat it, or separate with commas"},
    {"admin-address", "HYPHA_ADMIN_ADDRESS", "adminAddress", HY_OPT_ADDRESS, O(admin_address),
     "127.0.0.1:9902", "admin server: /ready, /config, /metrics (port 0 picks a free port)"},
    {"splice", "HYPHA_SPLICE", "splice", HY_OPT_BOOL, O(splice), "true",
     "relay with splice(2), the bytes never entering user space; false: copy them"},
    {"workers", "HYPHA_WORKERS", "workers", HY_OPT_UINT, O(workers), "0",
     "relay threads, each with its own loop and listening socket; 0: one per CPU"},
    {"log-level", "HYPHA_LOG_LEVEL", "logLevel", HY_OPT_LOG_LEVEL, O(log_level), "info",
     "debug, info, warn or error"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-ingress",
    .summary = "Hypha zone ingress: routes cross-zone mTLS to this zone's services by SNI, "
               "without terminating TLS",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .config_env = "HYPHA_INGRESS_CONFIG",
    .args = "run",
};

static void on_signal(uv_signal_t *s, int signum)
{
    hy_log(HY_LOG_INFO, "ingress", "signal %d: shutting down", signum);
    hy_ing_shutdown(s->data);
}

int main(int argc, char **argv)
{
    struct hy_ing_cfg cfg = {0};
    int rc = hy_config_run_command(&spec, &cfg, argc, argv, "--cp-address wss://ZONE:5678 ...");
    if (rc >= 0)
        return rc;
    hy_log_threshold = cfg.log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    struct hy_ing g;
    uv_signal_t sigs[2];
    const int signums[2] = {SIGINT, SIGTERM};
    for (int i = 0; i < 2; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = &g;
        uv_signal_start(&sigs[i], on_signal, signums[i]);
    }
    rc = hy_ing_open(&g, &cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    hy_ing_stop(&g);
    for (int i = 0; i < 2; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hy_ing_close(&g);
    uv_loop_close(&loop);
    hy_config_fini(&spec, &cfg);
    hy_log(HY_LOG_INFO, "ingress", "stopped");
    return rc < 0 ? 1 : 0;
}
