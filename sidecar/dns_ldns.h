/* ldns for the transparent mode's DNS (dns.h), loaded with dlopen when
 * the DNS starts instead of linked: Debian's libldns links libcrypto and
 * libssl (~1.9 MiB of an idle sidecar's RSS), which every sidecar would
 * map otherwise, DNS or not. dns.c and dns_server.c call ldns through LDNS,
 * the table of the functions they use; the types and macros still come
 * from <ldns/ldns.h>. */
#ifndef HY_DNS_LDNS_H
#define HY_DNS_LDNS_H

#include <stdbool.h>
#include <stddef.h>

#include <ldns/ldns.h>

#define HY_DNS_LDNS_LIB "libldns.so.3" /* the SONAME of Debian's libldns3 */

/* X(name) for each ldns_<name> that dns.c and dns_server.c call. The
 * header's static inline ones (ldns_read_uint16, ldns_write_uint16) need
 * no entry. A function missing here fails the link of hypha-dp, which
 * does not link ldns. */
#define HY_DNS_LDNS_FUNCS(X)                                                                       \
    X(pkt2wire)                                                                                    \
    X(pkt_free)                                                                                    \
    X(pkt_get_opcode)                                                                              \
    X(pkt_id)                                                                                      \
    X(pkt_new)                                                                                     \
    X(pkt_push_rr)                                                                                 \
    X(pkt_qdcount)                                                                                 \
    X(pkt_qr)                                                                                      \
    X(pkt_question)                                                                                \
    X(pkt_rd)                                                                                      \
    X(pkt_set_aa)                                                                                  \
    X(pkt_set_id)                                                                                  \
    X(pkt_set_opcode)                                                                              \
    X(pkt_set_qr)                                                                                  \
    X(pkt_set_ra)                                                                                  \
    X(pkt_set_rcode)                                                                               \
    X(pkt_set_rd)                                                                                  \
    X(rdf2str)                                                                                     \
    X(rdf_clone)                                                                                   \
    X(rdf_deep_free)                                                                               \
    X(rdf_new_frm_data)                                                                            \
    X(rr_clone)                                                                                    \
    X(rr_free)                                                                                     \
    X(rr_get_class)                                                                                \
    X(rr_get_type)                                                                                 \
    X(rr_list_rr)                                                                                  \
    X(rr_new)                                                                                      \
    X(rr_owner)                                                                                    \
    X(rr_push_rdf)                                                                                 \
    X(rr_set_class)                                                                                \
    X(rr_set_owner)                                                                                \
    X(rr_set_ttl)                                                                                  \
    X(rr_set_type)                                                                                 \
    X(wire2pkt)

/* One pointer per function, typed from ldns's own prototype: pkt_new is
 * ldns_pkt_new. */
struct hy_dns_ldns {
#define HY_DNS_LDNS_FIELD(name) __typeof__(ldns_##name) *name;
    HY_DNS_LDNS_FUNCS(HY_DNS_LDNS_FIELD)
#undef HY_DNS_LDNS_FIELD
};

/* The process's table: every pointer NULL until hy_dns_ldns_load returned
 * 0, then set for good (never unloaded). */
extern const struct hy_dns_ldns *const hy_dns_ldns;
#define LDNS hy_dns_ldns /* LDNS->pkt_new() is ldns_pkt_new() */

/* Loads HY_DNS_LDNS_LIB into hy_dns_ldns, once per process: later calls
 * return 0 at once. Thread-safe; a thread that calls ldns through the
 * table must have called it (or been started after a call returned 0).
 * 0, or -ELIBACC with why[0..size) saying which library or function is
 * missing and what to install (nothing is left loaded then, and a later
 * call tries again). */
int hy_dns_ldns_load(char *why, size_t size);
/* Has hy_dns_ldns_load succeeded in this process? Cannot fail. */
bool hy_dns_ldns_loaded(void);

/* The loader under hy_dns_ldns_load, with the library named (tests name
 * one that is missing, or one without ldns's functions): dlopens lib and
 * fills *t with its functions. 0 and *handle (the caller closes it with
 * hy_dns_ldns_close), or -ELIBACC, why filled, *handle NULL and nothing
 * left open. */
int hy_dns_ldns_open(const char *lib, struct hy_dns_ldns *t, void **handle, char *why, size_t size);
/* dlcloses a handle of hy_dns_ldns_open. NULL is fine. */
void hy_dns_ldns_close(void *handle);

#endif
