/* The sidecar's DNS answers (dns.h): a sorted table of the mesh's names
 * and one query handler, every message parsed and built here (RFC 1035:
 * the header, names with compression pointers, every record checked to lie
 * within the message). Not ldns: Debian's links OpenSSL, whose pages the
 * sidecar would map for nothing (issue 15: the sidecar's memory). */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
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

#define HDR 12
#define F_QR 0x8000
#define F_AA 0x0400
#define F_RD 0x0100
#define F_RA 0x0080
#define OPCODE(f) (((f) >> 11) & 0xf)
#define T_A 1
#define T_AAAA 28
#define C_IN 1
#define RC_NOERROR 0
#define RC_FORMERR 1
#define RC_SERVFAIL 2
#define RC_NXDOMAIN 3
#define MAX_POINTERS 64

static uint16_t get16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static uint8_t *put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
    return p + 2;
}

/* A message's first question, as far as an answer needs it. */
struct question {
    uint8_t wire[255]; /* the name uncompressed, final zero label included */
    size_t wire_len;
    char text[1024]; /* presentation form, "\.", "\DDD" escapes, final dot */
    uint16_t type, class;
};

/* Reads the name at *off of m[0..len) (compression pointers followed, at
 * most MAX_POINTERS, so a loop ends), moving *off past it; q (may be NULL)
 * gets it uncompressed and in text. False if it does not lie within the
 * message or breaks RFC 1035 (a label over 63, a name over 255). */
static bool read_name(const uint8_t *m, size_t len, size_t *off, struct question *q)
{
    size_t p = *off, wl = 0, tl = 0;
    bool jumped = false;
    unsigned hops = 0;
    for (;;) {
        if (p >= len)
            return false;
        uint8_t l = m[p];
        if ((l & 0xc0) == 0xc0) {
            if (p + 1 >= len || ++hops > MAX_POINTERS)
                return false;
            if (!jumped)
                *off = p + 2;
            jumped = true;
            p = (size_t)(l & 0x3f) << 8 | m[p + 1];
            continue;
        }
        if (l & 0xc0)
            return false; /* 0x40, 0x80: extended label types */
        if (p + 1 + l > len || wl + 1 + l > 255)
            return false;
        if (q) {
            memcpy(q->wire + wl, m + p, (size_t)l + 1);
            for (size_t i = 0; i < l; i++) {
                uint8_t c = m[p + 1 + i];
                if (tl + 5 >= sizeof(q->text))
                    return false;
                if (c == '.' || c == ';' || c == '(' || c == ')' || c == '\\' || c == '"') {
                    q->text[tl++] = '\\';
                    q->text[tl++] = (char)c;
                } else if (c <= 0x20 || c >= 0x7f) {
                    tl += (size_t)snprintf(q->text + tl, sizeof(q->text) - tl, "\\%03u", c);
                } else {
                    q->text[tl++] = (char)c;
                }
            }
            if (l || !tl)
                q->text[tl++] = '.';
            q->text[tl] = '\0';
        }
        wl += 1 + (size_t)l;
        p += 1 + (size_t)l;
        if (!l)
            break;
    }
    if (!jumped)
        *off = p;
    if (q)
        q->wire_len = wl;
    return true;
}

/* Whether in[0..len) is a whole DNS message: the header, then every
 * question and record within it. q (may be NULL) gets the first question
 * (type 0 when there is none). */
static bool parse(const uint8_t *in, size_t len, struct question *q)
{
    if (len < HDR || len > 65535)
        return false;
    size_t off = HDR;
    unsigned qd = get16(in + 4), rr = (unsigned)get16(in + 6) + get16(in + 8) + get16(in + 10);
    if (q)
        q->type = 0;
    for (unsigned i = 0; i < qd; i++) {
        if (!read_name(in, len, &off, i == 0 ? q : NULL) || off + 4 > len)
            return false;
        if (i == 0 && q) {
            q->type = get16(in + off);
            q->class = get16(in + off + 2);
        }
        off += 4;
    }
    for (unsigned i = 0; i < rr; i++) {
        if (!read_name(in, len, &off, NULL) || off + 10 > len)
            return false;
        size_t rdlen = get16(in + off + 8);
        off += 10;
        if (off + rdlen > len)
            return false;
        off += rdlen;
    }
    return true;
}

bool hy_dns_wire_ok(const uint8_t *in, size_t len, uint16_t *id, bool *qr)
{
    if (!parse(in, len, NULL))
        return false;
    *id = get16(in);
    *qr = get16(in + 2) & F_QR;
    return true;
}

/* An answer with id and rcode, to question q (NULL: none) with the
 * query's flags qflags, aa, and one address record (data of dlen 4 or 16
 * bytes; NULL: none). malloc'd; NULL when out of memory. */
static uint8_t *answer(uint16_t id, uint16_t qflags, const struct question *q, int rcode, bool aa,
                       uint16_t type, const uint8_t *data, size_t dlen, size_t *outlen)
{
    uint8_t *out = malloc(HDR + (q ? q->wire_len + 4 : 0) + (data ? 12 + dlen : 0)), *p = out;
    if (!out)
        return NULL;
    uint16_t f = F_QR | F_RA | (uint16_t)rcode | (aa ? F_AA : 0) | (q ? (qflags & F_RD) : 0);
    p = put16(p, id);
    p = put16(p, f);
    p = put16(p, q ? 1 : 0);
    p = put16(p, data ? 1 : 0);
    p = put16(p, 0);
    p = put16(p, 0);
    if (q) {
        memcpy(p, q->wire, q->wire_len);
        p += q->wire_len;
        p = put16(p, q->type);
        p = put16(p, q->class);
    }
    if (data) {
        p = put16(p, 0xc000 | HDR); /* the question's name */
        p = put16(p, type);
        p = put16(p, C_IN);
        p = put16(p, 0);
        p = put16(p, HY_DNS_TTL);
        p = put16(p, (uint16_t)dlen);
        memcpy(p, data, dlen);
        p += dlen;
    }
    *outlen = (size_t)(p - out);
    return out;
}

static enum hy_dns_action malformed(const uint8_t *in, size_t len, uint8_t **out, size_t *outlen)
{
    /* too short for a header, or itself an answer (never answer those:
     * two servers could bounce errors forever): dropped */
    if (len >= HDR && !(get16(in + 2) & F_QR) &&
        !(*out = answer(get16(in), 0, NULL, RC_FORMERR, false, 0, NULL, 0, outlen)))
        *outlen = 0;
    return HY_DNS_MALFORMED;
}

enum hy_dns_action hy_dns_handle(const struct hy_dns_table *t, const uint8_t *in, size_t len,
                                 uint8_t **out, size_t *outlen)
{
    *out = NULL;
    *outlen = 0;
    struct question q;
    if (!parse(in, len, &q))
        return malformed(in, len, out, outlen);
    uint16_t flags = get16(in + 2);
    char name[256];
    if ((flags & F_QR) || OPCODE(flags) != 0 || get16(in + 4) != 1 ||
        !norm(q.text, name, sizeof(name)))
        return malformed(in, len, out, outlen);
    uint8_t v4[4], v6[16];
    bool has6 = false, known = hy_dns_table_lookup(t, name, v4, v6, &has6);
    if (!known && !in_mesh_zone(name))
        return HY_DNS_FORWARD;
    /* ours: the name's address, nothing (another type, or no IPv6 VIP),
     * or NXDOMAIN for a name the mesh does not have */
    bool in_class = q.class == C_IN;
    const uint8_t *data = NULL;
    size_t dlen = 0;
    if (known && in_class && q.type == T_A) {
        data = v4;
        dlen = 4;
    } else if (known && in_class && q.type == T_AAAA && has6) {
        data = v6;
        dlen = 16;
    }
    *out = answer(get16(in), flags, &q, known ? RC_NOERROR : RC_NXDOMAIN, true, q.type, data, dlen,
                  outlen);
    if (!*out) {
        *outlen = 0;
        return HY_DNS_MALFORMED;
    }
    return HY_DNS_ANSWERED;
}

uint8_t *hy_dns_servfail(const uint8_t *in, size_t len, size_t *outlen)
{
    struct question q;
    if (!parse(in, len, &q))
        return NULL;
    bool one = get16(in + 4) == 1;
    return answer(get16(in), get16(in + 2), one ? &q : NULL, RC_SERVFAIL, false, 0, NULL, 0,
                  outlen);
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
