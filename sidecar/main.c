/* hypha-dp: parse the options, open the sidecar, run the loop until
 * SIGINT/SIGTERM, leave the zone politely, close (agent.h). `install` and
 * `uninstall transparent-proxy` go to tproxy/. */
#include <stddef.h>
#include <string.h>

#include "dp.h"
#include "runner.h"
#include "tproxy_cmd.h"
#include "poison.h"

static const struct hy_option options[] = {
    HY_AGENT_OPTIONS(struct hy_sidecar_cfg, "dataplane", "DATAPLANE", "dataplane",
                     "the Dataplane resource this sidecar presents (YAML or JSON)",
                     "dataplane-token-file", "HYPHA_DATAPLANE_TOKEN_FILE", "dataplaneTokenFile",
                     "the dataplane token (hyphactl generate dataplane-token)", "127.0.0.1:9901",
                     "proxy worker threads, each with its own loop and listening sockets; 0: one "
                     "per CPU"),
    {"transparent", "HYPHA_TRANSPARENT", "transparent", HY_OPT_BOOL,
     offsetof(struct hy_sidecar_cfg, transparent), "false",
     "transparent mode: take the workload's traffic redirected by iptables (hypha-dp install "
     "transparent-proxy) and answer DNS for the mesh's names; the Dataplane's "
     "networking.transparentProxying turns it on too"},
    {"transparent-outbound-port", "HYPHA_TRANSPARENT_OUTBOUND_PORT", "transparentOutboundPort",
     HY_OPT_UINT, offsetof(struct hy_sidecar_cfg, tp_outbound), "15001",
     "where the workload's outgoing TCP is redirected (the Dataplane's redirectPortOutbound wins)"},
    {"transparent-inbound-port", "HYPHA_TRANSPARENT_INBOUND_PORT", "transparentInboundPort",
     HY_OPT_UINT, offsetof(struct hy_sidecar_cfg, tp_inbound), "15006",
     "where incoming TCP to the workload is redirected (the Dataplane's redirectPortInbound wins)"},
    {"transparent-dns-port", "HYPHA_TRANSPARENT_DNS_PORT", "transparentDnsPort", HY_OPT_UINT,
     offsetof(struct hy_sidecar_cfg, tp_dns), "15053",
     "the DNS server on 127.0.0.1 (UDP and TCP) the workload's DNS queries are redirected to"},
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

int main(int argc, char **argv)
{
    struct hy_sidecar_cfg cfg = {0};
    struct hy_sidecar state;
    if (argc > 1 && (!strcmp(argv[1], "install") || !strcmp(argv[1], "uninstall")))
        return hy_tproxy_cmd_main("hypha-dp", argc - 1, argv + 1);
    return hy_agent_main(argc, argv, &spec, &cfg, &state.a, &hy_sidecar_ops);
}
