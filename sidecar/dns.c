/* The sidecar's DNS answers (dns.h): a sorted table of the mesh's names
 * and one query handler, every message parsed and built by ldns (called
 * through LDNS, loaded by hy_dns_ldns_load: dns_ldns.h). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "dns_ldns.h"
#include "error.h"
#include "poison.h"

struct dns_name {
    char name[256]; /* lower case, no final dot */
    uint8_t v4[4], v6[16];
    bool has6;
};

struct hy_dns_table {
    struct dns_name *v; /* sorted by name */
    size_t n;
};

static int name_cmp(const void *a, const void *b)
{
    return strcmp(((const struct dns_name *)a)->name, ((const struct dns_name *)b)->name);
}

/* name lower-cased without its final dot into buf; false if too long */
static bool norm(const char *name, char *buf, size_t size)
{
    size_t n = strlen(name);
    if (n && name[n - 1] == '.')
        n--;
    if (n >= size)
        return false;
    for (size_t i = 0; i < n; i++)
        buf[i] = (char)tolower((unsigned char)name[i]);
    buf[n] = '\0';
    return true;
}

int hy_dns_table_new(const Hypha__V1__DpConfig *cf, struct hy_dns_table **out)
{
    struct hy_dns_table *t = calloc(1, sizeof(*t));
    size_t cap = 0;
    *out = NULL;
    if (!t)
        return HY_ENOMEM;
    for (size_t i = 0; cf && i < cf->n_outbounds; i++) {
        const Hypha__V1__DpOutbound *o = cf->outbounds[i];
        struct dns_name e = {0};
        if (!o->vip || inet_pton(AF_INET, o->vip, e.v4) != 1)
            continue;
        e.has6 = o->vip6 && inet_pton(AF_INET6, o->vip6, e.v6) == 1;
        for (size_t k = 0; k < o->n_hostnames; k++) {
            if (!o->hostnames[k] || !norm(o->hostnames[k], e.name, sizeof(e.name)) || !e.name[0])
                continue;
            if (t->n == cap) {
                cap = cap ? 2 * cap : 32;
                struct dns_name *v = realloc(t->v, cap * sizeof(*v));
                if (!v) {
                    hy_dns_table_free(t);
                    return HY_ENOMEM;
                }
                t->v = v;
            }
            t->v[t->n++] = e;
        }
    }
    if (t->n)
        qsort(t->v, t->n, sizeof(*t->v), name_cmp);
    *out = t;
    return 0;
}

void hy_dns_table_free(struct hy_dns_table *t)
{
    if (!t)
        return;
    free(t->v);
    free(t);
}

size_t hy_dns_table_count(const struct hy_dns_table *t)
{
    return t ? t->n : 0;
}

bool hy_dns_table_lookup(const struct hy_dns_table *t, const char *name, uint8_t v4[4],
                         uint8_t v6[16], bool *has6)
{
    struct dns_name want;
    if (!t || !t->n || !norm(name, want.name, sizeof(want.name)))
        return false;
    const struct dns_name *e = bsearch(&want, t->v, t->n, sizeof(want), name_cmp);
    if (!e)
        return false;
    memcpy(v4, e->v4, 4);
    memcpy(v6, e->v6, 16);
    *has6 = e->has6;
    return true;
}

/* Is name (normalised) in a zone the mesh answers for: "mesh" and
 * "mesh.local", and the names under them? */
static bool in_mesh_zone(const char *name)
{
    static const char *const zones[] = {"mesh", "mesh.local"};
    size_t n = strlen(name);
    for (size_t i = 0; i < sizeof(zones) / sizeof(*zones); i++) {
        size_t z = strlen(zones[i]);
        if (n == z ? !strcmp(name, zones[i])
                   : n > z && name[n - z - 1] == '.' && !strcmp(name + n - z, zones[i]))
            return true;
    }
    return false;
}

/* An answer to q (a parsed query, NULL: only its id is known) with rcode. */
static ldns_pkt *answer_to(const ldns_pkt *q, uint16_t id, ldns_pkt_rcode rcode)
{
    ldns_pkt *r = LDNS->pkt_new();
    if (!r)
        return NULL;
    LDNS->pkt_set_id(r, id);
    LDNS->pkt_set_qr(r, true);
    LDNS->pkt_set_opcode(r, LDNS_PACKET_QUERY);
    LDNS->pkt_set_rcode(r, (uint8_t)rcode);
    LDNS->pkt_set_ra(r, true);
    if (q) {
        LDNS->pkt_set_rd(r, LDNS->pkt_rd(q));
        ldns_rr *qr = LDNS->rr_clone(LDNS->rr_list_rr(LDNS->pkt_question(q), 0));
        if (!qr || !LDNS->pkt_push_rr(r, LDNS_SECTION_QUESTION, qr)) {
            LDNS->rr_free(qr);
            LDNS->pkt_free(r);
            return NULL;
        }
    }
    return r;
}

/* An A or AAAA record for owner (cloned) with data. */
static ldns_rr *address_rr(const ldns_rdf *owner, ldns_rr_type type, const uint8_t *data)
{
    ldns_rr *rr = LDNS->rr_new();
    ldns_rdf *o = LDNS->rdf_clone(owner);
    ldns_rdf *d = type == LDNS_RR_TYPE_A ? LDNS->rdf_new_frm_data(LDNS_RDF_TYPE_A, 4, data)
                                         : LDNS->rdf_new_frm_data(LDNS_RDF_TYPE_AAAA, 16, data);
    if (!rr || !o || !d) {
        LDNS->rr_free(rr);
        LDNS->rdf_deep_free(o);
        LDNS->rdf_deep_free(d);
        return NULL;
    }
    LDNS->rr_set_owner(rr, o);
    LDNS->rr_set_type(rr, type);
    LDNS->rr_set_class(rr, LDNS_RR_CLASS_IN);
    LDNS->rr_set_ttl(rr, HY_DNS_TTL);
    LDNS->rr_push_rdf(rr, d);
    return rr;
}

static bool to_wire(ldns_pkt *r, uint8_t **out, size_t *outlen)
{
    bool ok = r && LDNS->pkt2wire(out, r, outlen) == LDNS_STATUS_OK;
    LDNS->pkt_free(r);
    if (!ok) {
        *out = NULL;
        *outlen = 0;
    }
    return ok;
}

static enum hy_dns_action malformed(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    /* too short for a header, or itself an answer (never answer those:
     * two servers could bounce errors forever): dropped */
    if (len >= LDNS_HEADER_SIZE && !LDNS_QR_WIRE(in))
        to_wire(answer_to(NULL, LDNS_ID_WIRE(in), LDNS_RCODE_FORMERR), out, outlen);
    return HY_DNS_MALFORMED;
}

enum hy_dns_action hy_dns_handle(const struct hy_dns_table *t, const uint8_t *in, size_t len,
                                 uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    ldns_pkt *q = NULL;
    if (len > 65535 || LDNS->wire2pkt(&q, in, len) != LDNS_STATUS_OK)
        return malformed(in, len, out, outlen);
    enum hy_dns_action act = HY_DNS_MALFORMED;
    const ldns_rr *qr =
        LDNS->pkt_qdcount(q) == 1 ? LDNS->rr_list_rr(LDNS->pkt_question(q), 0) : NULL;
    if (LDNS->pkt_qr(q) || LDNS->pkt_get_opcode(q) != LDNS_PACKET_QUERY || !qr ||
        !LDNS->rr_owner(qr)) {
        LDNS->pkt_free(q);
        return malformed(in, len, out, outlen);
    }
    char *owner = LDNS->rdf2str(LDNS->rr_owner(qr));
    char name[256];
    if (!owner || !norm(owner, name, sizeof(name))) {
        free(owner);
        LDNS->pkt_free(q);
        return malformed(in, len, out, outlen);
    }
    free(owner);
    uint8_t v4[4], v6[16];
    bool has6 = false, known = hy_dns_table_lookup(t, name, v4, v6, &has6);
    if (!known && !in_mesh_zone(name)) {
        LDNS->pkt_free(q);
        return HY_DNS_FORWARD;
    }
    /* ours: the name's address, nothing (another type, or no IPv6 VIP),
     * or NXDOMAIN for a name the mesh does not have */
    ldns_pkt *r = answer_to(q, LDNS->pkt_id(q), known ? LDNS_RCODE_NOERROR : LDNS_RCODE_NXDOMAIN);
    ldns_rr_type type = LDNS->rr_get_type(qr);
    bool in_class = LDNS->rr_get_class(qr) == LDNS_RR_CLASS_IN;
    if (r) {
        LDNS->pkt_set_aa(r, true);
        ldns_rr *a = NULL;
        if (known && in_class && type == LDNS_RR_TYPE_A)
            a = address_rr(LDNS->rr_owner(qr), LDNS_RR_TYPE_A, v4);
        else if (known && in_class && type == LDNS_RR_TYPE_AAAA && has6)
            a = address_rr(LDNS->rr_owner(qr), LDNS_RR_TYPE_AAAA, v6);
        else
            a = NULL;
        bool want =
            known && in_class && (type == LDNS_RR_TYPE_A || (type == LDNS_RR_TYPE_AAAA && has6));
        if (want && (!a || !LDNS->pkt_push_rr(r, LDNS_SECTION_ANSWER, a))) {
            LDNS->rr_free(a);
            LDNS->pkt_free(r);
            r = NULL;
        }
    }
    if (to_wire(r, out, outlen))
        act = HY_DNS_ANSWERED;
    LDNS->pkt_free(q);
    return act;
}

uint8_t *hy_dns_servfail(const uint8_t *in, size_t len, size_t *outlen)
{
    ldns_pkt *q = NULL;
    uint8_t *out = NULL;
    if (LDNS->wire2pkt(&q, in, len) != LDNS_STATUS_OK)
        return NULL;
    to_wire(answer_to(LDNS->pkt_qdcount(q) == 1 ? q : NULL, LDNS->pkt_id(q), LDNS_RCODE_SERVFAIL),
            &out, outlen);
    LDNS->pkt_free(q);
    return out;
}

size_t hy_dns_parse_resolv(const char *text, bool skip_loopback, struct sockaddr_storage *out,
                           size_t max)
{
    size_t n = 0;
    for (const char *line = text; line && *line && n < max;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        char buf[256], addr[128];
        if (len < sizeof(buf)) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            char *pct;
            if (sscanf(buf, " nameserver %127s", addr) == 1) {
                if ((pct = strchr(addr, '%'))) /* a link-local's zone: not supported */
                    *pct = '\0';
                struct sockaddr_storage sa;
                memset(&sa, 0, sizeof(sa));
                bool v4 = uv_ip4_addr(addr, 53, (struct sockaddr_in *)&sa) == 0;
                bool v6 = !v4 && uv_ip6_addr(addr, 53, (struct sockaddr_in6 *)&sa) == 0;
                bool loop = (v4 && !strncmp(addr, "127.", 4)) || (v6 && !strcmp(addr, "::1"));
                if ((v4 || v6) && !(skip_loopback && loop))
                    out[n++] = sa;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return n;
}

enum hy_dns_frame hy_dns_tcp_frame(const uint8_t *buf, size_t len, size_t max, size_t *msglen)
{
    if (len < 2) {
        *msglen = 0;
        return HY_DNS_FRAME_MORE;
    }
    size_t n = ldns_read_uint16(buf);
    *msglen = n;
    if (n < LDNS_HEADER_SIZE)
        return HY_DNS_FRAME_SHORT;
    if (n > max)
        return HY_DNS_FRAME_LONG;
    return len - 2 >= n ? HY_DNS_FRAME_OK : HY_DNS_FRAME_MORE;
}
