/* Mesh CA and control-plane certificates on wolfCrypt's native API: P-256
 * keys, X.509 v3 building and signing, parsing, chain and key checks.
 * wolfSSL 5.5's Cert cannot mark basicConstraints critical, so the
 * to-be-signed part is encoded here (ca_der.h) and wolfSSL signs it
 * (wc_SignCert_ex), parses and verifies. wolfSSL's codes become HY_E* here and
 * nowhere else. */
#include <arpa/inet.h>
#include <limits.h>
#include <stdio.h>
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
#include "ca_der.h"
#include "error.h"
#include "poison.h"

#if !defined(WOLFSSL_CERT_GEN) || !defined(WOLFSSL_KEY_GEN) || !defined(HAVE_ECC)
#error "ca.c needs wolfSSL built with certgen, keygen and ecc (Debian's is)"
#endif
#ifndef WOLFSSL_HAVE_ISSUER_NAMES
#error "ca.c reads the issuer CN from DecodedCert: wolfSSL needs WOLFSSL_HAVE_ISSUER_NAMES"
#endif

#define BACKDATE_SECONDS 60      /* tolerate peers whose clocks run a little behind */
#define SERIAL_BYTES 16          /* positive, no leading zero byte: 126 random bits */
#define KEY_ID_BYTES 20          /* subject/authority key identifiers (RFC 7093 method 1) */
#define MAX_PEM_BYTES (1u << 20) /* no certificate or key of ours comes close */
#define MAX_DNS_NAME 253
#define SIG_ROOM 512 /* signature algorithm, BIT STRING and ECDSA signature after the TBS */

/* DER of the object identifiers we write, header included. */
static const uint8_t oid_cn[] = {0x06, 0x03, 0x55, 0x04, 0x03};
static const uint8_t oid_org[] = {0x06, 0x03, 0x55, 0x04, 0x0a};
static const uint8_t oid_basic_constraints[] = {0x06, 0x03, 0x55, 0x1d, 0x13};
static const uint8_t oid_key_usage[] = {0x06, 0x03, 0x55, 0x1d, 0x0f};
static const uint8_t oid_ext_key_usage[] = {0x06, 0x03, 0x55, 0x1d, 0x25};
static const uint8_t oid_subject_key_id[] = {0x06, 0x03, 0x55, 0x1d, 0x0e};
static const uint8_t oid_authority_key_id[] = {0x06, 0x03, 0x55, 0x1d, 0x23};
static const uint8_t oid_subject_alt_name[] = {0x06, 0x03, 0x55, 0x1d, 0x11};
static const uint8_t oid_server_auth[] = {0x06, 0x08, 0x2b, 0x06, 0x01,
                                          0x05, 0x05, 0x07, 0x03, 0x01};
/* AlgorithmIdentifier ecdsa-with-SHA256, no parameters (RFC 5758) */
static const uint8_t alg_ecdsa_sha256[] = {0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86,
                                           0x48, 0xce, 0x3d, 0x04, 0x03, 0x02};

/* KeyUsage bits as they sit in the first byte of the BIT STRING */
#define KU_DIGITAL_SIGNATURE 0x80
#define KU_KEY_CERT_SIGN 0x04
#define KU_CRL_SIGN 0x02

/* A wolfCrypt failure on something we generate: only allocation is worth
 * telling apart. */
static int wc_gen_err(int rc)
{
    return rc == MEMORY_E ? HY_ENOMEM : HY_ECRYPTO;
}

/* A wolfCrypt failure on input we were handed: it does not parse. */
static int wc_parse_err(int rc)
{
    return rc == MEMORY_E ? HY_ENOMEM : HY_EINVAL;
}

static void wipe_free(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
    free(p);
}

void hy_ca_pem_fini(struct hy_ca_pem *p)
{
    free(p->cert);
    if (p->key)
        wipe_free(p->key, strlen(p->key));
    memset(p, 0, sizeof(*p));
}

void hy_ca_info_fini(struct hy_ca_info *info)
{
    free(info->subject_cn);
    free(info->issuer_cn);
    for (size_t i = 0; i < info->nsans; i++)
        free(info->sans[i]);
    free(info->sans);
    memset(info, 0, sizeof(*info));
}

/* ----- PEM, DER and keys ----- */

static int der_to_pem(const uint8_t *der, size_t len, int type, char **out)
{
    /* with no output buffer wolfSSL returns the size the PEM needs */
    int n = wc_DerToPem(der, (word32)len, NULL, 0, type);
    if (n <= 0)
        return wc_gen_err(n);
    char *pem = malloc((size_t)n + 1);
    if (!pem)
        return HY_ENOMEM;
    int m = wc_DerToPem(der, (word32)len, (byte *)pem, (word32)n, type);
    if (m <= 0 || m > n) {
        wipe_free(pem, (size_t)n + 1);
        return wc_gen_err(m);
    }
    pem[m] = '\0';
    *out = pem;
    return 0;
}

/* DER of the first certificate in pem; *der is owned by the caller. */
static int cert_der(const char *pem, uint8_t **der, size_t *len)
{
    size_t n = pem ? strlen(pem) : 0;
    if (n == 0 || n > MAX_PEM_BYTES)
        return HY_EINVAL;
    uint8_t *buf = malloc(n); /* DER is always shorter than its PEM */
    if (!buf)
        return HY_ENOMEM;
    int rc = wc_CertPemToDer((const byte *)pem, (int)n, buf, (int)n, CERT_TYPE);
    if (rc <= 0) {
        free(buf);
        return wc_parse_err(rc);
    }
    *der = buf;
    *len = (size_t)rc;
    return 0;
}

/* Writes key as unencrypted PKCS#8 PEM (the public key included). */
static int key_to_pem(ecc_key *key, char **out)
{
    word32 len = 0;
    int rc = wc_EccKeyToPKCS8(key, NULL, &len);
    if (rc != LENGTH_ONLY_E)
        return wc_gen_err(rc);
    uint8_t *der = malloc(len);
    if (!der)
        return HY_ENOMEM;
    rc = wc_EccKeyToPKCS8(key, der, &len);
    if (rc <= 0)
        rc = wc_gen_err(rc);
    else
        rc = der_to_pem(der, (size_t)rc, PKCS8_PRIVATEKEY_TYPE, out);
    wipe_free(der, len);
    return rc;
}

/* Reads a P-256 private key (PKCS#8 or SEC1 PEM) into key, which is
 * initialized here and must be freed by the caller (wc_ecc_free) on success
 * only. The public point is recomputed from the scalar and checked. */
static int key_from_pem(const char *pem, ecc_key *key, WC_RNG *rng)
{
    size_t n = pem ? strlen(pem) : 0;
    if (n == 0 || n > MAX_PEM_BYTES)
        return HY_EINVAL;
    uint8_t *der = malloc(n);
    if (!der)
        return HY_ENOMEM;
    int rc = wc_KeyPemToDer((const byte *)pem, (int)n, der, (int)n, NULL);
    if (rc <= 0) {
        free(der);
        return wc_parse_err(rc);
    }
    word32 der_len = (word32)rc, idx = 0;
    if ((rc = wc_ecc_init(key)) != 0) {
        wipe_free(der, n);
        return wc_gen_err(rc);
    }
    rc = wc_EccPrivateKeyDecode(der, &idx, key, der_len);
    wipe_free(der, n);
    if (rc != 0) {
        rc = wc_parse_err(rc);
        goto out_free_key;
    }
    if (key->dp == NULL || key->dp->id != ECC_SECP256R1) {
        rc = HY_EINVAL;
        goto out_free_key;
    }
    /* never trust a public key stored beside the scalar */
    if ((rc = wc_ecc_make_pub_ex(key, NULL, rng)) != 0 || (rc = wc_ecc_check_key(key)) != 0) {
        rc = wc_parse_err(rc);
        goto out_free_key;
    }
    return 0;
out_free_key:
    wc_ecc_free(key);
    return rc;
}

static int key_generate(ecc_key *key, WC_RNG *rng)
{
    int rc = wc_ecc_init(key);
    if (rc != 0)
        return wc_gen_err(rc);
    rc = wc_ecc_make_key_ex(rng, 32, key, ECC_SECP256R1);
    if (rc != 0) {
        wc_ecc_free(key);
        return wc_gen_err(rc);
    }
    return 0;
}

/* SubjectPublicKeyInfo DER of key, in out[0..*len). */
static int key_spki(ecc_key *key, uint8_t *out, size_t *len)
{
    int rc = wc_EccPublicKeyToDer(key, out, (word32)*len, 1);
    if (rc <= 0)
        return wc_gen_err(rc);
    *len = (size_t)rc;
    return 0;
}

/* RFC 7093 method 1: the leftmost 160 bits of the SHA-256 of the
 * subjectPublicKey bits of a SubjectPublicKeyInfo. */
static int key_id(const uint8_t *spki, size_t n, uint8_t id[KEY_ID_BYTES])
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
        return wc_gen_err(rc);
    memcpy(id, digest, KEY_ID_BYTES);
    return 0;
}

/* What ca.c needs from a certificate, pointing into its DER. */
struct cert_fields {
    struct hy_ca_der_tlv subject, spki;
    const uint8_t *ski; /* subjectKeyIdentifier, NULL when absent */
    size_t ski_len;
};

static bool is_oid(const struct hy_ca_der_tlv *v, const uint8_t *oid, size_t n)
{
    return v->tag == HY_DER_OID && v->size == n && memcmp(v->start, oid, n) == 0;
}

/* Finds the subjectKeyIdentifier in the Extensions SEQUENCE ext. */
static void find_ski(const struct hy_ca_der_tlv *exts, struct cert_fields *f)
{
    const uint8_t *p = exts->val, *end = exts->val + exts->len;
    struct hy_ca_der_tlv ext, oid, v, id;
    while (p < end && hy_ca_der_read(&p, end, &ext) && ext.tag == HY_DER_SEQUENCE) {
        const uint8_t *q = ext.val, *qe = ext.val + ext.len;
        if (!hy_ca_der_read(&q, qe, &oid) ||
            !is_oid(&oid, oid_subject_key_id, sizeof(oid_subject_key_id)))
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

/* Walks Certificate -> TBSCertificate to the subject, the public key and the
 * subjectKeyIdentifier. */
static int cert_fields(const uint8_t *der, size_t len, struct cert_fields *f)
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
    if (!hy_ca_der_read(&p, end, &v) || !hy_ca_der_read(&p, end, &v) || /* signature, issuer */
        !hy_ca_der_read(&p, end, &v) ||                                 /* validity */
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

/* 0 when key is the key of the certificate der, HY_EVERIFY when not. */
static int key_matches(const uint8_t *der, size_t len, ecc_key *key)
{
    struct cert_fields f;
    uint8_t spki[256];
    size_t n = sizeof(spki);
    int rc = cert_fields(der, len, &f);
    if (rc == 0)
        rc = key_spki(key, spki, &n);
    if (rc == 0 && (f.spki.size != n || memcmp(f.spki.start, spki, n) != 0))
        rc = HY_EVERIFY;
    return rc;
}

/* ----- building certificates ----- */

/* What goes into one to-be-signed certificate. Pointers are borrowed. */
struct tbs {
    const char *cn;
    bool is_ca;
    uint8_t key_usage;     /* KU_* bits */
    bool server_auth;      /* extKeyUsage serverAuth */
    const uint8_t *issuer; /* the issuer's Name DER; NULL: self-issued */
    size_t issuer_len;
    const uint8_t *spki; /* the subject's public key */
    size_t spki_len;
    uint8_t ski[KEY_ID_BYTES];
    const uint8_t *akid; /* the issuer's key identifier */
    size_t akid_len;
    const uint8_t *san; /* GeneralNames DER, or NULL */
    size_t san_len;
    int64_t not_before, not_after;
    uint8_t serial[SERIAL_BYTES];
};

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

/* "O=Hypha, CN=<cn>" */
static void put_name(struct hy_ca_der *d, const char *cn)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    put_rdn(d, oid_org, sizeof(oid_org), "Hypha");
    put_rdn(d, oid_cn, sizeof(oid_cn), cn);
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

static void put_extensions(struct hy_ca_der *d, const struct tbs *t)
{
    hy_ca_der_begin(d, HY_DER_CONTEXT_CON | 3);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);

    ext_begin(d, oid_basic_constraints, sizeof(oid_basic_constraints), true);
    hy_ca_der_begin(d, HY_DER_SEQUENCE); /* CA:false is the empty sequence */
    if (t->is_ca)
        hy_ca_der_put(d, HY_DER_BOOLEAN, "\xff", 1);
    hy_ca_der_end(d);
    ext_end(d);

    /* a named bit list drops trailing zero bits (X.690 11.2.2) */
    uint8_t ku[2] = {(uint8_t)__builtin_ctz(t->key_usage), t->key_usage};
    ext_begin(d, oid_key_usage, sizeof(oid_key_usage), true);
    hy_ca_der_put(d, HY_DER_BIT_STRING, ku, sizeof(ku));
    ext_end(d);

    if (t->server_auth) {
        ext_begin(d, oid_ext_key_usage, sizeof(oid_ext_key_usage), false);
        hy_ca_der_begin(d, HY_DER_SEQUENCE);
        hy_ca_der_raw(d, oid_server_auth, sizeof(oid_server_auth));
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
static int put_tbs(struct hy_ca_der *d, const struct tbs *t)
{
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    hy_ca_der_begin(d, HY_DER_CONTEXT_CON | 0);
    hy_ca_der_put(d, HY_DER_INTEGER, "\x02", 1); /* v3 */
    hy_ca_der_end(d);
    hy_ca_der_put(d, HY_DER_INTEGER, t->serial, sizeof(t->serial));
    hy_ca_der_raw(d, alg_ecdsa_sha256, sizeof(alg_ecdsa_sha256));
    if (t->issuer)
        hy_ca_der_raw(d, t->issuer, t->issuer_len);
    else
        put_name(d, t->cn);
    hy_ca_der_begin(d, HY_DER_SEQUENCE);
    put_time(d, t->not_before);
    put_time(d, t->not_after);
    hy_ca_der_end(d);
    put_name(d, t->cn);
    hy_ca_der_raw(d, t->spki, t->spki_len);
    put_extensions(d, t);
    hy_ca_der_end(d);
    return d->err;
}

/* Fills in t's serial and subject key (spki must hold 256 bytes), leaving
 * names, usages and validity to the caller. */
static int tbs_init(struct tbs *t, ecc_key *subject, uint8_t *spki, WC_RNG *rng)
{
    size_t n = 256;
    int rc = key_spki(subject, spki, &n);
    if (rc < 0)
        return rc;
    t->spki = spki;
    t->spki_len = n;
    if ((rc = key_id(spki, n, t->ski)) < 0)
        return rc;
    if ((rc = wc_RNG_GenerateBlock(rng, t->serial, sizeof(t->serial))) != 0)
        return wc_gen_err(rc);
    t->serial[0] = (uint8_t)((t->serial[0] & 0x7f) | 0x40);
    return 0;
}

/* Encodes t, has issuer_key sign it, and returns the certificate PEM. */
static int sign_tbs(const struct tbs *t, ecc_key *issuer_key, WC_RNG *rng, char **pem)
{
    struct hy_ca_der d = {0};
    int rc = put_tbs(&d, t);
    if (rc < 0)
        goto out_fini;
    size_t cap = d.out.len + SIG_ROOM;
    uint8_t *buf = malloc(cap);
    if (!buf) {
        rc = HY_ENOMEM;
        goto out_fini;
    }
    memcpy(buf, d.out.data, d.out.len);
    /* signs buf[0..len) and wraps it as Certificate { tbs, algorithm, signature } */
    rc = wc_SignCert_ex((int)d.out.len, CTC_SHA256wECDSA, buf, (word32)cap, ECC_TYPE, issuer_key,
                        rng);
    if (rc > 0)
        rc = der_to_pem(buf, (size_t)rc, CERT_TYPE, pem);
    else
        rc = wc_gen_err(rc);
    free(buf);
out_fini:
    hy_ca_der_fini(&d);
    return rc;
}

static int valid_cn(const char *cn)
{
    size_t n = cn ? strlen(cn) : 0;
    if (n == 0 || n > HY_CA_CN_MAX)
        return HY_EINVAL;
    for (size_t i = 0; i < n; i++)
        if (cn[i] < 0x20 || cn[i] > 0x7e)
            return HY_EINVAL;
    return 0;
}

/* Checks validity and computes [now - backdate, now + validity]. */
static int validity_window(int64_t now, int64_t validity, int64_t *nb, int64_t *na)
{
    if (validity <= 0 || now < BACKDATE_SECONDS || now > INT64_MAX - validity)
        return HY_EINVAL;
    *nb = now - BACKDATE_SECONDS;
    *na = now + validity;
    return 0;
}

int hy_ca_make_root(const char *cn, int64_t now, int64_t validity_seconds, struct hy_ca_pem *out)
{
    memset(out, 0, sizeof(*out));
    struct tbs t = {.cn = cn, .is_ca = true, .key_usage = KU_KEY_CERT_SIGN | KU_CRL_SIGN};
    int rc = valid_cn(cn);
    if (rc == 0)
        rc = validity_window(now, validity_seconds, &t.not_before, &t.not_after);
    if (rc < 0)
        return rc;

    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0)
        return wc_gen_err(rc);
    ecc_key key;
    if ((rc = key_generate(&key, &rng)) < 0)
        goto out_free_rng;
    uint8_t spki[256];
    if ((rc = tbs_init(&t, &key, spki, &rng)) < 0)
        goto out_free_key;
    t.akid = t.ski; /* self-signed: its own key signs */
    t.akid_len = sizeof(t.ski);
    rc = sign_tbs(&t, &key, &rng, &out->cert);
    if (rc == 0)
        rc = key_to_pem(&key, &out->key);
    if (rc < 0)
        hy_ca_pem_fini(out);
out_free_key:
    wc_ecc_free(&key);
out_free_rng:
    wc_FreeRng(&rng);
    return rc;
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

/* The CA must say it is one and may sign certificates. *why is set when it
 * does not. */
static int check_ca_cert(const uint8_t *der, size_t len, const char **why)
{
    DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    int rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL);
    if (rc != 0) {
        *why = "the CA certificate does not parse";
        rc = wc_parse_err(rc);
    } else if (!dc.isCA) {
        *why = "the CA certificate is not a CA (basicConstraints CA:true is missing)";
        rc = HY_EVERIFY;
    } else if (dc.extKeyUsageSet && !(dc.extKeyUsage & KEYUSE_KEY_CERT_SIGN)) {
        *why = "the CA certificate may not sign certificates (keyUsage lacks keyCertSign)";
        rc = HY_EVERIFY;
    }
    wc_FreeDecodedCert(&dc);
    return rc;
}

int hy_ca_sign_server(const struct hy_ca_pem *ca, const struct hy_ca_server_req *req,
                      struct hy_ca_pem *out)
{
    memset(out, 0, sizeof(*out));
    if (!ca || !ca->cert || !ca->key || !req || req->ndns + req->nips == 0 ||
        (req->ndns && !req->dns) || (req->nips && !req->ips))
        return HY_EINVAL;
    struct tbs t = {
        .cn = req->cn     ? req->cn
              : req->ndns ? req->dns[0]
                          : req->ips[0],
        .key_usage = KU_DIGITAL_SIGNATURE,
        .server_auth = true,
    };
    int rc = valid_cn(t.cn);
    if (rc == 0)
        rc = validity_window(req->now, req->validity_seconds, &t.not_before, &t.not_after);
    if (rc < 0)
        return rc;
    struct hy_ca_der san = {0};
    if ((rc = san_encode(req, &san)) < 0)
        goto out_free_san;
    t.san = (const uint8_t *)san.out.data;
    t.san_len = san.out.len;

    uint8_t *ca_der;
    size_t ca_len;
    const char *why;
    struct cert_fields caf;
    if ((rc = cert_der(ca->cert, &ca_der, &ca_len)) < 0)
        goto out_free_san;
    if ((rc = check_ca_cert(ca_der, ca_len, &why)) < 0 ||
        (rc = cert_fields(ca_der, ca_len, &caf)) < 0) {
        rc = rc == HY_ENOMEM ? rc : HY_EINVAL;
        goto out_free_ca_der;
    }
    t.issuer = caf.subject.start;
    t.issuer_len = caf.subject.size;

    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0) {
        rc = wc_gen_err(rc);
        goto out_free_ca_der;
    }
    ecc_key ca_key, key;
    if ((rc = key_from_pem(ca->key, &ca_key, &rng)) < 0)
        goto out_free_rng;
    if ((rc = key_matches(ca_der, ca_len, &ca_key)) < 0) {
        rc = rc == HY_ENOMEM ? rc : HY_EINVAL; /* a CA whose key is not its own cannot sign */
        goto out_free_ca_key;
    }
    /* point at the CA's own identifier, whatever method made it, so
     * verifiers that match AKID to SKID find it */
    uint8_t ca_id[KEY_ID_BYTES];
    if (caf.ski) {
        t.akid = caf.ski;
        t.akid_len = caf.ski_len;
    } else if ((rc = key_id(caf.spki.start, caf.spki.size, ca_id)) == 0) {
        t.akid = ca_id;
        t.akid_len = sizeof(ca_id);
    } else {
        goto out_free_ca_key;
    }
    if ((rc = key_generate(&key, &rng)) < 0)
        goto out_free_ca_key;
    uint8_t spki[256];
    if ((rc = tbs_init(&t, &key, spki, &rng)) == 0)
        rc = sign_tbs(&t, &ca_key, &rng, &out->cert);
    if (rc == 0)
        rc = key_to_pem(&key, &out->key);
    if (rc < 0)
        hy_ca_pem_fini(out);
    wc_ecc_free(&key);
out_free_ca_key:
    wc_ecc_free(&ca_key);
out_free_rng:
    wc_FreeRng(&rng);
out_free_ca_der:
    free(ca_der);
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

/* ----- reading certificates ----- */

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

int hy_ca_inspect(const char *cert_pem, struct hy_ca_info *out)
{
    memset(out, 0, sizeof(*out));
    uint8_t *der;
    size_t len;
    int rc = cert_der(cert_pem, &der, &len);
    if (rc < 0)
        return rc;
    DecodedCert dc;
    wc_InitDecodedCert(&dc, der, (word32)len, NULL);
    /* NO_VERIFY: an expired certificate is still worth reading */
    if ((rc = wc_ParseCert(&dc, CERT_TYPE, NO_VERIFY, NULL)) != 0) {
        rc = wc_parse_err(rc);
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
        rc = wc_gen_err(rc);
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
    int rc = cert_der(ca_pem, &ca_der, &ca_len);
    if (rc < 0) {
        *why = "the CA is not a PEM certificate";
        return rc;
    }
    if ((rc = cert_der(cert_pem, &der, &len)) < 0) {
        *why = "the certificate is not a PEM certificate";
        goto out_free_ca_der;
    }
    if ((rc = check_ca_cert(ca_der, ca_len, why)) < 0)
        goto out_free_der;
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
    int rc = cert_der(cert_pem, &der, &len);
    if (rc < 0)
        return rc;
    WC_RNG rng;
    if ((rc = wc_InitRng(&rng)) != 0) {
        rc = wc_gen_err(rc);
        goto out_free_der;
    }
    ecc_key key;
    if ((rc = key_from_pem(key_pem, &key, &rng)) < 0)
        goto out_free_rng;
    rc = key_matches(der, len, &key);
    wc_ecc_free(&key);
out_free_rng:
    wc_FreeRng(&rng);
out_free_der:
    free(der);
    return rc;
}
