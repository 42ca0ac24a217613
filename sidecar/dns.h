/* The sidecar's DNS (transparent mode): A and AAAA answers for the mesh's
 * service names with their virtual IPs (from the config's outbounds), and
 * every other query forwarded to the host's resolvers (/etc/resolv.conf).
 * Messages are parsed and built in dns.c (no DNS library). dns.c holds the table and the
 * query handler (no I/O: unit tests and fuzz_dns drive it); dns_server.c
 * the UDP and TCP server on the control loop. */
#ifndef HY_DNS_H
#define HY_DNS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "dp.pb-c.h"

#define HY_DNS_TTL 60          /* seconds, as Kuma's */
#define HY_DNS_MAX_UPSTREAMS 3 /* nameserver lines read, as the C library's resolver */
#define HY_DNS_TIMEOUT_MS 2000 /* one upstream's answer, before the next is asked */

struct hy_dns_table;

/* The names of cf's outbounds that have a VIP (DpOutbound hostnames) with
 * their addresses. NULL cf: an empty table. On success 0 and *out; on
 * failure HY_ENOMEM, *out NULL. A hostname or VIP that is not valid is
 * left out. */
int hy_dns_table_new(const Hypha__V1__DpConfig *cf, struct hy_dns_table **out);
/* NULL is fine. */
void hy_dns_table_free(struct hy_dns_table *t);
/* name's addresses (name any case, with or without the final dot): true
 * and v4/v6 filled (has6 false when it has no IPv6 VIP), false when the
 * table does not know it. */
bool hy_dns_table_lookup(const struct hy_dns_table *t, const char *name, uint8_t v4[4],
                         uint8_t v6[16], bool *has6);
size_t hy_dns_table_count(const struct hy_dns_table *t);

enum hy_dns_action {
    HY_DNS_ANSWERED,  /* *out is the answer (a mesh name, or NXDOMAIN for an unknown one) */
    HY_DNS_FORWARD,   /* a name outside the mesh: send the query as it is upstream */
    HY_DNS_MALFORMED, /* not a DNS query: *out is a FORMERR answer, or NULL (drop it) */
};

/* Handles one query message in[0..len): the answer (malloc'd, the
 * caller frees it) into *out and *outlen, or nothing. Cannot fail
 * otherwise; out of memory is HY_DNS_MALFORMED with *out NULL (dropped). */
enum hy_dns_action hy_dns_handle(const struct hy_dns_table *t, const uint8_t *in, size_t len,
                                 uint8_t **out, size_t *outlen);

/* Whether in[0..len) is a whole DNS message (its header, then every
 * question and record within it): true with its id and QR flag. */
bool hy_dns_wire_ok(const uint8_t *in, size_t len, uint16_t *id, bool *qr);

/* A SERVFAIL answer to query in[0..len) (its upstreams failed), or NULL. */
uint8_t *hy_dns_servfail(const uint8_t *in, size_t len, size_t *outlen);

/* The nameservers of a resolv.conf text (at most max), port 53, leaving
 * out a loopback one when skip_loopback (our own port is 53: it would be
 * us). Returns how many. */
size_t hy_dns_parse_resolv(const char *text, bool skip_loopback, struct sockaddr_storage *out,
                           size_t max);

/* ----- the server (dns_server.c) ----- */
struct hy_dns;
struct hy_agent_current;
struct hy_metrics;

/* Listens on 127.0.0.1:port, UDP and TCP, on loop; answers from the
 * snapshot current holds; its counters in m (hypha_dp_dns_queries_total).
 * 0, or a negative code (logged: -errno such as -EADDRINUSE, or HY_ENOMEM);
 * either way *out is set unless out of memory made nothing, and is
 * stopped and freed as usual. Control loop. */
int hy_dns_new(uv_loop_t *loop, struct hy_agent_current *current, struct hy_metrics *m,
               uint16_t port, struct hy_dns **out);
/* Closes its handles (run the loop afterwards). NULL is fine. */
void hy_dns_stop(struct hy_dns *d);
/* After stop and a loop run. NULL is fine. */
void hy_dns_free(struct hy_dns *d);

#endif
