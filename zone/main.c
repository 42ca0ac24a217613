/* hypha-zone: parse the configuration, open the zone control plane, run the
 * loop until SIGINT/SIGTERM, close. */
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "zone.h"
#include "log.h"
#include "poison.h"

#define O(field) offsetof(struct hy_zone_cfg, field)

static const struct hy_option options[] = {
    HY_CP_OPTIONS(struct hy_zone_cfg, cp, "./hypha-zone-data"),
    {"zone", "HYPHA_ZONE", "zone", HY_OPT_STRING, O(zone), "zone",
     "this zone's name, as registered on the global control plane"},
    {"global-address", "HYPHA_GLOBAL_ADDRESS", "globalAddress", HY_OPT_STRING, O(global_address),
     NULL, "KDS address of the global control plane (wss://HOST:5685); none: standalone"},
    {"global-ca-file", "HYPHA_GLOBAL_CA_FILE", "globalCaFile", HY_OPT_STRING, O(global_ca_file),
     NULL, "CA certificate that verifies the global control plane's KDS certificate"},
    {"global-tls-skip-verify", "HYPHA_GLOBAL_TLS_SKIP_VERIFY", "globalTlsSkipVerify", HY_OPT_BOOL,
     O(global_tls_skip_verify), "false",
     "do not verify the global control plane's certificate (insecure; logged at every connect)"},
    {"zone-token-file", "HYPHA_ZONE_TOKEN_FILE", "zoneTokenFile", HY_OPT_STRING, O(zone_token_file),
     NULL, "file holding this zone's token (hyphactl generate zone-token)"},
    {"kds-ping-interval", "HYPHA_KDS_PING_INTERVAL", "kdsPingInterval", HY_OPT_DURATION,
     O(kds_ping_interval), "10s",
     "websocket ping interval on KDS; a peer silent for three intervals is dropped (Offline)"},
    {"kds-max-message", "HYPHA_KDS_MAX_MESSAGE", "kdsMaxMessage", HY_OPT_SIZE, O(kds_max_message),
     "4Mi", "largest KDS message accepted"},
    {"kds-backoff-max", "HYPHA_KDS_BACKOFF_MAX", "kdsBackoffMax", HY_OPT_DURATION,
     O(kds_backoff_max), "30s", "longest wait between reconnects to the global control plane"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-zone",
    .summary = "Hypha zone control plane: the resource API of one zone, synced with the global one",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .config_env = "HYPHA_CONFIG",
};

static void on_signal(uv_signal_t *s, int signum)
{
    hy_log(HY_LOG_INFO, "zone", "signal %d: shutting down", signum);
    uv_stop(s->loop);
}

int main(int argc, char **argv)
{
    struct hy_zone_cfg cfg = {0};
    struct hy_config_result res = {0};
    int rc = hy_config_parse(&spec, &cfg, argc, argv, &res);
    if (rc < 0 || res.help || res.version) {
        struct hy_buf out = {0};
        if (rc < 0)
            fprintf(stderr, "hypha-zone: %s\n(see hypha-zone --help)\n", res.error);
        else if (res.help && hy_config_usage(&spec, &out) == 0)
            fputs(out.data, stdout);
        else if (res.version)
            printf("hypha-zone %s\n", HYPHA_VERSION);
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

    struct hy_zone g;
    rc = hy_zone_open(&g, &cfg, &loop);
    if (rc == 0)
        uv_run(&loop, UV_RUN_DEFAULT);
    /* close our handles; lws closes its own: run until all have finished */
    hy_zone_stop(&g);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    hy_zone_close(&g);
    uv_loop_close(&loop);
    hy_config_fini(&spec, &cfg);
    hy_log(HY_LOG_INFO, "zone", "stopped");
    return rc < 0 ? 1 : 0;
}
