/* The sidecar's DNS (transparent mode): A and AAAA answers for the mesh's
 * service names with their virtual IPs (from the config's outbounds), and
 * every other query forwarded to the host's resolvers (/etc/resolv.conf).
 * Messages are parsed and built with ldns, loaded when the server starts
 * (dns_ldns.h) so that sidecars without DNS never map it or its
 * libcrypto. dns.c holds the table and the
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
 * otherwise; out of memory is HY_DNS_MALFORMED with *out NULL (dropped).
 * Here and in hy_dns_servfail, ldns must be loaded (hy_dns_ldns_load
 * returned 0; hy_dns_new does it). */
enum hy_dns_action hy_dns_handle(const struct hy_dns_table *t, const uint8_t *in, size_t len,
                                 uint8_t **out, size_t *outlen);

/* A SERVFAIL answer to query in[0..len) (its upstreams failed), or NULL. */
uint8_t *hy_dns_servfail(const uint8_t *in, size_t len, size_t *outlen);

/* ----- DNS over TCP (RFC 1035 4.2.2, RFC 7766) ----- */

#define HY_DNS_TCP_MAX_QUERY 4096 /* bytes of one query a client sends over TCP */
#define HY_DNS_TCP_MAX_CLIENTS 64 /* TCP clients at once; more are refused */
#define HY_DNS_TCP_IDLE_MS 10000  /* a TCP client silent this long is closed */
#define HY_DNS_MAX_INFLIGHT 256   /* queries waiting for an upstream at once */

enum hy_dns_frame {
    HY_DNS_FRAME_MORE,  /* not a whole message yet: read on */
    HY_DNS_FRAME_OK,    /* a message of *msglen bytes at buf + 2 */
    HY_DNS_FRAME_SHORT, /* its length (*msglen) is below a DNS header: malformed */
    HY_DNS_FRAME_LONG,  /* its length (*msglen) is above max: refused */
};

/* The first message of a TCP stream's bytes buf[0..len): a two-byte
 * length (network order) and that many bytes. *msglen is the length the
 * prefix says whenever there are two bytes. Cannot fail. */
enum hy_dns_frame hy_dns_tcp_frame(const uint8_t *buf, size_t len, size_t max, size_t *msglen);

/* The nameservers of a resolv.conf text (at most max), port 53, leaving
 * out a loopback one when skip_loopback (our own port is 53: it would be
 * us). Returns how many. */
size_t hy_dns_parse_resolv(const char *text, bool skip_loopback, struct sockaddr_storage *out,
                           size_t max);

/* ----- the server (dns_server.c) ----- */
struct hy_dns;
struct hy_agent_current;
struct hy_metrics;

/* Listens on 127.0.0.1:port and [::1]:port (when the host has IPv6), UDP
 * and TCP, on loop; forwards over the transport the query came on; answers from the
 * snapshot current holds; its counters in m (hypha_dp_dns_queries_total).
 * Loads ldns first (hy_dns_ldns_load). 0, or a negative code (logged:
 * -ELIBACC when ldns cannot be loaded, -errno such as -EADDRINUSE, or
 * HY_ENOMEM); either way *out is set unless ldns or memory was missing,
 * and is stopped and freed as usual. Control loop. */
int hy_dns_new(uv_loop_t *loop, struct hy_agent_current *current, struct hy_metrics *m,
               uint16_t port, struct hy_dns **out);
/* Closes its handles (run the loop afterwards). NULL is fine. */
void hy_dns_stop(struct hy_dns *d);
/* After stop and a loop run. NULL is fine. */
void hy_dns_free(struct hy_dns *d);

#endif
