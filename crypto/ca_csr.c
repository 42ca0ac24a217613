/* Certificate requests for the CA module: making one (the key never leaves
 * the caller), reading and checking one, and issuing for it a zone's
 * intermediate CA or a workload's leaf. Only a request's key and CN are
 * used; the signer decides everything else. */
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "ca.h"
#include "ca_der.h"
#include "ca_int.h"
#include "error.h"
#include "poison.h"

#ifndef WOLFSSL_CERT_REQ
#error "ca_csr.c writes and reads PKCS#10 requests: wolfSSL needs WOLFSSL_CERT_REQ"
#endif

/* String types a CN may come in: UTF8String, PrintableString, IA5String */
#define DER_PRINTABLE_STRING 0x13
#define DER_IA5_STRING 0x16

int hy_ca_make_csr(const char *cn, struct hy_ca_pem *out)
{
    memset(out, 0, sizeof(*out));
    int rc = hy_ca_valid_cn(cn);
    if (rc < 0)
        return rc;
    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0)
        return hy_ca_gen_err(rc);
    ecc_key key;
    if ((rc = hy_ca_key_generate(&key, &rng)) < 0)
        goto out_free_rng;
    uint8_t spki[HY_CA_SPKI_MAX];
    size_t spki_len = sizeof(spki);
    if ((rc = hy_ca_key_spki(&key, spki, &spki_len)) < 0)
        goto out_free_key;

    /* CertificationRequestInfo (RFC 2986 4.1) */
    struct hy_ca_der d = {0};
    hy_ca_der_begin(&d, HY_DER_SEQUENCE);
    hy_ca_der_put(&d, HY_DER_INTEGER, "\x00", 1); /* version 1 */
    hy_ca_put_name(&d, cn);
    hy_ca_der_raw(&d, spki, spki_len);
    hy_ca_der_begin(&d, HY_DER_CONTEXT_CON | 0); /* attributes: none */
    hy_ca_der_end(&d);
    hy_ca_der_end(&d);
    if ((rc = d.err) == 0)
        rc = hy_ca_sign_der((const uint8_t *)d.out.data, d.out.len, CERTREQ_TYPE, &key, &rng,
                            &out->cert);
    hy_ca_der_fini(&d);
    if (rc == 0)
        rc = hy_ca_key_to_pem(&key, &out->key);
    if (rc < 0)
        hy_ca_pem_fini(out);
out_free_key:
    wc_ecc_free(&key);
out_free_rng:
    wc_FreeRng(&rng);
    return rc;
}

/* ----- reading requests ----- */

/* Copies the Name's CN into cn when there is exactly one and it is a valid
 * CN; leaves cn "" otherwise. */
static void name_cn(const struct hy_ca_der_tlv *name, char cn[HY_CA_CN_MAX + 1])
{
    const uint8_t *p = name->val, *end = name->val + name->len;
    struct hy_ca_der_tlv rdn, atv, type, value;
    int found = 0;
    cn[0] = '\0';
    while (p < end && hy_ca_der_read(&p, end, &rdn) && rdn.tag == HY_DER_SET) {
        const uint8_t *q = rdn.val, *qe = rdn.val + rdn.len;
        while (q < qe && hy_ca_der_read(&q, qe, &atv) && atv.tag == HY_DER_SEQUENCE) {
            const uint8_t *r = atv.val, *re = atv.val + atv.len;
            if (!hy_ca_der_read(&r, re, &type) ||
                !hy_ca_is_oid(&type, hy_ca_oid_cn, sizeof(hy_ca_oid_cn)))
                continue;
            if (++found > 1 || !hy_ca_der_read(&r, re, &value))
                goto out_none;
            if ((value.tag != HY_DER_UTF8_STRING && value.tag != DER_PRINTABLE_STRING &&
                 value.tag != DER_IA5_STRING) ||
                value.len == 0 || value.len > HY_CA_CN_MAX)
                goto out_none;
            memcpy(cn, value.val, value.len);
            cn[value.len] = '\0';
            if (strlen(cn) != value.len || hy_ca_valid_cn(cn) < 0) /* no NUL smuggled in */
                goto out_none;
        }
    }
    return;
out_none:
    cn[0] = '\0';
}

int hy_ca_csr_fields(const uint8_t *der, size_t len, struct hy_ca_csr_fields *f)
{
    memset(f, 0, sizeof(*f));
    const uint8_t *p = der, *end = der + len;
    struct hy_ca_der_tlv req, alg, sig, version, subject;
    if (!hy_ca_der_read(&p, end, &req) || req.tag != HY_DER_SEQUENCE || p != end)
        return HY_EINVAL;
    p = req.val;
    end = req.val + req.len;
    if (!hy_ca_der_read(&p, end, &f->info) || f->info.tag != HY_DER_SEQUENCE ||
        !hy_ca_der_read(&p, end, &alg) || !hy_ca_der_read(&p, end, &sig) ||
        sig.tag != HY_DER_BIT_STRING || p != end)
        return HY_EINVAL;
    /* P-256 keys sign with SHA-256, and nothing else is accepted */
    if (alg.size != sizeof(hy_ca_alg_ecdsa_sha256) ||
        memcmp(alg.start, hy_ca_alg_ecdsa_sha256, alg.size) != 0)
        return HY_EINVAL;
    if (sig.len < 2 || sig.val[0] != 0) /* whole bytes only */
        return HY_EINVAL;
    f->sig = sig.val + 1;
    f->sig_len = sig.len - 1;

    p = f->info.val;
    end = f->info.val + f->info.len;
    if (!hy_ca_der_read(&p, end, &version) || version.tag != HY_DER_INTEGER || version.len != 1 ||
        version.val[0] != 0 || !hy_ca_der_read(&p, end, &subject) ||
        subject.tag != HY_DER_SEQUENCE || !hy_ca_der_read(&p, end, &f->spki) ||
        f->spki.tag != HY_DER_SEQUENCE)
        return HY_EINVAL;
    /* the attributes that follow (extension requests, SANs) are not ours to
     * honour: the signer decides */
    name_cn(&subject, f->cn);
    return 0;
}

/* A request read and checked: its signature verifies with its own key,
 * which is P-256. */
struct csr {
    uint8_t *der; /* owned */
    size_t len;
    struct hy_ca_csr_fields f; /* points into der */
    ecc_key key;               /* the public key */
};

static int csr_open(struct csr *c, const char *pem)
{
    memset(c, 0, sizeof(*c));
    int rc = hy_ca_pem_to_der(pem, CERTREQ_TYPE, &c->der, &c->len);
    if (rc < 0)
        return rc;
    if ((rc = hy_ca_csr_fields(c->der, c->len, &c->f)) < 0)
        goto out_free_der;
    if ((rc = wc_ecc_init(&c->key)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_free_der;
    }
    word32 idx = 0;
    rc = wc_EccPublicKeyDecode(c->f.spki.start, &idx, &c->key, (word32)c->f.spki.size);
    if (rc != 0 || idx != c->f.spki.size) {
        rc = rc ? hy_ca_parse_err(rc) : HY_EINVAL;
        goto out_free_key;
    }
    if (c->key.dp == NULL || c->key.dp->id != ECC_SECP256R1) {
        rc = HY_EINVAL;
        goto out_free_key;
    }
    if ((rc = wc_ecc_check_key(&c->key)) != 0) { /* a point on the curve */
        rc = hy_ca_parse_err(rc);
        goto out_free_key;
    }
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    if ((rc = wc_Sha256Hash(c->f.info.start, (word32)c->f.info.size, digest)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_free_key;
    }
    int ok = 0;
    rc = wc_ecc_verify_hash(c->f.sig, (word32)c->f.sig_len, digest, sizeof(digest), &ok, &c->key);
    /* a signature that does not even decode is as bad as a wrong one */
    if (rc == MEMORY_E) {
        rc = HY_ENOMEM;
        goto out_free_key;
    }
    if (rc != 0 || ok != 1) {
        rc = HY_EVERIFY;
        goto out_free_key;
    }
    return 0;
out_free_key:
    wc_ecc_free(&c->key);
out_free_der:
    free(c->der);
    memset(c, 0, sizeof(*c));
    return rc;
}

static void csr_close(struct csr *c)
{
    wc_ecc_free(&c->key);
    free(c->der);
    memset(c, 0, sizeof(*c));
}

/* ----- issuing for requests ----- */

/* Everything one issuance holds open: the checked request, the signing CA
 * and a random generator. */
struct issuing {
    struct csr csr;
    WC_RNG rng;
    struct hy_ca_signer signer;
};

/* The request is checked before the CA is opened: a forged request is
 * HY_EVERIFY whatever the CA. */
static int issuing_open(struct issuing *is, const struct hy_ca_pem *ca, const char *csr_pem)
{
    int rc = csr_open(&is->csr, csr_pem);
    if (rc < 0)
        return rc;
    if ((rc = wc_InitRng(&is->rng)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_close_csr;
    }
    if ((rc = hy_ca_signer_open(&is->signer, ca, &is->rng)) < 0)
        goto out_free_rng;
    return 0;
out_free_rng:
    wc_FreeRng(&is->rng);
out_close_csr:
    csr_close(&is->csr);
    return rc;
}

static void issuing_close(struct issuing *is)
{
    hy_ca_signer_close(&is->signer);
    wc_FreeRng(&is->rng);
    csr_close(&is->csr);
}

/* Signs t, already named and with its validity, for the request's key:
 * cuts the validity at the CA's end and points t at the CA. */
static int issue(struct issuing *is, struct hy_ca_tbs *t, char **pem)
{
    if (t->not_after > is->signer.not_after)
        t->not_after = is->signer.not_after;
    if (t->not_after <= t->not_before + HY_CA_BACKDATE_SECONDS) /* the CA has expired */
        return HY_EINVAL;
    hy_ca_signer_apply(&is->signer, t);
    uint8_t spki[HY_CA_SPKI_MAX];
    int rc = hy_ca_tbs_init(t, &is->csr.key, spki, &is->rng);
    if (rc == 0)
        rc = hy_ca_sign_tbs(t, &is->signer.key, &is->rng, pem);
    return rc;
}

int hy_ca_sign_intermediate(const struct hy_ca_pem *root, const char *csr_pem, int64_t now,
                            int64_t validity_seconds, const char *cn_override, char **cert_pem)
{
    *cert_pem = NULL;
    struct hy_ca_tbs t = {
        .is_ca = true,
        .path_len_zero = true,
        .key_usage = HY_CA_KU_KEY_CERT_SIGN | HY_CA_KU_CRL_SIGN,
    };
    int rc = hy_ca_validity_window(now, validity_seconds, &t.not_before, &t.not_after);
    if (rc == 0 && cn_override)
        rc = hy_ca_valid_cn(cn_override);
    if (rc < 0)
        return rc;
    struct issuing is;
    if ((rc = issuing_open(&is, root, csr_pem)) < 0)
        return rc;
    t.cn = cn_override ? cn_override : is.csr.f.cn;
    if (is.signer.path_len_zero) /* it may sign end entities only */
        rc = HY_EINVAL;
    else if ((rc = hy_ca_valid_cn(t.cn)) == 0)
        rc = issue(&is, &t, cert_pem);
    issuing_close(&is);
    return rc;
}

/* A URI as RFC 3986 allows it: a scheme, a colon, then printable ASCII
 * without spaces, quotes, angle brackets, braces, '|', '\\', '^' or '`'. */
static bool valid_uri(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > HY_CA_URI_MAX)
        return false;
    size_t i = 0;
    if (!((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z')))
        return false;
    while (i < n && s[i] != ':') {
        char ch = s[i++];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '+' || ch == '-' || ch == '.'))
            return false;
    }
    if (i == n)
        return false;
    for (; i < n; i++)
        if (s[i] <= 0x20 || s[i] >= 0x7f || strchr("\"<>\\^`{|}", s[i]))
            return false;
    return true;
}

/* The last segment of uri's path ("web" of "spiffe://default/web") into
 * cn, or "" when the path has none or it does not fit a CN. */
static void uri_cn(const char *uri, char cn[HY_CA_CN_MAX + 1])
{
    cn[0] = '\0';
    const char *p = strchr(uri, ':') + 1; /* valid_uri saw one */
    if (p[0] == '/' && p[1] == '/') {     /* skip the authority */
        p += 2;
        p += strcspn(p, "/?#");
    }
    size_t path_len = strcspn(p, "?#");
    const char *seg = p + path_len;
    while (seg > p && seg[-1] != '/')
        seg--;
    size_t n = (size_t)(p + path_len - seg);
    if (n == 0 || n > HY_CA_CN_MAX)
        return;
    memcpy(cn, seg, n);
    cn[n] = '\0';
}

int hy_ca_sign_leaf(const struct hy_ca_pem *ca, const char *csr_pem, int64_t now,
                    int64_t validity_seconds, const char *const *uris, size_t nuris,
                    char **cert_pem)
{
    *cert_pem = NULL;
    if (nuris && !uris)
        return HY_EINVAL;
    struct hy_ca_tbs t = {
        .key_usage = HY_CA_KU_DIGITAL_SIGNATURE,
        .ext_key_usage = HY_CA_EKU_SERVER_AUTH | HY_CA_EKU_CLIENT_AUTH,
    };
    int rc = hy_ca_validity_window(now, validity_seconds, &t.not_before, &t.not_after);
    if (rc < 0)
        return rc;
    struct hy_ca_der san = {0};
    hy_ca_der_begin(&san, HY_DER_SEQUENCE);
    for (size_t i = 0; i < nuris; i++) {
        if (!valid_uri(uris[i])) {
            rc = HY_EINVAL;
            goto out_free_san;
        }
        /* uniformResourceIdentifier [6] IA5String */
        hy_ca_der_put(&san, HY_DER_CONTEXT | 6, uris[i], strlen(uris[i]));
    }
    hy_ca_der_end(&san);
    if ((rc = san.err) < 0)
        goto out_free_san;
    if (nuris) {
        t.san = (const uint8_t *)san.out.data;
        t.san_len = san.out.len;
    }
    char cn[HY_CA_CN_MAX + 1] = "";
    if (nuris)
        uri_cn(uris[0], cn);

    struct issuing is;
    if ((rc = issuing_open(&is, ca, csr_pem)) < 0)
        goto out_free_san;
    t.cn = cn[0] ? cn : is.csr.f.cn;
    if ((rc = hy_ca_valid_cn(t.cn)) == 0)
        rc = issue(&is, &t, cert_pem);
    issuing_close(&is);
out_free_san:
    hy_ca_der_fini(&san);
    return rc;
}
