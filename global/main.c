/* hypha-global: parse the configuration, open the control plane, run the
 * loop until SIGINT/SIGTERM, close. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "global.h"
#include "log.h"
#include "poison.h"

#define O(field) offsetof(struct hy_global_cfg, field)

static const struct hy_option options[] = {
    HY_CP_OPTIONS(struct hy_global_cfg, cp, "./hypha-global-data"),
    {"kds-address", "HYPHA_KDS_ADDRESS", "kdsAddress", HY_OPT_ADDRESS, O(kds_address),
     "0.0.0.0:5685", "KDS address zones connect to (wss)"},
    {"kds-tls-cert", "HYPHA_KDS_TLS_CERT", "kdsTlsCert", HY_OPT_STRING, O(kds_tls_cert), NULL,
     "PEM certificate of the KDS server (made in the data dir at first start if not given)"},
    {"kds-tls-key", "HYPHA_KDS_TLS_KEY", "kdsTlsKey", HY_OPT_STRING, O(kds_tls_key), NULL,
     "PEM private key of the KDS server"},
    {"kds-ping-interval", "HYPHA_KDS_PING_INTERVAL", "kdsPingInterval", HY_OPT_DURATION,
     O(kds_ping_interval), "10s",
     "websocket ping interval on KDS; a peer silent for three intervals is dropped (Offline)"},
    {"kds-max-message", "HYPHA_KDS_MAX_MESSAGE", "kdsMaxMessage", HY_OPT_SIZE, O(kds_max_message),
     "4Mi", "largest KDS message; a larger one closes that zone's connection"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-global",
    .summary = "Hypha global control plane: the resource API, zone registry and mesh CAs",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .config_env = "HYPHA_CONFIG",
};

static void on_signal(uv_signal_t *s, int signum)
{
    hy_log(HY_LOG_INFO, "global", "signal %d: shutting down", signum);
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    struct hy_global_cfg cfg = {0};
    struct hy_config_result res = {0};
    int rc = hy_config_parse(&spec, &cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf out = {0};
        if (rc < 0)
            fprintf(stderr, "hypha-global: %s\n(see hypha-global --help)\n", res.error);
        else if (res.help && hy_config_usage(&spec, &out) == 0)
            fputs(out.data, stdout);
        else if (res.version)
            printf("hypha-global %s\n", HYPHA_VERSION);
        hy_buf_fini(&out);
        hy_config_fini(&spec, &cfg);
        return rc < 0 ? 2 : 0;
    }
    hy_log_threshold = cfg.cp.log_level;
    signal(SIGPIPE, SIG_IGN);

    uv_loop_t loop;
    uv_loop_init(&loop);
    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);

    struct hy_global g;
    rc = hy_global_open(&g, &cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    /* close our handles; lws closes its own: run until all have finished */
    hy_global_stop(&g);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hy_global_close(&g);
    uv_loop_close(&loop);
    hy_config_fini(&spec, &cfg);
    hy_log(HY_LOG_INFO, "global", "stopped");
    return rc < 0 ? 1 : 0;
}
