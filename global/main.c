/* hypha-global: parse the configuration, open the control plane, run the
 * loop until SIGINT/SIGTERM, close. */
#include <stddef.h>

#include "global.h"
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
    {"kds-zone-max-resources", "HYPHA_KDS_ZONE_MAX_RESOURCES", "kdsZoneMaxResources", HY_OPT_UINT,
     O(zone_max_resources), "50000",
     "most resources (Dataplanes, insights, ingresses) one zone may keep here; more are refused"},
    {"kds-zone-max-bytes", "HYPHA_KDS_ZONE_MAX_BYTES", "kdsZoneMaxBytes", HY_OPT_SIZE,
     O(zone_max_bytes), "128Mi", "most bytes of resources one zone may keep here"},
    {"kds-zone-max-ingresses", "HYPHA_KDS_ZONE_MAX_INGRESSES", "kdsZoneMaxIngresses", HY_OPT_UINT,
     O(zone_max_ingresses), "16", "most ZoneIngresses one zone may register"},
    {"kds-ingress-max-services", "HYPHA_KDS_INGRESS_MAX_SERVICES", "kdsIngressMaxServices",
     HY_OPT_UINT, O(ingress_max_services), "5000",
     "most availableServices one ZoneIngress may advertise"},
    {"kds-store-headroom", "HYPHA_KDS_STORE_HEADROOM", "kdsStoreHeadroom", HY_OPT_SIZE,
     O(store_headroom), "64Mi",
     "zones' writes are refused when less than this is free in the store, so deletes still fit"},
};

static const struct hy_config_spec spec = {
    .program = "hypha-global",
    .summary = "Hypha global control plane: the resource API, zone registry and mesh CAs (also: "
               "hypha-global migrate [OPTIONS], hypha-global store copy --help)",
    .opts = options,
    .nopts = sizeof(options) / sizeof(options[0]),
    .config_env = "HYPHA_CONFIG",
};

static int open_cp(void *state, const void *cfg, uv_loop_t *loop)
{
    return hy_global_open(state, cfg, loop);
}

static void stop_cp(void *state)
{
    hy_global_stop(state);
}

static void close_cp(void *state)
{
    hy_global_close(state);
}

int main(int argc, char **argv)
{
    struct hy_global_cfg cfg = {0};
    int rc = hy_cp_store_command(&spec, &cfg, offsetof(struct hy_global_cfg, cp), argc, argv);
    if (rc >= 0)
        return rc;
    struct hy_global state;
    const struct hy_main_program p = {
        .spec = &spec,
        .cfg = &cfg,
        .log_level_offset = offsetof(struct hy_global_cfg, cp.log_level),
        .component = "global",
        .state = &state,
        .open = open_cp,
        .stop = stop_cp,
        .close = close_cp,
    };
    return hy_main(&p, argc, argv);
}
