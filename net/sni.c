/* SNI names for cross-zone routing, and a ClientHello reader that finds
 * one without terminating TLS (RFC 8446 4.1.2, RFC 6066 3). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "sni.h"
#include "poison.h"

static bool plain_label(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > 63 || s[0] == '-' || s[n - 1] == '-')
        return false;
    if (n >= 4 && s[2] == '-' && s[3] == '-') /* "xn--", and our own "hy--" */
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '-'))
            return false;
    return true;
}

static void label(const char *s, char out[64])
{
    if (plain_label(s)) {
        snprintf(out, 64, "%s", s);
        return;
    }
    uint64_t h = 0xcbf29ce484222325u; /* FNV-1a, 64 bits */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    snprintf(out, 64, "hy--%016llx", (unsigned long long)h);
}

void hy_sni_for(const char *service, const char *mesh, char *buf, size_t size)
{
    char a[64], b[64];
    label(service ? service : "", a);
    label(mesh ? mesh : "", b);
    snprintf(buf, size, "%s.%s.mesh", a, b);
}

static uint64_t fnv(uint64_t h, const char *s)
{
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3u;
    }
    h ^= 0xff; /* a separator no string holds */
    return h * 0x100000001b3u;
}

void hy_sni_for_subset(const char *service, const char *mesh, const char *const *keys,
                       const char *const *values, size_t n, char *buf, size_t size)
{
    char a[64], b[64];
    label(service ? service : "", a);
    label(mesh ? mesh : "", b);
    uint64_t h = 0xcbf29ce484222325u;
    const char *last = NULL; /* hashed in key order without sorting a copy */
    for (size_t done = 0; done < n; done++) {
        size_t at = SIZE_MAX;
        for (size_t i = 0; i < n; i++) {
            const char *k = keys[i] ? keys[i] : "";
            if ((!last || strcmp(k, last) > 0) &&
                (at == SIZE_MAX || strcmp(k, keys[at] ? keys[at] : "") < 0))
                at = i;
        }
        if (at == SIZE_MAX)
            break; /* repeated keys: a map has none */
        last = keys[at] ? keys[at] : "";
        h = fnv(fnv(h, last), values[at] ? values[at] : "");
    }
    snprintf(buf, size, "%s.hy--%016llx.%s.mesh", a, (unsigned long long)h, b);
}

/* ----- ClientHello ----- */

struct rd {
    const uint8_t *p;
    size_t n;
    bool bad;
};

static uint32_t take(struct rd *r, size_t bytes)
{
    if (r->bad || r->n < bytes) {
        r->bad = true;
        return 0;
    }
    uint32_t v = 0;
    for (size_t i = 0; i < bytes; i++)
        v = v << 8 | r->p[i];
    r->p += bytes;
    r->n -= bytes;
    return v;
}

/* A sub-reader over the next len bytes of r. */
static struct rd sub(struct rd *r, size_t len)
{
    struct rd s = {r->p, len, r->bad || r->n < len};
    if (s.bad) {
        r->bad = true;
        s.n = 0;
    } else {
        r->p += len;
        r->n -= len;
    }
    return s;
}

static int fail(int rc, const char **why, const char *msg)
{
    if (why)
        *why = msg;
    return rc;
}

/* The server name in the ClientHello body h. */
static int client_hello(struct rd h, char *name, const char **why)
{
    take(&h, 2); /* legacy_version */
    sub(&h, 32); /* random */
    uint32_t sid = take(&h, 1);
    if (sid > 32)
        return fail(HY_SNI_MALFORMED, why, "the ClientHello's session id is longer than 32 bytes");
    sub(&h, sid);
    uint32_t suites = take(&h, 2);
    if (!h.bad && (suites < 2 || suites % 2))
        return fail(HY_SNI_MALFORMED, why, "the ClientHello's cipher suites are malformed");
    sub(&h, suites);
    uint32_t comp = take(&h, 1);
    if (!h.bad && comp < 1)
        return fail(HY_SNI_MALFORMED, why, "the ClientHello has no compression method");
    sub(&h, comp);
    if (h.bad)
        return fail(HY_SNI_MALFORMED, why, "the ClientHello is shorter than its fields");
    if (h.n == 0)
        return fail(HY_SNI_NONE, why, "the ClientHello has no extensions, so no server name");
    struct rd exts = sub(&h, take(&h, 2));
    if (h.bad || h.n)
        return fail(HY_SNI_MALFORMED, why, "the ClientHello's extensions do not fill it");
    while (exts.n) {
        uint32_t type = take(&exts, 2);
        struct rd e = sub(&exts, take(&exts, 2));
        if (exts.bad)
            return fail(HY_SNI_MALFORMED, why, "a ClientHello extension overruns it");
        if (type != 0) /* server_name */
            continue;
        struct rd list = sub(&e, take(&e, 2));
        if (e.bad || e.n)
            return fail(HY_SNI_MALFORMED, why, "the server_name extension is malformed");
        while (list.n) {
            uint32_t kind = take(&list, 1);
            uint32_t n = take(&list, 2);
            struct rd host = sub(&list, n);
            if (list.bad)
                return fail(HY_SNI_MALFORMED, why, "the server_name list is malformed");
            if (kind != 0) /* host_name */
                continue;
            if (n == 0 || n > HY_SNI_MAX - 1)
                return fail(HY_SNI_MALFORMED, why, "the host_name is empty or too long");
            for (size_t i = 0; i < n; i++) {
                char c = (char)host.p[i];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.'))
                    return fail(HY_SNI_MALFORMED, why,
                                "the host_name has a character a DNS name cannot have");
                name[i] = c;
            }
            name[n] = '\0';
            return HY_SNI_FOUND;
        }
        return fail(HY_SNI_NONE, why, "the server_name extension has no host_name");
    }
    return fail(HY_SNI_NONE, why, "the ClientHello has no server_name extension");
}

int hy_sni_parse(const uint8_t *data, size_t len, char *name, const char **why)
{
    uint8_t hs[HY_SNI_HELLO_MAX]; /* the handshake bytes, records' headers removed */
    size_t hn = 0;
    name[0] = '\0';
    if (why)
        *why = NULL;
    if (len >= 1 && data[0] != 0x16)
        return fail(HY_SNI_NOT_TLS, why, "not a TLS handshake");
    if (len >= 2 && data[1] != 0x03)
        return fail(HY_SNI_NOT_TLS, why, "not a TLS handshake (version)");
    struct rd r = {data, len, false};
    for (;;) {
        if (r.n < 5)
            break;
        uint32_t type = take(&r, 1), major = take(&r, 1);
        take(&r, 1);
        uint32_t rlen = take(&r, 2);
        if (type != 0x16 || major != 0x03)
            return fail(HY_SNI_MALFORMED, why, "a record within the ClientHello is not handshake");
        if (rlen == 0 || rlen > 16384)
            return fail(HY_SNI_MALFORMED, why, "a handshake record of an impossible length");
        if (r.n < rlen)
            break; /* the rest of this record is still to come */
        if (hn + rlen > sizeof(hs))
            return fail(HY_SNI_TOO_BIG, why, "the ClientHello is too large");
        memcpy(hs + hn, r.p, rlen);
        hn += rlen;
        sub(&r, rlen);
        if (hn >= 4) {
            if (hs[0] != 0x01)
                return fail(HY_SNI_MALFORMED, why, "the first handshake message is no ClientHello");
            size_t body = (size_t)hs[1] << 16 | (size_t)hs[2] << 8 | hs[3];
            if (body + 4 > sizeof(hs))
                return fail(HY_SNI_TOO_BIG, why, "the ClientHello is too large");
            if (hn >= body + 4) {
                int rc = client_hello((struct rd){hs + 4, body, false}, name, why);
                if (rc != HY_SNI_FOUND)
                    name[0] = '\0'; /* a bad host_name may have been half copied */
                return rc;
            }
        }
    }
    if (len >= HY_SNI_HELLO_MAX + 5 * (HY_SNI_HELLO_MAX / 16384 + 2))
        return fail(HY_SNI_TOO_BIG, why, "the ClientHello is too large");
    return HY_SNI_MORE;
}
