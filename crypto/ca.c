/* Mesh CA and control-plane certificates on wolfCrypt's native API: P-256
 * keys, PEM, X.509 v3 building and signing, root and server certificates.
 * wolfSSL 5.5's Cert cannot mark basicConstraints critical, so the
 * to-be-signed part is encoded here (ca_der.h) and wolfSSL signs it
 * (wc_SignCert_ex). Requests and what is issued for them are in ca_csr.c,
 * reading and checking in ca_verify.c. wolfSSL's codes become HY_E* in these
 * files and nowhere else. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

#if !defined(WOLFSSL_CERT_GEN) || !defined(WOLFSSL_KEY_GEN) || !defined(HAVE_ECC)
#error "ca.c needs wolfSSL built with certgen, keygen and ecc (Debian's is)"
#endif

#define MAX_DNS_NAME 253
#define SIG_ROOM 512 /* signature algorithm, BIT STRING and ECDSA signature after the TBS */

/* DER of the object identifiers we write, header included. */
const uint8_t hy_ca_oid_cn[5] = {0x06, 0x03, 0x55, 0x04, 0x03};
static const uint8_t oid_org[] = {0x06, 0x03, 0x55, 0x04, 0x0a};
static const uint8_t oid_basic_constraints[] = {0x06, 0x03, 0x55, 0x1d, 0x13};
static const uint8_t oid_key_usage[] = {0x06, 0x03, 0x55, 0x1d, 0x0f};
static const uint8_t oid_ext_key_usage[] = {0x06, 0x03, 0x55, 0x1d, 0x25};
static const uint8_t oid_subject_key_id[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
static const uint8_t oid_authority_key_id[] = {0x06, 0x03, 0x55, 0x1d, 0x23};
static const uint8_t oid_subject_alt_name[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
static const uint8_t oid_server_auth[] = {0x06, 0x08, 0x2b, 0x06, 0x01,
                                          0x05, 0x05, 0x07, 0x03, 0x01};
static const uint8_t oid_client_auth[] = {0x06, 0x08, 0x2b, 0x06, 0x01,
                                          0x05, 0x05, 0x07, 0x03, 0x02};
const uint8_t hy_ca_alg_ecdsa_sha256[12] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                            0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

void hy_ca_wipe_free(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
    free(p);
}

void hy_ca_pem_fini(struct hy_ca_pem *p)
{
    free(p->cert);
    if (p->key)
        hy_ca_wipe_free(p->key, strlen(p->key));
    memset(p, 0, sizeof(*p));
}

/* ----- PEM, DER and keys ----- */

int hy_ca_der_to_pem(const uint8_t *der, size_t len, int type, char **out)
{
    /* with no output buffer wolfSSL returns the size the PEM needs */
    int n = wc_DerToPem(der, (word32)len, NULL, 0, type);
    if (n <= 0)
        return hy_ca_gen_err(n);
    char *pem = malloc((size_t)n + 1);
    if (!pem)
        return HY_ENOMEM;
    int m = wc_DerToPem(der, (word32)len, (byte *)pem, (word32)n, type);
    if (m <= 0 || m > n) {
        hy_ca_wipe_free(pem, (size_t)n + 1);
        return hy_ca_gen_err(m);
    }
    pem[m] = '\0';
    *out = pem;
    return 0;
}

int hy_ca_pem_to_der(const char *pem, int type, uint8_t **der, size_t *len)
{
    size_t n = pem ? strlen(pem) : 0;
    if (n == 0 || n > HY_CA_MAX_PEM_BYTES)
        return HY_EINVAL;
    uint8_t *buf = malloc(n); /* DER is always shorter than its PEM */
    if (!buf)
        return HY_ENOMEM;
    int rc = wc_CertPemToDer((const byte *)pem, (int)n, buf, (int)n, type);
    if (rc <= 0) {
        free(buf);
        return hy_ca_parse_err(rc);
    }
    *der = buf;
    *len = (size_t)rc;
    return 0;
}

/* Writes key as unencrypted PKCS#8 PEM (the public key included). */
int hy_ca_key_to_pem(ecc_key *key, char **out)
{
    word32 len = 0;
    int rc = wc_EccKeyToPKCS8(key, NULL, &len);
    if (rc != LENGTH_ONLY_E)
        return hy_ca_gen_err(rc);
    uint8_t *der = malloc(len);
    if (!der)
        return HY_ENOMEM;
    rc = wc_EccKeyToPKCS8(key, der, &len);
    if (rc <= 0)
        rc = hy_ca_gen_err(rc);
    else
        rc = hy_ca_der_to_pem(der, (size_t)rc, PKCS8_PRIVATEKEY_TYPE, out);
    hy_ca_wipe_free(der, len);
    return rc;
}

/* Reads a P-256 private key (PKCS#8 or SEC1 PEM) into key, which is
 * initialized here and must be freed by the caller (wc_ecc_free) on success
 * only. The public point is recomputed from the scalar and checked. */
int hy_ca_key_from_pem(const char *pem, ecc_key *key, WC_RNG *rng)
{
    size_t n = pem ? strlen(pem) : 0;
    if (n == 0 || n > HY_CA_MAX_PEM_BYTES)
        return HY_EINVAL;
    uint8_t *der = malloc(n);
    if (!der)
        return HY_ENOMEM;
    int rc = wc_KeyPemToDer((const byte *)pem, (int)n, der, (int)n, NULL);
    if (rc <= 0) {
        free(der);
        return hy_ca_parse_err(rc);
    }
    word32 der_len = (word32)rc, idx = 0;
    if ((rc = wc_ecc_init(key)) != 0) {
        hy_ca_wipe_free(der, n);
        return hy_ca_gen_err(rc);
    }
    rc = wc_EccPrivateKeyDecode(der, &idx, key, der_len);
    hy_ca_wipe_free(der, n);
    if (rc != 0) {
        rc = hy_ca_parse_err(rc);
        goto out_free_key;
    }
    if (key->dp == NULL || key->dp->id != ECC_SECP256R1) {
        rc = HY_EINVAL;
        goto out_free_key;
    }
    /* never trust a public key stored beside the scalar */
    if ((rc = wc_ecc_make_pub_ex(key, NULL, rng)) != 0 || (rc = wc_ecc_check_key(key)) != 0) {
        rc = hy_ca_parse_err(rc);
        goto out_free_key;
    }
    return 0;
out_free_key:
    wc_ecc_free(key);
    return rc;
}

int hy_ca_key_generate(ecc_key *key, WC_RNG *rng)
{
    int rc = wc_ecc_init(key);
    if (rc != 0)
        return hy_ca_gen_err(rc);
    rc = wc_ecc_make_key_ex(rng, 32, key, ECC_SECP256R1);
    if (rc != 0) {
        wc_ecc_free(key);
        return hy_ca_gen_err(rc);
    }
    return 0;
}

/* SubjectPublicKeyInfo DER of key, in out[0..*len). */
int hy_ca_key_spki(ecc_key *key, uint8_t *out, size_t *len)
{
    int rc = wc_EccPublicKeyToDer(key, out, (word32)*len, 1);
    if (rc <= 0)
        return hy_ca_gen_err(rc);
    *len = (size_t)rc;
    return 0;
}

/* RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the
 * subjectPublicKey bits of a SubjectPublicKeyInfo. */
int hy_ca_key_id(const uint8_t *spki, size_t n, uint8_t id[HY_CA_KEY_ID_BYTES])
{
    const uint8_t *p = spki;
    struct hy_ca_der_tlv seq, alg, bits;
    if (!hy_ca_der_read(&p, spki + n, &seq) || seq.tag != HY_DER_SEQUENCE)
        return HY_EINVAL;
    p = seq.val;
    if (!hy_ca_der_read(&p, seq.val + seq.len, &alg) ||
        !hy_ca_der_read(&p, seq.val + seq.len, &bits) || bits.tag != HY_DER_BIT_STRING ||
        bits.len < 2)
        return HY_EINVAL;
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    int rc = wc_Sha256Hash(bits.val + 1, (word32)(bits.len - 1), digest);
    if (rc != 0)
        return hy_ca_gen_err(rc);
    memcpy(id, digest, HY_CA_KEY_ID_BYTES);
    return 0;
}

/* Finds the subjectKeyIdentifier in the Extensions SEQUENCE ext. */
static void find_ski(const struct hy_ca_der_tlv *exts, struct hy_ca_cert_fields *f)
{
    const uint8_t *p = exts->val, *end = exts->val + exts->len;
    struct hy_ca_der_tlv ext, oid, v, id;
    while (p < end && hy_ca_der_read(&p, end, &ext) && ext.tag == HY_DER_SEQUENCE) {
        const uint8_t *q = ext.val, *qe = ext.val + ext.len;
        if (!hy_ca_der_read(&q, qe, &oid) ||
            !hy_ca_is_oid(&oid, oid_subject_key_id, sizeof(oid_subject_key_id)))
            continue;
        if (!hy_ca_der_read(&q, qe, &v))
            return;
        if (v.tag == HY_DER_BOOLEAN && !hy_ca_der_read(&q, qe, &v))
            return;
        q = v.val;
        if (v.tag == HY_DER_OCTET_STRING && hy_ca_der_read(&q, v.val + v.len, &id) &&
            id.tag == HY_DER_OCTET_STRING && id.len > 0) {
            f->ski = id.val;
            f->ski_len = id.len;
        }
        return;
    }
}

int hy_ca_cert_fields(const uint8_t *der, size_t len, struct hy_ca_cert_fields *f)
{
    memset(f, 0, sizeof(*f));
    const uint8_t *p = der, *end = der + len;
    struct hy_ca_der_tlv cert, tbs, v;
    if (!hy_ca_der_read(&p, end, &cert) || cert.tag != HY_DER_SEQUENCE)
        return HY_EINVAL;
    p = cert.val;
    if (!hy_ca_der_read(&p, cert.val + cert.len, &tbs) || tbs.tag != HY_DER_SEQUENCE)
        return HY_EINVAL;
    p = tbs.val;
    end = tbs.val + tbs.len;
    if (!hy_ca_der_read(&p, end, &v)) /* version or serial */
        return HY_EINVAL;
    if (v.tag == (HY_DER_CONTEXT_CON | 0) && !hy_ca_der_read(&p, end, &v)) /* serial */
        return HY_EINVAL;
    if (!hy_ca_der_read(&p, end, &v) || /* signature */
        !hy_ca_der_read(&p, end, &f->issuer) || f->issuer.tag != HY_DER_SEQUENCE ||
        !hy_ca_der_read(&p, end, &v) || /* validity */
        !hy_ca_der_read(&p, end, &f->subject) || f->subject.tag != HY_DER_SEQUENCE ||
        !hy_ca_der_read(&p, end, &f->spki) || f->spki.tag != HY_DER_SEQUENCE)
        return HY_EINVAL;
    while (p < end) { /* issuerUniqueID, subjectUniqueID, then [3] extensions */
        if (!hy_ca_der_read(&p, end, &v))
            return HY_EINVAL;
        const uint8_t *q = v.val;
        struct hy_ca_der_tlv exts;
        if (v.tag == (HY_DER_CONTEXT_CON | 3) && hy_ca_der_read(&q, v.val + v.len, &exts) &&
            exts.tag == HY_DER_SEQUENCE)
            find_ski(&exts, f);
    }
    return 0;
}

int hy_ca_key_matches(const uint8_t *der, size_t len, ecc_key *key)
{
    struct hy_ca_cert_fields f;
    uint8_t spki[HY_CA_SPKI_MAX];
    size_t n = sizeof(spki);
    int rc = hy_ca_cert_fields(der, len, &f);
    if (rc == 0)
        rc = hy_ca_key_spki(key, spki, &n);
    if (rc == 0 && (f.spki.size != n || memcmp(f.spki.start, spki, n) != 0))
        rc = HY_EVERIFY;
    return rc;
}

/* ----- building certificates ----- */

/* A validity time: UTCTime through 2049, GeneralizedTime from 2050 (RFC 5280
 * 4.1.2.5). */
static void put_time(struct hy_ca_der *d, int64_t t)
{
    time_t tt = (time_t)t;
    struct tm tm;
    if ((int64_t)tt != t || !gmtime_r(&tt, &tm) || tm.tm_year + 1900 < 1950 ||
        tm.tm_year + 1900 > 9999) {
        d->err = d->err ? d->err : HY_EINVAL;
        return;
    }
    int year = tm.tm_year + 1900;
    char s[64]; /* sized for any int, so the compiler can prove no truncation */
    if (year < 2050)
        snprintf(s, sizeof(s), "%02d%02d%02d%02d%02d%02dZ", year % 100, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
    else
        snprintf(s, sizeof(s), "%04d%02d%02d%02d%02d%02dZ", year, tm.tm_mon + 1, tm.tm_mday,
                 tm.tm_hour, tm.tm_min, tm.tm_sec);
    hy_ca_der_put(d, year < 2050 ? HY_DER_UTC_TIME : HY_DER_GENERALIZED_TIME, s, strlen(s));
}

static void put_rdn(struct hy_ca_der *d, const uint8_t *oid, size_t oid_len, const char *v)
{
    hy_ca_der_begin(d, HY_DER_SET);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    hy_ca_der_raw(d, oid, oid_len);
    hy_ca_der_put(d, HY_DER_UTF8_STRING, v, strlen(v));
    hy_ca_der_end(d);
    hy_ca_der_end(d);
}

void hy_ca_put_name(struct hy_ca_der *d, const char *cn)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    put_rdn(d, oid_org, sizeof(oid_org), "Hypha");
    put_rdn(d, hy_ca_oid_cn, sizeof(hy_ca_oid_cn), cn);
    hy_ca_der_end(d);
}

/* Opens Extension { extnID, critical, extnValue OCTET STRING { ... } }. */
static void ext_begin(struct hy_ca_der *d, const uint8_t *oid, size_t oid_len, bool critical)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    hy_ca_der_raw(d, oid, oid_len);
    if (critical)
        hy_ca_der_put(d, HY_DER_BOOLEAN, "\xff", 1);
    hy_ca_der_begin(d, HY_DER_OCTET_STRING);
}

static void ext_end(struct hy_ca_der *d)
{
    hy_ca_der_end(d);
    hy_ca_der_end(d);
}

static void put_extensions(struct hy_ca_der *d, const struct hy_ca_tbs *t)
{
    hy_ca_der_begin(d, HY_DER_CONTEXT_CON | 3);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);

    ext_begin(d, oid_basic_constraints, sizeof(oid_basic_constraints), true);
    hy_ca_der_begin(d, HY_DER_SEQUENCE); /* CA:false is the empty sequence */
    if (t->is_ca)
        hy_ca_der_put(d, HY_DER_BOOLEAN, "\xff", 1);
    if (t->is_ca && t->path_len_zero)
        hy_ca_der_put(d, HY_DER_INTEGER, "\x00", 1);
    hy_ca_der_end(d);
    ext_end(d);

    /* a named bit list drops trailing zero bits (X.690 11.2.2) */
    uint8_t ku[2] = {(uint8_t)__builtin_ctz(t->key_usage), t->key_usage};
    ext_begin(d, oid_key_usage, sizeof(oid_key_usage), true);
    hy_ca_der_put(d, HY_DER_BIT_STRING, ku, sizeof(ku));
    ext_end(d);

    if (t->ext_key_usage) {
        ext_begin(d, oid_ext_key_usage, sizeof(oid_ext_key_usage), false);
        hy_ca_der_begin(d, HY_DER_SEQUENCE);
        if (t->ext_key_usage & HY_CA_EKU_SERVER_AUTH)
            hy_ca_der_raw(d, oid_server_auth, sizeof(oid_server_auth));
        if (t->ext_key_usage & HY_CA_EKU_CLIENT_AUTH)
            hy_ca_der_raw(d, oid_client_auth, sizeof(oid_client_auth));
        hy_ca_der_end(d);
        ext_end(d);
    }

    ext_begin(d, oid_subject_key_id, sizeof(oid_subject_key_id), false);
    hy_ca_der_put(d, HY_DER_OCTET_STRING, t->ski, sizeof(t->ski));
    ext_end(d);

    ext_begin(d, oid_authority_key_id, sizeof(oid_authority_key_id), false);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    hy_ca_der_put(d, HY_DER_CONTEXT | 0, t->akid, t->akid_len); /* keyIdentifier */
    hy_ca_der_end(d);
    ext_end(d);

    if (t->san_len) {
        ext_begin(d, oid_subject_alt_name, sizeof(oid_subject_alt_name), false);
        hy_ca_der_raw(d, t->san, t->san_len);
        ext_end(d);
    }

    hy_ca_der_end(d);
    hy_ca_der_end(d);
}

/* TBSCertificate (RFC 5280 4.1) for t into d. */
static int put_tbs(struct hy_ca_der *d, const struct hy_ca_tbs *t)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    hy_ca_der_begin(d, HY_DER_CONTEXT_CON | 0);
    hy_ca_der_put(d, HY_DER_INTEGER, "\x02", 1); /* v3 */
    hy_ca_der_end(d);
    hy_ca_der_put(d, HY_DER_INTEGER, t->serial, sizeof(t->serial));
    hy_ca_der_raw(d, hy_ca_alg_ecdsa_sha256, sizeof(hy_ca_alg_ecdsa_sha256));
    if (t->issuer)
        hy_ca_der_raw(d, t->issuer, t->issuer_len);
    else
        hy_ca_put_name(d, t->cn);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    put_time(d, t->not_before);
    put_time(d, t->not_after);
    hy_ca_der_end(d);
    hy_ca_put_name(d, t->cn);
    hy_ca_der_raw(d, t->spki, t->spki_len);
    put_extensions(d, t);
    hy_ca_der_end(d);
    return d->err;
}

int hy_ca_tbs_init(struct hy_ca_tbs *t, ecc_key *subject, uint8_t *spki, WC_RNG *rng)
{
    size_t n = HY_CA_SPKI_MAX;
    int rc = hy_ca_key_spki(subject, spki, &n);
    if (rc < 0)
        return rc;
    t->spki = spki;
    t->spki_len = n;
    if ((rc = hy_ca_key_id(spki, n, t->ski)) < 0)
        return rc;
    if ((rc = wc_RNG_GenerateBlock(rng, t->serial, sizeof(t->serial))) != 0)
        return hy_ca_gen_err(rc);
    t->serial[0] = (uint8_t)((t->serial[0] & 0x7f) | 0x40);
    return 0;
}

int hy_ca_sign_der(const uint8_t *tbs, size_t len, int type, ecc_key *key, WC_RNG *rng, char **pem)
{
    size_t cap = len + SIG_ROOM;
    uint8_t *buf = malloc(cap);
    if (!buf)
        return HY_ENOMEM;
    memcpy(buf, tbs, len);
    /* signs buf[0..len) and wraps it as SEQUENCE { tbs, algorithm, signature },
     * the shape of a Certificate and of a CertificationRequest alike */
    int rc = wc_SignCert_ex((int)len, CTC_SHA256wECDSA, buf, (word32)cap, ECC_TYPE, key, rng);
    if (rc > 0)
        rc = hy_ca_der_to_pem(buf, (size_t)rc, type, pem);
    else
        rc = hy_ca_gen_err(rc);
    free(buf);
    return rc;
}

int hy_ca_sign_tbs(const struct hy_ca_tbs *t, ecc_key *issuer_key, WC_RNG *rng, char **pem)
{
    struct hy_ca_der d = {0};
    int rc = put_tbs(&d, t);
    if (rc == 0)
        rc =
            hy_ca_sign_der((const uint8_t *)d.out.data, d.out.len, CERT_TYPE, issuer_key, rng, pem);
    hy_ca_der_fini(&d);
    return rc;
}

int hy_ca_valid_cn(const char *cn)
{
    size_t n = cn ? strlen(cn) : 0;
    if (n == 0 || n > HY_CA_CN_MAX)
        return HY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (cn[i] < 0x20 || cn[i] > 0x7e)
            return HY_EINVAL;
    return 0;
}

int hy_ca_validity_window(int64_t now, int64_t validity, int64_t *nb, int64_t *na)
{
    if (validity <= 0 || now < HY_CA_BACKDATE_SECONDS || now > INT64_MAX - validity)
        return HY_EINVAL;
    *nb = now - HY_CA_BACKDATE_SECONDS;
    *na = now + validity;
    return 0;
}

int hy_ca_make_root(const char *cn, int64_t now, int64_t validity_seconds, struct hy_ca_pem *out)
{
    memset(out, 0, sizeof(*out));
    struct hy_ca_tbs t = {
        .cn = cn, .is_ca = true, .key_usage = HY_CA_KU_KEY_CERT_SIGN | HY_CA_KU_CRL_SIGN};
    int rc = hy_ca_valid_cn(cn);
    if (rc == 0)
        rc = hy_ca_validity_window(now, validity_seconds, &t.not_before, &t.not_after);
    if (rc < 0)
        return rc;

    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0)
        return hy_ca_gen_err(rc);
    ecc_key key;
    if ((rc = hy_ca_key_generate(&key, &rng)) < 0)
        goto out_free_rng;
    uint8_t spki[HY_CA_SPKI_MAX];
    if ((rc = hy_ca_tbs_init(&t, &key, spki, &rng)) < 0)
        goto out_free_key;
    t.akid = t.ski; /* self-signed: its own key signs */
    t.akid_len = sizeof(t.ski);
    rc = hy_ca_sign_tbs(&t, &key, &rng, &out->cert);
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

/* ----- issuing CAs ----- */

int hy_ca_signer_open(struct hy_ca_signer *s, const struct hy_ca_pem *ca, WC_RNG *rng)
{
    memset(s, 0, sizeof(*s));
    if (!ca || !ca->cert || !ca->key)
        return HY_EINVAL;
    int rc = hy_ca_pem_to_der(ca->cert, CERT_TYPE, &s->der, &s->len);
    if (rc < 0)
        return rc;
    const char *why;
    struct hy_ca_ca_info info;
    if ((rc = hy_ca_check_ca(s->der, s->len, &info, &why)) < 0 ||
        (rc = hy_ca_cert_fields(s->der, s->len, &s->f)) < 0) {
        rc = rc == HY_ENOMEM ? rc : HY_EINVAL;
        goto out_free_der;
    }
    s->not_after = info.not_after;
    s->path_len_zero = info.path_len_zero;
    if ((rc = hy_ca_key_from_pem(ca->key, &s->key, rng)) < 0)
        goto out_free_der;
    if ((rc = hy_ca_key_matches(s->der, s->len, &s->key)) < 0) {
        rc = rc == HY_ENOMEM ? rc : HY_EINVAL; /* a CA whose key is not its own cannot sign */
        goto out_free_key;
    }
    /* a CA without SKID (not one of ours) is still named by its key */
    if (!s->f.ski && (rc = hy_ca_key_id(s->f.spki.start, s->f.spki.size, s->id)) < 0)
        goto out_free_key;
    return 0;
out_free_key:
    wc_ecc_free(&s->key);
out_free_der:
    free(s->der);
    memset(s, 0, sizeof(*s));
    return rc;
}

void hy_ca_signer_close(struct hy_ca_signer *s)
{
    wc_ecc_free(&s->key);
    free(s->der);
    memset(s, 0, sizeof(*s));
}

void hy_ca_signer_apply(const struct hy_ca_signer *s, struct hy_ca_tbs *t)
{
    t->issuer = s->f.subject.start; /* byte for byte, so name chaining matches */
    t->issuer_len = s->f.subject.size;
    /* point at the CA's own identifier, whatever method made it, so
     * verifiers that match AKID to SKID find it */
    t->akid = s->f.ski ? s->f.ski : s->id;
    t->akid_len = s->f.ski ? s->f.ski_len : sizeof(s->id);
}

/* ----- server certificates ----- */

static bool valid_dns(const char *s)
{
    size_t n = strlen(s);
    if (n == 0 || n > MAX_DNS_NAME)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        bool ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
                  (ch >= '0' && ch <= '9') || ch == '-' || ch == '.' || ch == '_' ||
                  (ch == '*' && i == 0 && s[1] == '.');
        if (!ok)
            return false;
    }
    return true;
}

/* GeneralNames DER (the subjectAltName value) for req's DNS names and IPs. */
static int san_encode(const struct hy_ca_server_req *req, struct hy_ca_der *d)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    for (size_t i = 0; i < req->ndns; i++) {
        if (!req->dns[i] || !valid_dns(req->dns[i]))
            return HY_EINVAL;
        hy_ca_der_put(d, HY_DER_CONTEXT | 2, req->dns[i], strlen(req->dns[i])); /* dNSName */
    }
    for (size_t i = 0; i < req->nips; i++) {
        uint8_t ip[16];
        size_t n = 0;
        if (req->ips[i] && inet_pton(AF_INET, req->ips[i], ip) == 1)
            n = 4;
        else if (req->ips[i] && inet_pton(AF_INET6, req->ips[i], ip) == 1)
            n = 16;
        else
            return HY_EINVAL;
        hy_ca_der_put(d, HY_DER_CONTEXT | 7, ip, n); /* iPAddress */
    }
    hy_ca_der_end(d);
    return d->err;
}

int hy_ca_sign_server(const struct hy_ca_pem *ca, const struct hy_ca_server_req *req,
                      struct hy_ca_pem *out)
{
    memset(out, 0, sizeof(*out));
    if (!ca || !req || req->ndns + req->nips == 0 || (req->ndns && !req->dns) ||
        (req->nips && !req->ips))
        return HY_EINVAL;
    struct hy_ca_tbs t = {
        .cn = req->cn     ? req->cn
              : req->ndns ? req->dns[0]
                          : req->ips[0],
        .key_usage = HY_CA_KU_DIGITAL_SIGNATURE,
        .ext_key_usage = HY_CA_EKU_SERVER_AUTH,
    };
    int rc = hy_ca_valid_cn(t.cn);
    if (rc == 0)
        rc = hy_ca_validity_window(req->now, req->validity_seconds, &t.not_before, &t.not_after);
    if (rc < 0)
        return rc;
    struct hy_ca_der san = {0};
    if ((rc = san_encode(req, &san)) < 0)
        goto out_free_san;
    t.san = (const uint8_t *)san.out.data;
    t.san_len = san.out.len;

    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0) {
        rc = hy_ca_gen_err(rc);
        goto out_free_san;
    }
    struct hy_ca_signer signer;
    if ((rc = hy_ca_signer_open(&signer, ca, &rng)) < 0)
        goto out_free_rng;
    hy_ca_signer_apply(&signer, &t);
    ecc_key key;
    if ((rc = hy_ca_key_generate(&key, &rng)) < 0)
        goto out_close_signer;
    uint8_t spki[HY_CA_SPKI_MAX];
    if ((rc = hy_ca_tbs_init(&t, &key, spki, &rng)) == 0)
        rc = hy_ca_sign_tbs(&t, &signer.key, &rng, &out->cert);
    if (rc == 0)
        rc = hy_ca_key_to_pem(&key, &out->key);
    if (rc < 0)
        hy_ca_pem_fini(out);
    wc_ecc_free(&key);
out_close_signer:
    hy_ca_signer_close(&signer);
out_free_rng:
    wc_FreeRng(&rng);
out_free_san:
    hy_ca_der_fini(&san);
    return rc;
}

int hy_ca_make_self_signed_server(const char *ca_cn, const struct hy_ca_server_req *req,
                                  struct hy_ca_pem *ca, struct hy_ca_pem *leaf)
{
    memset(leaf, 0, sizeof(*leaf));
    if (!req) {
        memset(ca, 0, sizeof(*ca));
        return HY_EINVAL;
    }
    int rc = hy_ca_make_root(ca_cn, req->now, req->validity_seconds, ca);
    if (rc == 0 && (rc = hy_ca_sign_server(ca, req, leaf)) < 0)
        hy_ca_pem_fini(ca);
    return rc;
}
