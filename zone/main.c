/* hypha-zone: parse the configuration, open the zone control plane, run the
 * loop until SIGINT/SIGTERM, close. */
#include <stddef.h>

#include "zone.h"
#include "poison.h"

#define O(field) offsetof(struct hy_zone_cfg, field)

static const struct hy_option options[] = {
    HY_CP_OPTIONS(struct hy_zone_cfg, cp, "./hypha-zone-data"),
    {"zone", "HYPHA_ZONE", "zone", HY_OPT_STRING, O(zone), "zone",
     "this zone's name, as registered on the global control plane"},
    {"global-address", "HYPHA_GLOBAL_ADDRESS", "globalAddress", HY_OPT_STRINGS, O(global_address),
     NULL,
     "KDS address of the global control plane (wss://HOST:5685); several (repeat the flag or "
     "separate with commas) for global replicas, tried in turn; none: standalone"},
    {"global-ca-file", "HYPHA_GLOBAL_CA_FILE", "globalCaFile", HY_OPT_STRING, O(global_ca_file),
     NULL, "CA certificate that verifies the global control plane's KDS certificate"},
    {"global-tls-skip-verify", "HYPHA_GLOBAL_TLS_SKIP_VERIFY", "globalTlsSkipVerify", HY_OPT_BOOL,
     O(global_tls_skip_verify), "false",
     "do not verify the global control plane's certificate (insecure; logged at every connect)"},
    {"zone-token-file", "HYPHA_ZONE_TOKEN_FILE", "zoneTokenFile", HY_OPT_STRING, O(zone_token_file),
     NULL, "file holding this zone's token (hyphactl generate zone-token)"},
    {"dp-address", "HYPHA_DP_ADDRESS", "dpAddress", HY_OPT_ADDRESS, O(dp_address), "0.0.0.0:5678",
     "address sidecars connect to (wss)"},
    {"dp-tls-cert", "HYPHA_DP_TLS_CERT", "dpTlsCert", HY_OPT_STRING, O(dp_tls_cert), NULL,
     "PEM certificate of the DP server (made in the data dir at first start if not given)"},
    {"dp-tls-key", "HYPHA_DP_TLS_KEY", "dpTlsKey", HY_OPT_STRING, O(dp_tls_key), NULL,
     "PEM private key of the DP server"},
    {"dp-cleanup-age", "HYPHA_DP_CLEANUP_AGE", "dpCleanupAge", HY_OPT_DURATION, O(dp_cleanup_age),
     "72h",
     "a sidecar disconnected this long without saying goodbye loses its Dataplane (0: never)"},
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

static int open_cp(void *state, const void *cfg, uv_loop_t *loop)
{
    return hy_zone_open(state, cfg, loop);
}

static void stop_cp(void *state)
{
    hy_zone_stop(state);
}

static void close_cp(void *state)
{
    hy_zone_close(state);
}

int main(int argc, char **argv)
{
    struct hy_zone_cfg cfg = {0};
    int rc = hy_cp_store_command(&spec, &cfg, offsetof(struct hy_zone_cfg, cp), argc, argv);
    if (rc >= 0)
        return rc;
    struct hy_zone state;
    const struct hy_main_program p = {
        .spec = &spec,
        .cfg = &cfg,
        .log_level_offset = offsetof(struct hy_zone_cfg, cp.log_level),
        .component = "zone",
        .state = &state,
        .open = open_cp,
        .stop = stop_cp,
        .close = close_cp,
    };
    return hy_main(&p, argc, argv);
}
