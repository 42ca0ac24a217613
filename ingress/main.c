/* hypha-ingress: parse the options, open the ingress, run the loop until
 * SIGINT/SIGTERM, leave the zone politely (it deregisters the ZoneIngress),
 * close (agent.h). */
#include <stddef.h>

#include "ingress.h"
#include "runner.h"
#include "poison.h"

#define O(field) offsetof(struct hy_ing_cfg, field)

static const struct hy_option options[] = {
    HY_AGENT_OPTIONS(struct hy_ing_cfg, "ingress", "INGRESS", "ingress",
                     "the ZoneIngress resource this ingress presents (YAML or JSON)", "token-file",
                     "HYPHA_TOKEN_FILE", "tokenFile",
                     "the zone-ingress token (hyphactl generate zone-ingress-token)",
                     "127.0.0.1:9902",
                     "relay threads, each with its own loop and listening socket; 0: one per CPU"),
    {"relay", "HYPHA_RELAY", "relay", HY_OPT_STRING, O(relay), "adaptive",
     "how relayed bytes move: adaptive (copy small messages, one read and one write each; "
     "splice bulk), splice (splice(2) through a pipe, never entering user space), copy"},
    {"splice", "HYPHA_SPLICE", "splice", HY_OPT_BOOL, O(splice), "true",
     "false: the same as --relay=copy (kept for older configurations)"},
    {"allow-local-endpoints", "HYPHA_ALLOW_LOCAL_ENDPOINTS", "allowLocalEndpoints", HY_OPT_BOOL,
     O(allow_local_endpoints), "false",
     "UNSAFE, single-host development only: relay to endpoints on this host's loopback, "
     "unspecified and link-local addresses too, which lets anyone who can register a Dataplane "
     "reach this host's loopback services (the control plane's API) through the ingress"},
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

int main(int argc, char **argv)
{
    struct hy_ing_cfg cfg = {0};
    struct hy_ing state;
    return hy_agent_main(argc, argv, &spec, &cfg, &state.a, &hy_ing_ops);
}
