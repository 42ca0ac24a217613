/* Transparent-proxy redirection rules, one implementation for both entry
 * points (`hypha-dp install transparent-proxy` on a VM, hypha-cni in a pod):
 * the nat-table rule set in Kuma's shape, generated as iptables-restore
 * text, and installed, checked and removed in the current network namespace
 * through iptables-restore/iptables-save (and their ip6tables twins). */
#ifndef HY_TPROXY_H
#define HY_TPROXY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HY_TPROXY_MAX_LIST 64 /* entries in each exclusion list */
#define HY_TPROXY_CIDR_MAX 64 /* "ffff:...:ffff/128" and a NUL */

/* Defaults, as Kuma's. */
#define HY_TPROXY_PORT_OUTBOUND 15001
#define HY_TPROXY_PORT_INBOUND 15006
#define HY_TPROXY_PORT_DNS 15053
#define HY_TPROXY_DP_UID 5678

/* Every chain we own starts with this; nothing else of ours exists. */
#define HY_TPROXY_CHAIN_PREFIX "HYPHA_MESH_"

enum hy_tproxy_family_mode {
    HY_TPROXY_DUALSTACK, /* IPv4 and IPv6 (IPv6 skipped with a warning when the kernel has none) */
    HY_TPROXY_IPV4,
    HY_TPROXY_IPV6,
};

struct hy_tproxy_cidr {
    int family;                    /* 4 or 6 */
    char text[HY_TPROXY_CIDR_MAX]; /* canonical, as iptables-save prints it: "10.0.0.0/8" */
};

struct hy_tproxy_cfg {
    uint16_t port_outbound, port_inbound, port_dns;
    bool redirect_inbound; /* false: outbound only (a gateway) */
    bool redirect_dns;     /* UDP and TCP 53 to port_dns */
    uint32_t dp_uid;       /* the sidecar's uid: its own traffic is never redirected */
    enum hy_tproxy_family_mode family_mode;
    uint16_t excl_in_ports[HY_TPROXY_MAX_LIST];
    size_t n_excl_in_ports;
    uint16_t excl_out_ports[HY_TPROXY_MAX_LIST];
    size_t n_excl_out_ports;
    struct hy_tproxy_cidr excl_out_cidrs[HY_TPROXY_MAX_LIST];
    size_t n_excl_out_cidrs;
    uint32_t excl_out_uids[HY_TPROXY_MAX_LIST];
    size_t n_excl_out_uids;
};

/* Kuma's defaults: ports 15001/15006/15053, uid 5678, inbound and DNS
 * redirected, dual stack, nothing excluded. Cannot fail. */
void hy_tproxy_cfg_default(struct hy_tproxy_cfg *cfg);

/* Parsers for one list entry each, appending to cfg. Return 0, or HY_EINVAL
 * with err saying what is wrong ("\"70000\" is not a port (1-65535)"), or
 * HY_ETOOBIG past HY_TPROXY_MAX_LIST. */
int hy_tproxy_add_port(uint16_t *ports, size_t *n, const char *s, char *err, size_t errlen);
int hy_tproxy_add_cidr(struct hy_tproxy_cfg *cfg, const char *s, char *err, size_t errlen);
int hy_tproxy_add_uid(struct hy_tproxy_cfg *cfg, const char *s, char *err, size_t errlen);
/* "dualstack", "ipv4" or "ipv6". */
int hy_tproxy_parse_family(const char *s, enum hy_tproxy_family_mode *out);
/* Parses a decimal number in [lo, hi]; false on anything else. */
bool hy_tproxy_parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out);

/* Appends the rule set for family (4 or 6) in iptables-save's canonical
 * form: "*nat", our chain declarations, every rule, "COMMIT". Fed to
 * iptables-restore --noflush it installs; each "-A" line is also what
 * iptables-save prints back, which is how install and check recognise it.
 * Returns 0 or HY_ENOMEM. */
int hy_tproxy_rules(const struct hy_tproxy_cfg *cfg, int family, struct hy_buf *out);

/* Whether family is in cfg's family mode. Cannot fail. */
bool hy_tproxy_wants(const struct hy_tproxy_cfg *cfg, int family);

/* The operations, in the current network namespace, for every family cfg
 * wants. Each family's change is one iptables-restore transaction: it all
 * applies or nothing does. On failure err says what failed and how. */

/* Installs; a second install with the same cfg changes nothing, one with
 * another cfg replaces ours. Returns 0, or a negative code. */
int hy_tproxy_install(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen);
/* Removes every chain named HYPHA_MESH_* and every rule jumping to one;
 * nothing else. Nothing installed is not an error. */
int hy_tproxy_uninstall(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen);
/* Returns 0 when every rule of cfg is in place and nothing else of ours is,
 * else HY_ENOTFOUND with err naming the first rule missing or extra. */
int hy_tproxy_check(const struct hy_tproxy_cfg *cfg, char *err, size_t errlen);

/* The program a family uses: iptables-save/-restore or ip6tables-*
 * (Debian's alternatives pick the nft backend). Static string. */
const char *hy_tproxy_tool(int family, bool save);

#endif
