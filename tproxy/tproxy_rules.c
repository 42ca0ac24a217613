/* The rule set in Kuma's shape (its KUMA_MESH_* chains, our HYPHA_MESH_*),
 * generated as iptables-save text, and the parsers for its settings. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "tproxy.h"
#include "poison.h"

void hy_tproxy_cfg_default(struct hy_tproxy_cfg *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->port_outbound = HY_TPROXY_PORT_OUTBOUND;
    cfg->port_inbound = HY_TPROXY_PORT_INBOUND;
    cfg->port_dns = HY_TPROXY_PORT_DNS;
    cfg->redirect_inbound = true;
    cfg->redirect_dns = true;
    cfg->dp_uid = HY_TPROXY_DP_UID;
    cfg->family_mode = HY_TPROXY_DUALSTACK;
}

bool hy_tproxy_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    if (!s || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

int hy_tproxy_add_port(uint16_t *ports, size_t *n, const char *s, char *err, size_t errlen)
{
    uint64_t v;
    if (!hy_tproxy_parse_uint(s, 1, 65535, &v)) {
        snprintf(err, errlen, "\"%s\" is not a port (1-65535)", s);
        return HY_EINVAL;
    }
    for (size_t i = 0; i < *n; i++)
        if (ports[i] == v)
            return 0; /* a duplicate would only repeat a rule */
    if (*n >= HY_TPROXY_MAX_LIST) {
        snprintf(err, errlen, "more than %d ports", HY_TPROXY_MAX_LIST);
        return HY_ETOOBIG;
    }
    ports[(*n)++] = (uint16_t)v;
    return 0;
}

int hy_tproxy_add_uid(struct hy_tproxy_cfg *cfg, const char *s, char *err, size_t errlen)
{
    uint64_t v;
    if (!hy_tproxy_parse_uint(s, 0, UINT32_MAX - 1, &v)) {
        snprintf(err, errlen, "\"%s\" is not a uid (a number)", s);
        return HY_EINVAL;
    }
    if (cfg->n_excl_out_uids >= HY_TPROXY_MAX_LIST) {
        snprintf(err, errlen, "more than %d uids", HY_TPROXY_MAX_LIST);
        return HY_ETOOBIG;
    }
    cfg->excl_out_uids[cfg->n_excl_out_uids++] = (uint32_t)v;
    return 0;
}

/* Zeroes the host bits past prefix, as iptables does before printing. */
static void mask_bits(unsigned char *a, size_t bytes, unsigned prefix)
{
    for (size_t i = 0; i < bytes; i++) {
        unsigned keep = prefix >= 8 * (i + 1) ? 8 : prefix > 8 * i ? prefix - 8 * i : 0;
        a[i] &= (unsigned char)(0xff00u >> keep);
    }
}

int hy_tproxy_add_cidr(struct hy_tproxy_cfg *cfg, const char *s, char *err, size_t errlen)
{
    char host[INET6_ADDRSTRLEN + 1];
    const char *slash = strchr(s, '/');
    size_t hlen = slash ? (size_t)(slash - s) : strlen(s);
    unsigned char a[16];
    int family;
    if (hlen == 0 || hlen >= sizeof(host))
        goto bad;
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (inet_pton(AF_INET, host, a) == 1)
        family = 4;
    else if (inet_pton(AF_INET6, host, a) == 1)
        family = 6;
    else
        goto bad;
    uint64_t prefix = family == 4 ? 32 : 128;
    if (slash && !hy_tproxy_parse_uint(slash + 1, 0, prefix, &prefix))
        goto bad;
    mask_bits(a, family == 4 ? 4 : 16, (unsigned)prefix);
    if (cfg->n_excl_out_cidrs >= HY_TPROXY_MAX_LIST) {
        snprintf(err, errlen, "more than %d addresses", HY_TPROXY_MAX_LIST);
        return HY_ETOOBIG;
    }
    struct hy_tproxy_cidr *c = &cfg->excl_out_cidrs[cfg->n_excl_out_cidrs];
    c->family = family;
    inet_ntop(family == 4 ? AF_INET : AF_INET6, a, host, sizeof(host));
    snprintf(c->text, sizeof(c->text), "%s/%u", host, (unsigned)prefix);
    cfg->n_excl_out_cidrs++;
    return 0;
bad:
    snprintf(err, errlen, "\"%s\" is not an IPv4 or IPv6 address or CIDR (10.0.0.0/8, fd00::/8)",
             s);
    return HY_EINVAL;
}

int hy_tproxy_parse_family(const char *s, enum hy_tproxy_family_mode *out)
{
    if (!strcmp(s, "dualstack"))
        *out = HY_TPROXY_DUALSTACK;
    else if (!strcmp(s, "ipv4"))
        *out = HY_TPROXY_IPV4;
    else if (!strcmp(s, "ipv6"))
        *out = HY_TPROXY_IPV6;
    else
        return HY_EINVAL;
    return 0;
}

bool hy_tproxy_wants(const struct hy_tproxy_cfg *cfg, int family)
{
    return cfg->family_mode == HY_TPROXY_DUALSTACK ||
           (family == 4 ? cfg->family_mode == HY_TPROXY_IPV4 : cfg->family_mode == HY_TPROXY_IPV6);
}

const char *hy_tproxy_tool(int family, bool save)
{
    if (family == 6)
        return save ? "ip6tables-save" : "ip6tables-restore";
    return save ? "iptables-save" : "iptables-restore";
}

#define IN HY_TPROXY_CHAIN_PREFIX "INBOUND"
#define IN_REDIR HY_TPROXY_CHAIN_PREFIX "INBOUND_REDIRECT"
#define OUT HY_TPROXY_CHAIN_PREFIX "OUTBOUND"
#define OUT_REDIR HY_TPROXY_CHAIN_PREFIX "OUTBOUND_REDIRECT"
#define DNS HY_TPROXY_CHAIN_PREFIX "DNS"

int hy_tproxy_rules(const struct hy_tproxy_cfg *cfg, int family, struct hy_buf *out)
{
    /* Kuma's loopback addresses: the host itself, and the source the
     * sidecar's inbound side connects to the app from (never redirected). */
    const char *lo_host = family == 4 ? "127.0.0.1/32" : "::1/128";
    const char *lo_passthrough = family == 4 ? "127.0.0.6/32" : "::6/128";
    unsigned uid = cfg->dp_uid;
    int rc = 0;
#define R(...)                                                                                     \
    do {                                                                                           \
        if (!rc)                                                                                   \
            rc = hy_buf_printf(out, __VA_ARGS__);                                                  \
    } while (0)

    R("*nat\n");
    if (cfg->redirect_inbound)
        R(":" IN " - [0:0]\n:" IN_REDIR " - [0:0]\n");
    R(":" OUT " - [0:0]\n:" OUT_REDIR " - [0:0]\n");
    if (cfg->redirect_dns)
        R(":" DNS " - [0:0]\n");

    /* Entry points: the only rules outside our chains. */
    if (cfg->redirect_inbound)
        R("-A PREROUTING -p tcp -j " IN "\n");
    if (cfg->redirect_dns)
        R("-A OUTPUT -p udp -m udp --dport 53 -j " DNS "\n");
    R("-A OUTPUT -p tcp -j " OUT "\n");

    if (cfg->redirect_inbound) {
        for (size_t i = 0; i < cfg->n_excl_in_ports; i++)
            R("-A " IN " -p tcp -m tcp --dport %u -j RETURN\n", cfg->excl_in_ports[i]);
        R("-A " IN " -p tcp -j " IN_REDIR "\n");
        R("-A " IN_REDIR " -p tcp -j REDIRECT --to-ports %u\n", cfg->port_inbound);
    }

    R("-A " OUT " -s %s -o lo -j RETURN\n", lo_passthrough);
    for (size_t i = 0; i < cfg->n_excl_out_uids; i++)
        R("-A " OUT " -m owner --uid-owner %u -j RETURN\n", (unsigned)cfg->excl_out_uids[i]);
    if (cfg->redirect_dns) {
        /* TCP DNS: the sidecar's own queries go out, the app's (to any
         * resolver, the host's 127.0.0.53 too) go to the sidecar. */
        R("-A " OUT " -p tcp -m tcp --dport 53 -m owner --uid-owner %u -j RETURN\n", uid);
        R("-A " OUT " -p tcp -m tcp --dport 53 -j REDIRECT --to-ports %u\n", cfg->port_dns);
    }
    if (cfg->redirect_inbound)
        /* The sidecar calling its own workload by a local address that is
         * not loopback goes through the inbound side, as any client would. */
        R("-A " OUT " ! -d %s -o lo -m owner --uid-owner %u -j " IN_REDIR "\n", lo_host, uid);
    /* The app talking to itself over loopback stays local. */
    R("-A " OUT " -o lo -m owner ! --uid-owner %u -j RETURN\n", uid);
    R("-A " OUT " -m owner --uid-owner %u -j RETURN\n", uid);
    for (size_t i = 0; i < cfg->n_excl_out_ports; i++)
        R("-A " OUT " -p tcp -m tcp --dport %u -j RETURN\n", cfg->excl_out_ports[i]);
    for (size_t i = 0; i < cfg->n_excl_out_cidrs; i++)
        if (cfg->excl_out_cidrs[i].family == family)
            R("-A " OUT " -d %s -j RETURN\n", cfg->excl_out_cidrs[i].text);
    R("-A " OUT " -d %s -j RETURN\n", lo_host);
    R("-A " OUT " -j " OUT_REDIR "\n");
    R("-A " OUT_REDIR " -p tcp -j REDIRECT --to-ports %u\n", cfg->port_outbound);

    if (cfg->redirect_dns) {
        for (size_t i = 0; i < cfg->n_excl_out_uids; i++)
            R("-A " DNS " -m owner --uid-owner %u -j RETURN\n", (unsigned)cfg->excl_out_uids[i]);
        R("-A " DNS " -m owner --uid-owner %u -j RETURN\n", uid);
        R("-A " DNS " -p udp -j REDIRECT --to-ports %u\n", cfg->port_dns);
    }
    R("COMMIT\n");
#undef R
    return rc;
}
