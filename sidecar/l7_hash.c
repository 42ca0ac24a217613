/* RingHash and Maglev for MeshLoadBalancingStrategy (l7_hash.h). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "dp_parts.h"
#include "l7.h"
#include "l7_hash.h"
#include "poison.h"

struct ring_entry {
    uint64_t hash;
    uint32_t ep;
};

struct hy_l7_hash_table {
    bool maglev;
    size_t n; /* ring entries or table slots */
    struct ring_entry *ring;
    uint32_t *table;
};

uint64_t hy_l7_hash_bytes(const void *s, size_t n)
{
    return hy_l7_draw(hy_dp_hash(HY_DP_HASH_INIT, s, n), 0);
}

static uint64_t hash_str(const char *s)
{
    return hy_l7_hash_bytes(s, strlen(s));
}

/* ---- the request's hash -------------------------------------------------- */

/* The value of cookie name in h's Cookie fields ("a=b; c=d"), as [*v, *v+*len). */
static bool cookie(const struct hy_http_head *h, const char *name, const char **v, size_t *len)
{
    size_t nl = strlen(name), at = 0;
    for (const struct hy_http_field *f; (f = hy_http_head_find(h, "cookie", &at));) {
        const char *p = f->value, *end = f->value + f->value_len;
        while (p < end) {
            while (p < end && (*p == ' ' || *p == ';'))
                p++;
            const char *semi = memchr(p, ';', (size_t)(end - p));
            const char *stop = semi ? semi : end;
            if ((size_t)(stop - p) > nl && !memcmp(p, name, nl) && p[nl] == '=') {
                *v = p + nl + 1;
                *len = (size_t)(stop - *v);
                return true;
            }
            p = stop;
        }
    }
    return false;
}

/* The first value of query parameter name in target, as [*v, *v+*len). */
static bool query_param(const char *target, const char *name, const char **v, size_t *len)
{
    const char *q = target ? strchr(target, '?') : NULL;
    size_t nl = strlen(name);
    while (q && *q && *q != '#') {
        q++;
        size_t seg = strcspn(q, "&#");
        const char *eq = memchr(q, '=', seg);
        size_t klen = eq ? (size_t)(eq - q) : seg;
        if (klen == nl && !memcmp(q, name, nl)) {
            *v = eq ? eq + 1 : q + seg;
            *len = eq ? seg - klen - 1 : 0;
            return true;
        }
        q += seg;
    }
    return false;
}

/* One policy's hash of the request; false when it yields nothing. */
static bool policy_hash(const Hypha__V1__DpHashPolicy *p, const struct hy_http_head *h,
                        const char *source_ip, uint64_t *out)
{
    const char *type = p->type ? p->type : "", *name = p->name ? p->name : "", *v;
    size_t len;
    if (!strcasecmp(type, "SourceIP") || !strcasecmp(type, "Connection")) {
        if (!source_ip || !*source_ip)
            return false;
        *out = hash_str(source_ip);
        return true;
    }
    if (!h)
        return false;
    if (!strcasecmp(type, "Cookie")) {
        if (!cookie(h, name, &v, &len))
            return false;
        *out = hy_l7_hash_bytes(v, len);
        return true;
    }
    if (!strcasecmp(type, "QueryParameter")) {
        if (!query_param(h->target, name, &v, &len))
            return false;
        *out = hy_l7_hash_bytes(v, len);
        return true;
    }
    if (strcasecmp(type, "Header"))
        return false;
    /* the fields of the name joined by ",", hashed as they come */
    uint64_t x = HY_DP_HASH_INIT;
    size_t at = 0, k = 0;
    for (const struct hy_http_field *f; (f = hy_http_head_find(h, name, &at)); k++) {
        if (k)
            x = hy_dp_hash(x, ",", 1);
        x = hy_dp_hash(x, f->value, f->value_len);
    }
    if (!k)
        return false;
    *out = hy_l7_draw(x, 0);
    return true;
}

bool hy_l7_hash_request(Hypha__V1__DpHashPolicy *const *p, size_t n, const struct hy_http_head *h,
                        const char *source_ip, uint64_t *hash)
{
    bool have = false;
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++) {
        uint64_t x;
        if (policy_hash(p[i], h, source_ip, &x)) {
            /* rotated, so two equal policies do not cancel out (Envoy) */
            acc = (have ? (acc << 1 | acc >> 63) : 0) ^ x;
            have = true;
        }
        if (p[i]->terminal && have)
            break;
    }
    *hash = acc;
    return have;
}

/* ---- the ring ------------------------------------------------------------ */

static int ring_cmp(const void *a, const void *b)
{
    const struct ring_entry *x = a, *y = b;
    return x->hash < y->hash ? -1 : x->hash > y->hash ? 1 : (x->ep > y->ep) - (x->ep < y->ep);
}

void hy_l7_hash_free(struct hy_l7_hash_table *t)
{
    if (!t)
        return;
    free(t->ring);
    free(t->table);
    free(t);
}

struct hy_l7_hash_table *hy_l7_hash_ring_new(const char *const *keys, size_t n, size_t ring_min,
                                             size_t ring_max)
{
    ring_min = ring_min ? ring_min : HY_L7_RING_MIN;
    ring_max = ring_max ? ring_max : HY_L7_RING_MAX;
    if (!n || ring_max < n)
        return NULL;
    /* Equal weights: each endpoint the same number of points, enough to
     * reach ring_min in all (Envoy's scale), rounded up to a power of two
     * so that one endpoint more or less rarely changes the others' points
     * (only the removed endpoint's keys move); no more than ring_max. */
    size_t need = (ring_min + n - 1) / n, per = 1;
    while (per < need)
        per <<= 1;
    if (per * n > ring_max)
        per = ring_max / n;
    struct hy_l7_hash_table *t = calloc(1, sizeof(*t));
    if (!t || !(t->ring = malloc(per * n * sizeof(*t->ring)))) {
        free(t);
        return NULL;
    }
    char buf[320];
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < per; k++) {
            /* Envoy's points: the host's name, "_", the point's number */
            int len = snprintf(buf, sizeof(buf), "%s_%zu", keys[i], k);
            size_t used = len < 0 ? 0 : (size_t)len >= sizeof(buf) ? sizeof(buf) - 1 : (size_t)len;
            t->ring[t->n++] = (struct ring_entry){hy_l7_hash_bytes(buf, used), (uint32_t)i};
        }
    qsort(t->ring, t->n, sizeof(*t->ring), ring_cmp);
    return t;
}

/* ---- Maglev --------------------------------------------------------------- */

struct hy_l7_hash_table *hy_l7_hash_maglev_new(const char *const *keys, size_t n, size_t table_size)
{
    size_t m = table_size ? table_size : HY_L7_MAGLEV_SIZE;
    if (!n || m <= n)
        return NULL;
    struct hy_l7_hash_table *t = calloc(1, sizeof(*t));
    uint64_t *offset = calloc(n, sizeof(*offset)), *skip = calloc(n, sizeof(*skip)),
             *next = calloc(n, sizeof(*next));
    if (!t || !offset || !skip || !next || !(t->table = malloc(m * sizeof(*t->table))))
        goto out_fail;
    t->maglev = true;
    t->n = m;
    for (size_t i = 0; i < n; i++) {
        uint64_t h = hash_str(keys[i]);
        offset[i] = h % m;
        skip[i] = hy_l7_draw(h, 1) % (m - 1) + 1;
    }
    memset(t->table, 0xff, m * sizeof(*t->table));
    /* Each endpoint in turn takes the next free slot of its permutation
     * (offset + j * skip mod m: all of them, m prime) until all are
     * taken: each gets m / n slots, give or take one. */
    for (size_t filled = 0;;) {
        for (size_t i = 0; i < n; i++) {
            uint64_t c;
            do
                c = (offset[i] + next[i]++ * skip[i]) % m;
            while (t->table[c] != UINT32_MAX);
            t->table[c] = (uint32_t)i;
            if (++filled == m)
                goto out;
        }
    }
out:
    free(offset);
    free(skip);
    free(next);
    return t;
out_fail:
    free(offset);
    free(skip);
    free(next);
    hy_l7_hash_free(t);
    return NULL;
}

size_t hy_l7_hash_pick(const struct hy_l7_hash_table *t, uint64_t hash)
{
    if (t->maglev)
        return t->table[hash % t->n];
    /* the first point at or after hash, wrapping to the first */
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ring[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    return t->ring[lo == t->n ? 0 : lo].ep;
}

size_t hy_l7_hash_pick_ok(const struct hy_l7_hash_table *t, uint64_t hash, const bool *ok, size_t n)
{
    size_t first = hy_l7_hash_pick(t, hash);
    if (first >= n || ok[first])
        return first;
    if (t->maglev) { /* the next slots of the table, in turn */
        for (size_t k = 1; k < t->n; k++) {
            uint32_t ep = t->table[(hash % t->n + k) % t->n];
            if (ep < n && ok[ep])
                return ep;
        }
        return SIZE_MAX;
    }
    /* the next points of the ring, as Envoy's ring walks past unusable hosts */
    size_t lo = 0, hi = t->n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t->ring[mid].hash < hash)
            lo = mid + 1;
        else
            hi = mid;
    }
    for (size_t k = 1; k < t->n; k++) {
        uint32_t ep = t->ring[(lo + k) % t->n].ep;
        if (ep < n && ok[ep])
            return ep;
    }
    return SIZE_MAX;
}
