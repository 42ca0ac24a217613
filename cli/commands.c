/* The command table: every hyphactl command, its arguments and flags, as
 * data that dispatch, --help and the bash completion script all read. */
#include <stddef.h>

#include "cli.h"
#include "poison.h"

#define FILE_VALUE "@file"

const struct hy_flag hy_cli_global_flags[] = {
    {"cp", 0, "URL|NAME", "control plane to talk to: a URL or a configured name (env HYPHA_CP)",
     NULL},
    {"config", 0, "FILE", "configuration file (env HYPHACTL_CONFIG; default ~/.hypha/config.yaml)",
     FILE_VALUE},
    {"ca-cert-file", 0, "FILE",
     "CA certificates that verify an https control plane (env HYPHA_CA_CERT_FILE)", FILE_VALUE},
    {"auth-token", 0, "TOKEN", "admin token, sent as a bearer token (env HYPHA_AUTH_TOKEN)", NULL},
    {"help", 'h', NULL, "help for the command", NULL},
    {0},
};

static const struct hy_flag apply_flags[] = {
    {"file", 'f', "FILE", "YAML or JSON file to apply, - for standard input (repeatable)",
     FILE_VALUE},
    {"dry-run", 0, NULL, "validate on the control plane without writing anything", NULL},
    {0},
};

static const struct hy_flag get_flags[] = {
    {"mesh", 'm', "MESH", "mesh of the resources (one resource: default \"default\"; a list: all)",
     NULL},
    {"output", 'o', "FORMAT", "table, yaml or json (default table)", "table yaml json"},
    {"size", 0, "N", "fetch one page of at most N resources", NULL},
    {"offset", 0, "TOKEN", "start at this page (printed when --size leaves more)", NULL},
    {"label", 0, "KEY=VALUE", "only resources with this label (repeatable)", NULL},
    {0},
};

static const struct hy_flag delete_flags[] = {
    {"mesh", 'm', "MESH", "mesh of the resource (default \"default\")", NULL},
    {0},
};

static const struct hy_flag inspect_dps_flags[] = {
    {"mesh", 'm', "MESH", "only the dataplanes of this mesh (default: every mesh)", NULL},
    {"output", 'o', "FORMAT", "table, yaml or json (default table)", "table yaml json"},
    {0},
};

static const struct hy_flag inspect_svcs_flags[] = {
    {"mesh", 'm', "MESH", "only the services of this mesh (default: every mesh)", NULL},
    {0},
};

static const struct hy_flag output_flags[] = {
    {"output", 'o', "FORMAT", "table, yaml or json (default table)", "table yaml json"},
    {0},
};

static const struct hy_flag inspect_dp_flags[] = {
    {"mesh", 'm', "MESH", "mesh of the dataplane (default \"default\")", NULL},
    {"type", 0, "TYPE", "rules, policies, config or stats (default rules)",
     "rules policies config stats"},
    {"output", 'o', "FORMAT", "table (text), yaml or json (default table)", "table yaml json"},
    {0},
};

static const struct hy_flag explain_flags[] = {
    {"mesh", 'm', "MESH", "the mesh (default \"default\")", NULL},
    {"from", 0, "CALLER",
     "the caller: a dataplane, a service, or tags like kuma.io/service=web,env=dev (required)",
     NULL},
    {"to", 0, "CALLEE",
     "the callee: a dataplane, DATAPLANE:INBOUND (its port or name), or a service (required)",
     NULL},
    {"output", 'o', "FORMAT", "table (text), yaml or json (default table)", "table yaml json"},
    {0},
};

static const struct hy_flag zone_token_flags[] = {
    {"zone", 0, "ZONE", "zone the token admits (required)", NULL},
    {"valid-for", 0, "DURATION", "lifetime of the token, like 24h or 30d (default 720h)", NULL},
    {0},
};

static const struct hy_flag dp_token_flags[] = {
    {"mesh", 'm', "MESH", "the Dataplane's mesh (required)", NULL},
    {"name", 0, "NAME", "the Dataplane's name (required)", NULL},
    {"tag", 0, "KEY=VALUE", "a tag the sidecar may claim, like hypha.io/service=web (repeatable)",
     NULL},
    {"zone", 0, "ZONE", "the zone that accepts it (when asking the global control plane)", NULL},
    {"valid-for", 0, "DURATION", "lifetime of the token (default 24h)", NULL},
    {0},
};

static const struct hy_flag ingress_token_flags[] = {
    {"name", 0, "NAME", "the ZoneIngress's name (required)", NULL},
    {"zone", 0, "ZONE", "the zone that accepts it (when asking the global control plane)", NULL},
    {"valid-for", 0, "DURATION", "lifetime of the token (default 24h)", NULL},
    {0},
};

static const struct hy_flag cp_add_flags[] = {
    {"name", 0, "NAME", "name to refer to it by (required)", NULL},
    {"address", 0, "URL", "its API address, like https://global.example:5682 (required)", NULL},
    {"ca-cert-file", 0, "FILE", "CA certificates that verify its https address", FILE_VALUE},
    {"auth-token", 0, "TOKEN", "admin token to send to it", NULL},
    {"overwrite", 0, NULL, "replace a control plane of the same name", NULL},
    {"skip-verify", 0, NULL, "do not check that the address answers before saving", NULL},
    {0},
};

static const struct hy_flag cp_name_flags[] = {
    {"name", 0, "NAME", "name of the control plane (required)", NULL},
    {0},
};

static const struct hy_flag version_flags[] = {
    {"client", 0, NULL, "print only the client's version", NULL},
    {0},
};

static const struct hy_flag no_flags[] = {{0}};

static const struct hy_cmd commands[] = {
    {"apply", NULL, "Create or update resources from YAML or JSON files",
     "Every file is decoded and validated here first; then each file is applied by\n"
     "the control plane in one transaction: all of its resources or none.",
     NULL, 0, 0, apply_flags, hy_cmd_apply},
    {"get", "TYPE [NAME]", "Show one resource or list the resources of a type",
     "TYPE is a type name, its plural or its short name: mesh, meshes, mtp, dp, zones...", "@types",
     1, 2, get_flags, hy_cmd_get},
    {"delete", "TYPE NAME", "Delete a resource", NULL, "@types", 2, 2, delete_flags, hy_cmd_delete},
    {"inspect zones", NULL, "Show the zones and whether they are connected", NULL, NULL, 0, 0,
     no_flags, hy_cmd_inspect_zones},
    {"inspect dataplanes", NULL, "Show the dataplanes, their tags and whether they are connected",
     "STATUS is Online while the sidecar's last connection to its zone is open;\n"
     "TOTAL-UPDATES and TOTAL-ERRORS count the configs sent to it and those it\n"
     "rejected; CERT-EXPIRATION is when its certificate expires (UTC).",
     NULL, 0, 0, inspect_dps_flags, hy_cmd_inspect_dataplanes},
    {"inspect services", NULL,
     "Show the services, their virtual IPs and names, zones and endpoints",
     "VIP and VIP6 are the addresses a transparent sidecar reaches the service by\n"
     "(240.0.0.0/4, fd00:fd00::/64); NAMES resolve to them through its DNS;\n"
     "ENDPOINTS are the instances' inbound address:port.",
     NULL, 0, 0, inspect_svcs_flags, hy_cmd_inspect_services},
    {"inspect zoneingresses", NULL, "Show the zone ingresses and whether they are connected",
     "STATUS is Online while the ingress's last connection to its zone is open;\n"
     "SERVICES counts the services it routes to; an ingress Offline for longer\n"
     "than its zone's --dp-cleanup-age is removed.",
     NULL, 0, 0, output_flags, hy_cmd_inspect_zoneingresses},
    {"inspect dataplane", "NAME",
     "Show what applies to a dataplane: its rules, policies or config; or its sidecar's stats",
     "--type=rules (default): per policy type, the policies selecting it in merge\n"
     "order, what each inbound enforces on callers and what each outbound's\n"
     "policies merge to, every value with the policy and entry it came from, and\n"
     "the fields accepted but not enforced yet.\n"
     "--type=policies: the policies selecting it, and the inbounds and outbounds\n"
     "where a value of each is in effect (APPLIES-TO).\n"
     "--type=config: the config its zone computes for its sidecar (ask the zone's\n"
     "control plane; the global one says which zone). The certificate material,\n"
     "issued per connection, is left out.\n"
     "--type=stats: the sidecar's own metrics (Prometheus text, what its admin\n"
     "server's /metrics shows), which its zone's control plane asks it for over\n"
     "its connection: ask that zone; the sidecar must be connected to it.",
     NULL, 1, 1, inspect_dp_flags, hy_cmd_inspect_dataplane},
    {"explain", NULL, "Explain whether a caller may call a dataplane, and which policy decides",
     "Prints, for each inbound --to names, the decision (allowed, denied or\n"
     "shadow-denied), the deciding policy and entry, and every from entry and\n"
     "rules matcher the caller matched, in order. The control plane decides with\n"
     "the function the sidecars enforce with.\n"
     "Examples:\n"
     "  hyphactl explain --from web-1 --to backend-1\n"
     "  hyphactl explain --from kuma.io/service=web,env=dev --to backend-1:8080\n"
     "  hyphactl explain --from web --to backend",
     NULL, 0, 0, explain_flags, hy_cmd_explain},
    {"generate zone-token", NULL, "Generate a token that admits a zone control plane", NULL, NULL,
     0, 0, zone_token_flags, hy_cmd_generate_zone_token},
    {"generate dataplane-token", NULL, "Generate a token a sidecar presents to its zone", NULL,
     NULL, 0, 0, dp_token_flags, hy_cmd_generate_dataplane_token},
    {"generate zone-ingress-token", NULL, "Generate a token a zone ingress presents to its zone",
     NULL, NULL, 0, 0, ingress_token_flags, hy_cmd_generate_ingress_token},
    {"config control-planes add", NULL, "Add a control plane and make it the current one", NULL,
     NULL, 0, 0, cp_add_flags, hy_cmd_cp_add},
    {"config control-planes list", NULL, "List the configured control planes", NULL, NULL, 0, 0,
     no_flags, hy_cmd_cp_list},
    {"config control-planes switch", NULL, "Make another control plane the current one", NULL, NULL,
     0, 0, cp_name_flags, hy_cmd_cp_switch},
    {"config control-planes remove", NULL, "Remove a control plane from the configuration", NULL,
     NULL, 0, 0, cp_name_flags, hy_cmd_cp_remove},
    {"version", NULL, "Print the client's and the control plane's versions", NULL, NULL, 0, 0,
     version_flags, hy_cmd_version},
    {"completion", "SHELL", "Print a shell completion script (bash)",
     "Load it in the current shell with: source <(hyphactl completion bash)", "bash", 1, 1,
     no_flags, hy_cmd_completion},
};

const struct hy_cmd *hy_cli_commands(size_t *n)
{
    *n = sizeof(commands) / sizeof(commands[0]);
    return commands;
}
