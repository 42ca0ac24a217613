/* hypha-ingress: parse the options, open the ingress, run the loop until
 * SIGINT/SIGTERM, leave the zone politely (it deregisters the ZoneIngress),
 * close. */
#include <stddef.h>

#include "runner.h"
#include "ingress.h"
#include "poison.h"

#define O(field) offsetof(struct hy_ing_cfg, field)

static const struct hy_option options[] = {
    HY_SHUTDOWN_OPTION(struct hy_ing_cfg, shutdown_timeout),
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
    {"allow-local-endpoints", "HYPHA_ALLOW_LOCAL_ENDPOINTS", "allowLocalEndpoints", HY_OPT_BOOL,
     O(allow_local_endpoints), "false",
     "UNSAFE, single-host development only: relay to endpoints on this host's loopback, "
     "unspecified and link-local addresses too, which lets anyone who can register a Dataplane "
     "reach this host's loopback services (the control plane's API) through the ingress"},
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

static int open_it(void *state, const void *cfg, uv_loop_t *loop)
{
    return hy_ing_open(state, cfg, loop);
}

static void shutdown_it(void *state)
{
    hy_ing_shutdown(state);
}

static void stop_it(void *state)
{
    hy_ing_stop(state);
}

static void close_it(void *state)
{
    hy_ing_close(state);
}

int main(int argc, char **argv)
{
    struct hy_ing_cfg cfg = {0};
    struct hy_ing state;
    const struct hy_main_program p = {
        .spec = &spec,
        .cfg = &cfg,
        .log_level_offset = offsetof(struct hy_ing_cfg, log_level),
        .component = "ingress",
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
