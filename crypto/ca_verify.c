/* Reading and checking certificates for the CA module: inspection of
 * certificates and requests, verification against one CA or through a chain
 * to a bundle of roots, and key matching, on wolfSSL's parser and
 * certificate manager. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/wolfcrypt/asn.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "buf.h"
#include "ca.h"
#include "ca_int.h"
#include "error.h"
#include "poison.h"

#ifndef WOLFSSL_HAVE_ISSUER_NAMES
#error "ca_verify.c reads the issuer CN from DecodedCert: wolfSSL needs WOLFSSL_HAVE_ISSUER_NAMES"
#endif

void hy_ca_info_fini(struct hy_ca_info *info)
{
    free(info->subject_cn);
    free(info->issuer_cn);
    for (size_t i = 0; i < info->nsans; i++)
        free(info->sans[i]);
    free(info->sans);
    memset(info, 0, sizeof(*info));
}

static int cert_time(const byte *tlv, int len, int64_t *out)
{
    const byte *date;
    byte format;
    int dlen;
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    if (!tlv || wc_GetDateInfo(tlv, len, &date, &format, &dlen) != 0 ||
        wc_GetDateAsCalendarTime(date, dlen, format, &tm) != 0)
        return HY_EINVAL;
    *out = (int64_t)timegm(&tm);
    return 0;
}

int hy_ca_check_ca(const uint8_t *der, size_t len, struct hy_ca_ca_info *info, const char **why)
{
    DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    int rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc != 0) {
        *why = "the CA certificate does not parse";
        rc = hy_ca_parse_err(rc);
    } else if (!dc.isCA) {
        *why = "the CA certificate is not a CA (basicConstraints CA:true is missing)";
        rc = HY_EVERIFY;
    } else if (dc.extKeyUsageSet && !(dc.extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
        *why = "the CA certificate may not sign certificates (keyUsage lacks keyCertSign)";
        rc = HY_EVERIFY;
    } else if (info) {
        info->path_len_zero = dc.pathLengthSet && dc.pathLength == 0;
        if (cert_time(dc.beforeDate, dc.beforeDateLen, &info->not_before) < 0 ||
            cert_time(dc.afterDate, dc.afterDateLen, &info->not_after) < 0) {
            *why = "the CA certificate does not parse";
            rc = HY_EINVAL;
        }
    }
    wc_FreeDecodedCert(&dc);
    return rc;
}

static char *dup_n(const char *s, int n)
{
    return s && n > 0 ? strndup(s, (size_t)n) : strdup("");
}

static int add_san(struct hy_ca_info *info, const DNS_entry *e)
{
    struct hy_buf b = {0};
    int rc;
    char ip[INET6_ADDRSTRLEN];
    switch (e->type) {
    case ASN_DNS_TYPE:
        rc = hy_buf_printf(&b, "DNS:%.*s", e->len, e->name);
        break;
    case ASN_URI_TYPE:
        rc = hy_buf_printf(&b, "URI:%.*s", e->len, e->name);
        break;
    case ASN_IP_TYPE:
        /* wolfSSL keeps the raw address bytes in name */
        if ((e->len != 4 && e->len != 16) ||
            !inet_ntop(e->len == 4 ? AF_INET : AF_INET6, e->name, ip, sizeof(ip)))
            return 0;
        rc = hy_buf_printf(&b, "IP:%s", ip);
        break;
    default:
        return 0; /* other kinds are not ours to report */
    }
    char **v = rc == 0 ? realloc(info->sans, (info->nsans + 1) * sizeof(*v)) : NULL;
    if (!v) {
        hy_buf_fini(&b);
        return HY_ENOMEM;
    }
    info->sans = v;
    info->sans[info->nsans++] = b.data;
    return 0;
}

static void hex(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* hy_ca_inspect for a certificate request: its CN and fingerprint. */
static int inspect_request(const char *pem, struct hy_ca_info *out)
{
    uint8_t *der;
    size_t len;
    int rc = hy_ca_pem_to_der(pem, CERTREQ_TYPE, &der, &len);
    if (rc < 0)
        return rc;
    struct hy_ca_csr_fields f;
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if ((rc = hy_ca_csr_fields(der, len, &f)) < 0)
        goto out_free_der;
    if ((rc = wc_Sha256Hash(der, (word32)len, digest)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_free_der;
    }
    out->is_request = true;
    out->subject_cn = strdup(f.cn);
    out->issuer_cn = strdup("");
    if (!out->subject_cn || !out->issuer_cn) {
        hy_ca_info_fini(out);
        rc = HY_ENOMEM;
        goto out_free_der;
    }
    hex(digest, sizeof(digest), out->fingerprint);
out_free_der:
    free(der);
    return rc;
}

int hy_ca_inspect(const char *cert_pem, struct hy_ca_info *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t *der;
    size_t len;
    int rc = hy_ca_pem_to_der(cert_pem, CERT_TYPE, &der, &len);
    if (rc == HY_EINVAL) /* no certificate there: perhaps a request */
        return inspect_request(cert_pem, out);
    if (rc < 0)
        return rc;
    DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    /* NO_VERIFY: an expired certificate is still worth reading */
    if ((rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL)) != 0) {
        rc = hy_ca_parse_err(rc);
        goto out_free_dc;
    }
    out->subject_cn = dup_n(dc.subjectCN, dc.subjectCNLen);
    out->issuer_cn = dup_n(dc.issuerCN, dc.issuerCNLen);
    if (!out->subject_cn || !out->issuer_cn) {
        rc = HY_ENOMEM;
        goto out_fini;
    }
    if ((rc = cert_time(dc.beforeDate, dc.beforeDateLen, &out->not_before)) < 0 ||
        (rc = cert_time(dc.afterDate, dc.afterDateLen, &out->not_after)) < 0)
        goto out_fini;
    out->is_ca = dc.isCA;
    for (const DNS_entry *e = dc.altNames; e; e = e->next)
        if ((rc = add_san(out, e)) < 0)
            goto out_fini;
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if ((rc = wc_Sha256Hash(der, (word32)len, digest)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_fini;
    }
    hex(digest, sizeof(digest), out->fingerprint);
    goto out_free_dc;
out_fini:
    hy_ca_info_fini(out);
out_free_dc:
    wc_FreeDecodedCert(&dc);
    free(der);
    return rc;
}

/* wolfSSL checks the times of the certificate it verifies, not those of the
 * CA it verifies with: a CA's own are checked here. 0 or ASN_*_DATE_E. */
static int ca_date_err(const struct hy_ca_ca_info *info)
{
    int64_t now = time(NULL);
    return now < info->not_before  ? ASN_BEFORE_DATE_E
           : now > info->not_after ? ASN_AFTER_DATE_E
                                   : 0;
}

/* Why wolfSSL refused a certificate, as a sentence for the user. */
static const char *verify_why(int rc, bool ca_cert)
{
    switch (rc) {
    case ASN_AFTER_DATE_E:
        return ca_cert ? "the CA certificate has expired" : "certificate has expired";
    case ASN_BEFORE_DATE_E:
        return ca_cert ? "the CA certificate is not yet valid" : "certificate is not yet valid";
    case ASN_NO_SIGNER_E:
        return "certificate was not issued by this CA";
    case ASN_SELF_SIGNED_E:
        return "certificate is self-signed and is not this CA";
    case ASN_SIG_CONFIRM_E:
    case SIG_VERIFY_E:
        return "certificate signature does not verify with the CA's key";
    default:
        return ca_cert ? "the CA certificate cannot be used as a trust anchor"
                       : "certificate does not verify against this CA";
    }
}

int hy_ca_verify(const char *cert_pem, const char *ca_pem, const char **why)
{
    const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    uint8_t *der, *ca_der;
    size_t len, ca_len;
    int rc = hy_ca_pem_to_der(ca_pem, CERT_TYPE, &ca_der, &ca_len);
    if (rc < 0) {
        *why = "the CA is not a PEM certificate";
        return rc;
    }
    if ((rc = hy_ca_pem_to_der(cert_pem, CERT_TYPE, &der, &len)) < 0) {
        *why = "the certificate is not a PEM certificate";
        goto out_free_ca_der;
    }
    struct hy_ca_ca_info info;
    if ((rc = hy_ca_check_ca(ca_der, ca_len, &info, why)) < 0)
        goto out_free_der;
    if ((rc = ca_date_err(&info)) != 0) {
        *why = verify_why(rc, true);
        rc = HY_EVERIFY;
        goto out_free_der;
    }
    WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
    if (!cm) {
        rc = HY_ENOMEM;
        goto out_free_der;
    }
    rc = wolfSSL_CertManagerLoadCABuffer(cm, ca_der, (long)ca_len, WOLFSSL_FILETYPE_ASN1);
    if (rc != WOLFSSL_SUCCESS) {
        *why = verify_why(rc, true);
        rc = rc == MEMORY_E ? HY_ENOMEM : HY_EVERIFY;
        goto out_free_cm;
    }
    rc = wolfSSL_CertManagerVerifyBuffer(cm, der, (long)len, WOLFSSL_FILETYPE_ASN1);
    if (rc != WOLFSSL_SUCCESS) {
        *why = verify_why(rc, false);
        rc = rc == MEMORY_E ? HY_ENOMEM : HY_EVERIFY;
        goto out_free_cm;
    }
    rc = 0;
out_free_cm:
    wolfSSL_CertManagerFree(cm);
out_free_der:
    free(der);
out_free_ca_der:
    free(ca_der);
    return rc;
}

int hy_ca_check_key(const char *cert_pem, const char *key_pem)
{
    uint8_t *der;
    size_t len;
    int rc = hy_ca_pem_to_der(cert_pem, CERT_TYPE, &der, &len);
    if (rc < 0)
        return rc;
    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_free_der;
    }
    ecc_key key;
    if ((rc = hy_ca_key_from_pem(key_pem, &key, &rng)) < 0)
        goto out_free_rng;
    rc = hy_ca_key_matches(der, len, &key);
    wc_ecc_free(&key);
out_free_rng:
    wc_FreeRng(&rng);
out_free_der:
    free(der);
    return rc;
}

/* ----- chains ----- */

/* The certificates of a PEM bundle, as DER, in order. */
struct bundle {
    uint8_t *der[HY_CA_BUNDLE_MAX]; /* owned */
    size_t len[HY_CA_BUNDLE_MAX];
    size_t n;
};

static void bundle_fini(struct bundle *b)
{
    for (size_t i = 0; i < b->n; i++)
        free(b->der[i]);
    memset(b, 0, sizeof(*b));
}

/* 0 when der parses as a certificate, else HY_EINVAL or HY_ENOMEM. */
static int cert_parses(const uint8_t *der, size_t len)
{
    DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    int rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    wc_FreeDecodedCert(&dc);
    return rc == 0 ? 0 : hy_ca_parse_err(rc);
}

/* Reads every "CERTIFICATE" block of pem (NULL: none), at most max (up to
 * HY_CA_BUNDLE_MAX); text between blocks is ignored. On failure *b is
 * empty. */
static int bundle_read(struct bundle *b, const char *pem, size_t max)
{
    static const char begin[] = "-----BEGIN CERTIFICATE-----";
    static const char end[] = "-----END CERTIFICATE-----";
    memset(b, 0, sizeof(*b));
    int rc = 0;
    for (const char *p = pem ? strstr(pem, begin) : NULL; p; p = strstr(p, begin)) {
        const char *e = strstr(p, end);
        if (!e) {
            rc = HY_EINVAL;
            break;
        }
        if (b->n == max) {
            rc = HY_ETOOBIG;
            break;
        }
        e += sizeof(end) - 1;
        char *block = strndup(p, (size_t)(e - p));
        if (!block) {
            rc = HY_ENOMEM;
            break;
        }
        rc = hy_ca_pem_to_der(block, CERT_TYPE, &b->der[b->n], &b->len[b->n]);
        free(block);
        if (rc < 0)
            break;
        b->n++;
        if ((rc = cert_parses(b->der[b->n - 1], b->len[b->n - 1])) < 0)
            break;
        p = e;
    }
    if (rc < 0)
        bundle_fini(b);
    return rc;
}

enum chain_role { ROLE_LEAF, ROLE_INTERMEDIATE, ROLE_ROOT };

/* Why wolfSSL refused a certificate on the path, as a sentence. */
static const char *chain_why(int rc, enum chain_role role)
{
    static const char *const expired[] = {"certificate has expired",
                                          "an intermediate certificate has expired",
                                          "a root in the bundle has expired"};
    static const char *const early[] = {"certificate is not yet valid",
                                        "an intermediate certificate is not yet valid",
                                        "a root in the bundle is not yet valid"};
    static const char *const no_signer[] = {
        "certificate was not issued by a root in the bundle or a given intermediate",
        "an intermediate certificate was not issued by a root in the bundle",
        "a root in the bundle is not self-signed"};
    static const char *const bad_sig[] = {
        "certificate signature does not verify with its issuer's key",
        "an intermediate certificate's signature does not verify with its issuer's key",
        "a root in the bundle has a signature that does not verify"};
    static const char *const other[] = {"certificate does not verify against the bundle",
                                        "an intermediate certificate cannot be used",
                                        "a root in the bundle cannot be used as a trust anchor"};
    switch (rc) {
    case ASN_AFTER_DATE_E:
        return expired[role];
    case ASN_BEFORE_DATE_E:
        return early[role];
    case ASN_NO_SIGNER_E:
        return no_signer[role];
    case ASN_SIG_CONFIRM_E:
    case SIG_VERIFY_E:
        return bad_sig[role];
    case ASN_PATHLEN_INV_E:
    case ASN_PATHLEN_SIZE_E:
        return "an intermediate certificate was issued by a CA whose pathLen forbids it";
    default:
        return other[role];
    }
}

/* Loads a root of the bundle into cm as a trust anchor. wolfSSL would take
 * any CA; only a self-issued one is a root here, so that an intermediate
 * left in a bundle (say, below a root since removed) anchors nothing. */
static int add_root(WOLFSSL_CERT_MANAGER *cm, const uint8_t *der, size_t len, const char **why)
{
    struct hy_ca_ca_info info;
    struct hy_ca_cert_fields f;
    int rc = hy_ca_check_ca(der, len, &info, why);
    if (rc < 0)
        return rc;
    if (hy_ca_cert_fields(der, len, &f) < 0 || f.issuer.size != f.subject.size ||
        memcmp(f.issuer.start, f.subject.start, f.subject.size) != 0) {
        *why = "a certificate in the bundle is not a root (its issuer is another CA)";
        return HY_EVERIFY;
    }
    if ((rc = ca_date_err(&info)) != 0) {
        *why = chain_why(rc, ROLE_ROOT);
        return HY_EVERIFY;
    }
    rc = wolfSSL_CertManagerLoadCABuffer(cm, der, (long)len, WOLFSSL_FILETYPE_ASN1);
    if (rc == WOLFSSL_SUCCESS)
        return 0;
    *why = chain_why(rc, ROLE_ROOT);
    return rc == MEMORY_E ? HY_ENOMEM : HY_EVERIFY;
}

/* Adds an intermediate to cm once it verifies against what cm holds. */
static int add_intermediate(WOLFSSL_CERT_MANAGER *cm, const uint8_t *der, size_t len,
                            const char **why)
{
    int rc = hy_ca_check_ca(der, len, NULL, why);
    if (rc < 0) {
        if (rc != HY_ENOMEM)
            *why = "an intermediate certificate is not a CA that may sign certificates";
        return rc;
    }
    rc = wolfSSL_CertManagerVerifyBuffer(cm, der, (long)len, WOLFSSL_FILETYPE_ASN1);
    if (rc == WOLFSSL_SUCCESS) /* parsed again as a CA: its issuer's pathLen applies */
        rc = wolfSSL_CertManagerLoadCABuffer(cm, der, (long)len, WOLFSSL_FILETYPE_ASN1);
    if (rc == WOLFSSL_SUCCESS)
        return 0;
    *why = chain_why(rc, ROLE_INTERMEDIATE);
    return rc == MEMORY_E ? HY_ENOMEM : HY_EVERIFY;
}

int hy_ca_verify_chain(const char *leaf_pem, const char *chain_pem, const char *roots_pem,
                       const char **why)
{
    const char *ignored;
    if (!why)
        why = &ignored;
    *why = NULL;
    struct bundle roots, chain;
    uint8_t *der;
    size_t len;
    int rc = bundle_read(&roots, roots_pem, HY_CA_BUNDLE_MAX);
    if (rc == 0 && roots.n == 0)
        rc = HY_EINVAL;
    if (rc < 0) {
        *why = rc == HY_ETOOBIG ? "the trust bundle holds too many certificates"
                                : "the trust bundle is not PEM certificates";
        return rc;
    }
    rc = bundle_read(&chain, chain_pem, HY_CA_CHAIN_MAX);
    if (rc == 0 && chain.n == 0 && chain_pem && chain_pem[0])
        rc = HY_EINVAL;
    if (rc < 0) {
        *why = rc == HY_ETOOBIG ? "the chain holds too many certificates"
                                : "the chain is not PEM certificates";
        goto out_free_roots;
    }
    if ((rc = hy_ca_pem_to_der(leaf_pem, CERT_TYPE, &der, &len)) < 0) {
        *why = "the certificate is not a PEM certificate";
        goto out_free_chain;
    }
    if ((rc = cert_parses(der, len)) < 0) {
        *why = "the certificate is not a PEM certificate";
        goto out_free_der;
    }
    WOLFSSL_CERT_MANAGER *cm = wolfSSL_CertManagerNew();
    if (!cm) {
        rc = HY_ENOMEM;
        goto out_free_der;
    }

    /* a root that cannot anchor (say, the old one, expired) is passed over */
    const char *root_why = NULL;
    size_t anchors = 0;
    for (size_t i = 0; i < roots.n; i++) {
        if ((rc = add_root(cm, roots.der[i], roots.len[i], &root_why)) == HY_ENOMEM)
            goto out_free_cm;
        anchors += rc == 0;
    }
    if (anchors == 0) {
        *why = root_why;
        rc = HY_EVERIFY;
        goto out_free_cm;
    }

    /* intermediates join the anchors once one of them vouches for them, in
     * rounds, since they may come in any order */
    bool added[HY_CA_CHAIN_MAX] = {false};
    const char *chain_failed[HY_CA_CHAIN_MAX] = {NULL};
    for (bool progress = true; progress;) {
        progress = false;
        for (size_t i = 0; i < chain.n; i++) {
            if (added[i])
                continue;
            rc = add_intermediate(cm, chain.der[i], chain.len[i], &chain_failed[i]);
            if (rc == HY_ENOMEM)
                goto out_free_cm;
            if (rc == 0)
                added[i] = progress = true;
        }
    }

    rc = wolfSSL_CertManagerVerifyBuffer(cm, der, (long)len, WOLFSSL_FILETYPE_ASN1);
    if (rc == WOLFSSL_SUCCESS) {
        rc = 0;
    } else if (rc == MEMORY_E) {
        rc = HY_ENOMEM;
    } else {
        *why = chain_why(rc, ROLE_LEAF);
        if (rc == ASN_NO_SIGNER_E) { /* no issuer: say what went wrong on the way to one */
            const char *cause = NULL;
            for (size_t i = 0; i < chain.n && !cause; i++)
                if (!added[i])
                    cause = chain_failed[i];
            if (cause || (cause = root_why))
                *why = cause;
        }
        rc = HY_EVERIFY;
    }
out_free_cm:
    wolfSSL_CertManagerFree(cm);
out_free_der:
    free(der);
out_free_chain:
    bundle_fini(&chain);
out_free_roots:
    bundle_fini(&roots);
    return rc;
}

/* ----- trust bundles users write ----- */

/* One block of a user's bundle, from its BEGIN line at p: its end in *end.
 * 0, or HY_EINVAL with *why. */
static int bundle_block(const char *p, const char **end, const char **why)
{
    static const char cert[] = "-----BEGIN CERTIFICATE-----";
    static const char cert_end[] = "-----END CERTIFICATE-----";
    if (strncmp(p, cert, sizeof(cert) - 1) != 0) {
        *why = "it holds a PEM block other than CERTIFICATE (a private key or a request?); only "
               "CA certificates belong in a trust bundle";
        return HY_EINVAL;
    }
    const char *e = strstr(p + sizeof(cert) - 1, cert_end);
    const char *next = strstr(p + sizeof(cert) - 1, "-----BEGIN ");
    if (!e || (next && next < e)) {
        *why = "a CERTIFICATE block has no \"-----END CERTIFICATE-----\" line";
        return HY_EINVAL;
    }
    *end = e + sizeof(cert_end) - 1;
    return 0;
}

/* Reads one certificate block into c: decoded, parsed, a CA, its
 * fingerprint and times. 0, HY_EINVAL with *why, or HY_ENOMEM. */
static int bundle_cert(const char *p, size_t n, struct hy_ca_bundle_cert *c, const char **why)
{
    char *block = strndup(p, n);
    if (!block)
        return HY_ENOMEM;
    uint8_t *der;
    size_t len;
    int rc = hy_ca_pem_to_der(block, CERT_TYPE, &der, &len);
    free(block);
    if (rc < 0) {
        *why = "a CERTIFICATE block does not decode (broken base64 or a cut line?)";
        return rc;
    }
    struct hy_ca_ca_info info;
    if ((rc = cert_parses(der, len)) < 0) {
        *why = "a certificate does not parse as X.509";
    } else if ((rc = hy_ca_check_ca(der, len, &info, why)) < 0) {
        rc = rc == HY_ENOMEM ? rc : HY_EINVAL;
    } else {
        uint8_t digest[WC_SHA256_DIGEST_SIZE];
        if ((rc = wc_Sha256Hash(der, (word32)len, digest)) != 0) {
            rc = hy_ca_gen_err(rc);
        } else {
            hex(digest, sizeof(digest), c->fingerprint);
            c->pem = p;
            c->len = n;
            c->not_before = info.not_before;
            c->not_after = info.not_after;
        }
    }
    free(der);
    return rc;
}

int hy_ca_bundle_each(const char *pem, int (*fn)(void *ud, const struct hy_ca_bundle_cert *c),
                      void *ud, size_t *count, size_t *index, const char **why)
{
    const char *ignored_why;
    size_t ignored_index, n = 0;
    if (!why)
        why = &ignored_why;
    if (!index)
        index = &ignored_index;
    *why = NULL;
    int rc = 0;
    for (const char *p = pem ? strstr(pem, "-----BEGIN ") : NULL; p; p = strstr(p, "-----BEGIN ")) {
        *index = n;
        const char *end;
        if ((rc = bundle_block(p, &end, why)) < 0)
            return rc;
        if (n == HY_CA_BUNDLE_MAX) {
            *why = "a trust bundle holds at most 64 certificates";
            return HY_ETOOBIG;
        }
        struct hy_ca_bundle_cert c;
        if ((rc = bundle_cert(p, (size_t)(end - p), &c, why)) < 0)
            return rc;
        if (fn && (rc = fn(ud, &c)) < 0)
            return rc;
        n++;
        p = end;
    }
    if (n == 0) {
        *index = 0;
        *why = "it holds no \"-----BEGIN CERTIFICATE-----\" block";
        return HY_EINVAL;
    }
    if (count)
        *count = n;
    return 0;
}
