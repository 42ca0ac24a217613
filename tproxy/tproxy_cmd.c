/* The flags of `hypha-dp install|uninstall transparent-proxy` as one option
 * table (common/config.h), turned into a hy_tproxy_cfg and run. */
#include <pwd.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "config.h"
#include "error.h"
#include "tproxy.h"
#include "tproxy_cmd.h"
#include "poison.h"

struct tp_flags {
    uint64_t port_outbound, port_inbound, port_dns;
    bool redirect_inbound, redirect_dns, dry_run;
    char *dp_uid, *family;
    struct hy_strings excl_in_ports, excl_out_ports, excl_out_ips, excl_out_uids;
};

#define F(field) offsetof(struct tp_flags, field)
static const struct hy_option install_opts[] = {
    {"redirect-outbound-port", NULL, NULL, HY_OPT_UINT, F(port_outbound), "15001",
     "port of the sidecar's outbound listener: outbound TCP goes there"},
    {"redirect-inbound-port", NULL, NULL, HY_OPT_UINT, F(port_inbound), "15006",
     "port of the sidecar's inbound listener: inbound TCP goes there"},
    {"redirect-inbound", NULL, NULL, HY_OPT_BOOL, F(redirect_inbound), "true",
     "redirect inbound TCP (false for a gateway)"},
    {"redirect-dns-port", NULL, NULL, HY_OPT_UINT, F(port_dns), "15053",
     "port of the sidecar's DNS resolver: UDP and TCP 53 go there"},
    {"redirect-dns", NULL, NULL, HY_OPT_BOOL, F(redirect_dns), "true",
     "redirect DNS queries to the sidecar"},
    {"dp-uid", NULL, NULL, HY_OPT_STRING, F(dp_uid), "5678",
     "the user (uid or name) hypha-dp runs as: its own traffic is never redirected"},
    {"exclude-inbound-ports", NULL, NULL, HY_OPT_STRINGS, F(excl_in_ports), "22",
     "inbound ports not redirected (keeps SSH reachable)"},
    {"exclude-outbound-ports", NULL, NULL, HY_OPT_STRINGS, F(excl_out_ports), NULL,
     "outbound destination ports not redirected"},
    {"exclude-outbound-ips", NULL, NULL, HY_OPT_STRINGS, F(excl_out_ips), NULL,
     "outbound destinations (IPv4/IPv6 addresses or CIDRs) not redirected"},
    {"exclude-outbound-uids", NULL, NULL, HY_OPT_STRINGS, F(excl_out_uids), NULL,
     "users whose outbound traffic is not redirected"},
    {"ip-family-mode", NULL, NULL, HY_OPT_STRING, F(family), "dualstack",
     "dualstack, ipv4 or ipv6: which of iptables and ip6tables get rules"},
    {"dry-run", NULL, NULL, HY_OPT_BOOL, F(dry_run), "false",
     "print the rules (iptables-restore input) and change nothing"},
};
#undef F

/* Uninstall removes whatever is ours, so it needs no settings. */
static const struct hy_option uninstall_opts[] = {
    {"dry-run", NULL, NULL, HY_OPT_BOOL, offsetof(struct tp_flags, dry_run), "false",
     "say what would be removed and change nothing"},
};

static int resolve_uid(const char *s, uint32_t *uid, char *err, size_t errlen)
{
    uint64_t v;
    if (hy_tproxy_parse_uint(s, 0, UINT32_MAX - 1, &v)) {
        *uid = (uint32_t)v;
        return 0;
    }
    struct passwd *pw = getpwnam(s);
    if (!pw) {
        snprintf(err, errlen, "--dp-uid: \"%s\" is neither a uid nor a user of this host", s);
        return HY_EINVAL;
    }
    *uid = pw->pw_uid;
    return 0;
}

static int add_ports(const char *flag, const struct hy_strings *l, uint16_t *ports, size_t *n,
                     char *err, size_t errlen)
{
    char why[128];
    for (size_t i = 0; i < l->n; i++)
        if (hy_tproxy_add_port(ports, n, l->v[i], why, sizeof(why))) {
            snprintf(err, errlen, "--%s: %s", flag, why);
            return HY_EINVAL;
        }
    return 0;
}

static int port_flag(const char *flag, uint64_t v, uint16_t *out, char *err, size_t errlen)
{
    if (v < 1 || v > 65535) {
        snprintf(err, errlen, "--%s: %llu is not a port (1-65535)", flag, (unsigned long long)v);
        return HY_EINVAL;
    }
    *out = (uint16_t)v;
    return 0;
}

static int to_cfg(const struct tp_flags *f, struct hy_tproxy_cfg *cfg, char *err, size_t errlen)
{
    char why[160];
    hy_tproxy_cfg_default(cfg);
    cfg->redirect_inbound = f->redirect_inbound;
    cfg->redirect_dns = f->redirect_dns;
    if (port_flag("redirect-outbound-port", f->port_outbound, &cfg->port_outbound, err, errlen) ||
        port_flag("redirect-inbound-port", f->port_inbound, &cfg->port_inbound, err, errlen) ||
        port_flag("redirect-dns-port", f->port_dns, &cfg->port_dns, err, errlen) ||
        resolve_uid(f->dp_uid, &cfg->dp_uid, err, errlen))
        return HY_EINVAL;
    if (hy_tproxy_parse_family(f->family, &cfg->family_mode)) {
        snprintf(err, errlen, "--ip-family-mode: \"%s\" is not dualstack, ipv4 or ipv6", f->family);
        return HY_EINVAL;
    }
    if (add_ports("exclude-inbound-ports", &f->excl_in_ports, cfg->excl_in_ports,
                  &cfg->n_excl_in_ports, err, errlen) ||
        add_ports("exclude-outbound-ports", &f->excl_out_ports, cfg->excl_out_ports,
                  &cfg->n_excl_out_ports, err, errlen))
        return HY_EINVAL;
    for (size_t i = 0; i < f->excl_out_ips.n; i++)
        if (hy_tproxy_add_cidr(cfg, f->excl_out_ips.v[i], why, sizeof(why))) {
            snprintf(err, errlen, "--exclude-outbound-ips: %s", why);
            return HY_EINVAL;
        }
    for (size_t i = 0; i < f->excl_out_uids.n; i++) {
        uint32_t uid;
        char text[16];
        if (resolve_uid(f->excl_out_uids.v[i], &uid, why, sizeof(why))) {
            snprintf(err, errlen, "--exclude-outbound-uids: \"%s\" is neither a uid nor a user",
                     f->excl_out_uids.v[i]);
            return HY_EINVAL;
        }
        snprintf(text, sizeof(text), "%u", (unsigned)uid);
        if (hy_tproxy_add_uid(cfg, text, why, sizeof(why))) {
            snprintf(err, errlen, "--exclude-outbound-uids: %s", why);
            return HY_EINVAL;
        }
    }
    return 0;
}

static void print_rules(const struct hy_tproxy_cfg *cfg)
{
    for (int family = 4; family <= 6; family += 2) {
        if (!hy_tproxy_wants(cfg, family))
            continue;
        struct hy_buf b = {0};
        if (hy_tproxy_rules(cfg, family, &b) == 0)
            fprintf(stdout, "# %s: %s --noflush\n%s", family == 4 ? "IPv4" : "IPv6",
                    hy_tproxy_tool(family, false), b.data);
        hy_buf_fini(&b);
    }
}

int hy_tproxy_cmd_main(const char *program, int argc, char **argv)
{
    bool install = !strcmp(argv[0], "install");
    char name[64], err[512];
    snprintf(name, sizeof(name), "%s %s", program, argv[0]);
    struct hy_config_spec spec = {
        .program = name,
        .summary = install ? "redirect this network namespace's traffic into the sidecar "
                             "(iptables nat rules, IPv4 and IPv6); idempotent"
                           : "remove every rule install transparent-proxy added, and only those",
        .opts = install ? install_opts : uninstall_opts,
        .nopts = install ? sizeof(install_opts) / sizeof(install_opts[0])
                         : sizeof(uninstall_opts) / sizeof(uninstall_opts[0]),
        .args = "transparent-proxy",
    };
    struct tp_flags f = {0};
    int rc = hy_config_run_command(&spec, &f, argc, argv, "transparent-proxy", "[flags]");
    if (rc >= 0)
        return rc;
    struct hy_tproxy_cfg cfg;
    if (install && to_cfg(&f, &cfg, err, sizeof(err))) {
        fprintf(stderr, "%s: %s\n", name, err);
        hy_config_fini(&spec, &f);
        return 2;
    }
    if (!install)
        hy_tproxy_cfg_default(&cfg);
    if (f.dry_run) {
        if (install)
            print_rules(&cfg);
        else
            fprintf(stdout,
                    "# would remove every nat chain named %s* and every rule jumping "
                    "to one, IPv4 and IPv6\n",
                    HY_TPROXY_CHAIN_PREFIX);
        hy_config_fini(&spec, &f);
        return 0;
    }
    rc = install ? hy_tproxy_install(&cfg, err, sizeof(err))
                 : hy_tproxy_uninstall(&cfg, err, sizeof(err));
    if (rc)
        fprintf(stderr, "%s: %s\n", name, err);
    hy_config_fini(&spec, &f);
    return rc ? 1 : 0;
}
