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
