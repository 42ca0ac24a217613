/* Internals shared by the CA module's files: ca.c (keys, PEM, building and
 * signing certificates), ca_csr.c (requests and what is issued for them) and
 * ca_verify.c (reading and checking). wolfSSL types appear here and in no
 * public header; nothing outside common/ca*.c includes this. */
#ifndef HY_CA_INT_H
#define HY_CA_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>

#include "ca.h"
#include "ca_der.h"
#include "error.h"

#define HY_CA_KEY_ID_BYTES 20          /* subject/authority key identifiers (RFC 7093 method 1) */
#define HY_CA_MAX_PEM_BYTES (1u << 20) /* no certificate, request or key of ours comes close */
#define HY_CA_SPKI_MAX 256             /* room for a P-256 SubjectPublicKeyInfo */

/* KeyUsage bits as they sit in the first byte of the BIT STRING */
#define HY_CA_KU_DIGITAL_SIGNATURE 0x80
#define HY_CA_KU_KEY_CERT_SIGN 0x04
#define HY_CA_KU_CRL_SIGN 0x02

/* extKeyUsage purposes we write */
#define HY_CA_EKU_SERVER_AUTH 0x01
#define HY_CA_EKU_CLIENT_AUTH 0x02

/* AlgorithmIdentifier ecdsa-with-SHA256, no parameters (RFC 5758), and the
 * commonName attribute type, DER with header. */
extern const uint8_t hy_ca_alg_ecdsa_sha256[12];
extern const uint8_t hy_ca_oid_cn[5];

/* A wolfCrypt failure on something we generate: only allocation is worth
 * telling apart. */
static inline int hy_ca_gen_err(int rc)
{
    return rc == MEMORY_E ? HY_ENOMEM : HY_ECRYPTO;
}

/* A wolfCrypt failure on input we were handed: it does not parse. */
static inline int hy_ca_parse_err(int rc)
{
    return rc == MEMORY_E ? HY_ENOMEM : HY_EINVAL;
}

/* Wipes p[0..n) and frees p; p may be NULL. Cannot fail. */
void hy_ca_wipe_free(void *p, size_t n);

/* ----- PEM, DER and keys (ca.c) ----- */

/* PEM of der[0..len) as a wolfSSL type (CERT_TYPE, CERTREQ_TYPE,
 * PKCS8_PRIVATEKEY_TYPE). On success *out is owned by the caller; on failure
 * HY_ENOMEM or HY_ECRYPTO and *out is untouched. */
int hy_ca_der_to_pem(const uint8_t *der, size_t len, int type, char **out);

/* DER of the first PEM block of the given type (CERT_TYPE: "CERTIFICATE",
 * CERTREQ_TYPE: "CERTIFICATE REQUEST") in pem. On success *der is owned by
 * the caller; on failure HY_EINVAL (NULL, empty, too long, no such block) or
 * HY_ENOMEM and *der is untouched. */
int hy_ca_pem_to_der(const char *pem, int type, uint8_t **der, size_t *len);

/* Writes key as unencrypted PKCS#8 PEM; *out owned by the caller. */
int hy_ca_key_to_pem(ecc_key *key, char **out);

/* Reads a P-256 private key (PKCS#8 or SEC1 PEM) into key, which is
 * initialized here and must be freed by the caller (wc_ecc_free) on success
 * only. The public point is recomputed from the scalar and checked. HY_EINVAL
 * when it does not parse or is not P-256. */
int hy_ca_key_from_pem(const char *pem, ecc_key *key, WC_RNG *rng);

/* A new P-256 key; on success the caller frees it with wc_ecc_free. */
int hy_ca_key_generate(ecc_key *key, WC_RNG *rng);

/* SubjectPublicKeyInfo DER of key into out[0..*len); *len is the room on
 * entry and the size on return. */
int hy_ca_key_spki(ecc_key *key, uint8_t *out, size_t *len);

/* RFC 7093 method 1 key identifier of a SubjectPublicKeyInfo. */
int hy_ca_key_id(const uint8_t *spki, size_t n, uint8_t id[HY_CA_KEY_ID_BYTES]);

static inline bool hy_ca_is_oid(const struct hy_ca_der_tlv *v, const uint8_t *oid, size_t n)
{
    return v->tag == HY_DER_OID && v->size == n && memcmp(v->start, oid, n) == 0;
}

/* What the CA module needs from a certificate, pointing into its DER. */
struct hy_ca_cert_fields {
    struct hy_ca_der_tlv issuer, subject, spki;
    const uint8_t *ski; /* subjectKeyIdentifier, NULL when absent */
    size_t ski_len;
};

/* Walks Certificate -> TBSCertificate to the names, the public key and the
 * subjectKeyIdentifier. HY_EINVAL when the DER is not shaped like one. */
int hy_ca_cert_fields(const uint8_t *der, size_t len, struct hy_ca_cert_fields *f);

/* 0 when key is the key of the certificate der, HY_EVERIFY when not,
 * HY_EINVAL when der does not parse. */
int hy_ca_key_matches(const uint8_t *der, size_t len, ecc_key *key);

/* Checks a printable ASCII CN of 1..HY_CA_CN_MAX bytes: 0 or HY_EINVAL. */
int hy_ca_valid_cn(const char *cn);

/* Checks validity and computes [now - backdate, now + validity]: 0 or
 * HY_EINVAL. */
int hy_ca_validity_window(int64_t now, int64_t validity, int64_t *nb, int64_t *na);

/* ----- building certificates (ca.c) ----- */

#define HY_CA_SERIAL_BYTES 16 /* positive, no leading zero byte: 126 random bits */

/* What goes into one to-be-signed certificate. Pointers are borrowed. */
struct hy_ca_tbs {
    const char *cn; /* subject "O=Hypha, CN=<cn>" */
    bool is_ca;
    bool path_len_zero;    /* with is_ca: pathLenConstraint 0 */
    uint8_t key_usage;     /* HY_CA_KU_* bits */
    uint8_t ext_key_usage; /* HY_CA_EKU_* bits; 0: no extension */
    const uint8_t *issuer; /* the issuer's Name DER; NULL: self-issued */
    size_t issuer_len;
    const uint8_t *spki; /* the subject's public key */
    size_t spki_len;
    uint8_t ski[HY_CA_KEY_ID_BYTES];
    const uint8_t *akid; /* the issuer's key identifier */
    size_t akid_len;
    const uint8_t *san; /* GeneralNames DER, or NULL */
    size_t san_len;
    int64_t not_before, not_after;
    uint8_t serial[HY_CA_SERIAL_BYTES];
};

/* Writes the Name "O=Hypha, CN=<cn>". Errors are the writer's (sticky). */
void hy_ca_put_name(struct hy_ca_der *d, const char *cn);

/* Fills in t's serial and subject key (spki must hold HY_CA_SPKI_MAX
 * bytes and outlive t), leaving names, usages and validity to the caller. */
int hy_ca_tbs_init(struct hy_ca_tbs *t, ecc_key *subject, uint8_t *spki, WC_RNG *rng);

/* Has key sign tbs[0..len) (a TBSCertificate or CertificationRequestInfo)
 * with ecdsa-with-SHA256 and returns SEQUENCE { tbs, algorithm, signature }
 * as PEM of the wolfSSL type (CERT_TYPE, CERTREQ_TYPE), owned by the caller.
 * HY_ENOMEM or HY_ECRYPTO on failure. */
int hy_ca_sign_der(const uint8_t *tbs, size_t len, int type, ecc_key *key, WC_RNG *rng, char **pem);

/* Encodes t, has issuer_key sign it, and returns the certificate PEM (owned
 * by the caller). HY_EINVAL when t does not encode (a time out of range). */
int hy_ca_sign_tbs(const struct hy_ca_tbs *t, ecc_key *issuer_key, WC_RNG *rng, char **pem);

/* An issuing CA, opened from its PEM: parsed, checked to be a CA that may
 * sign certificates, its key loaded and matched against the certificate. */
struct hy_ca_signer {
    uint8_t *der; /* owned: the CA certificate */
    size_t len;
    struct hy_ca_cert_fields f; /* points into der */
    ecc_key key;
    int64_t not_after;              /* the CA's own, Unix seconds */
    bool path_len_zero;             /* pathLenConstraint 0: may sign end entities only */
    uint8_t id[HY_CA_KEY_ID_BYTES]; /* its key identifier when it has no SKID */
};

/* Opens ca for signing. On success the caller closes s with
 * hy_ca_signer_close; on failure s needs no closing and the result is
 * HY_EINVAL (NULL, a certificate that does not parse, is not a CA, may not
 * sign certificates, or a key that does not parse or is not the
 * certificate's), HY_ENOMEM or HY_ECRYPTO. */
int hy_ca_signer_open(struct hy_ca_signer *s, const struct hy_ca_pem *ca, WC_RNG *rng);

/* Frees what hy_ca_signer_open took; cannot fail. */
void hy_ca_signer_close(struct hy_ca_signer *s);

/* Sets t's issuer and authority key identifier to s's. The pointers stay
 * valid while s is open. Cannot fail. */
void hy_ca_signer_apply(const struct hy_ca_signer *s, struct hy_ca_tbs *t);

/* ----- requests (ca_csr.c) ----- */

/* What the CA module reads from a CertificationRequest (RFC 2986), pointing
 * into its DER. The signature is not checked here. */
struct hy_ca_csr_fields {
    struct hy_ca_der_tlv info, spki;
    const uint8_t *sig; /* the ECDSA-Sig-Value DER inside the BIT STRING */
    size_t sig_len;
    char cn[HY_CA_CN_MAX + 1]; /* the subject's one CN if it is a valid CN, else "" */
};

/* Walks a CertificationRequest signed with ecdsa-with-SHA256. HY_EINVAL when
 * the DER is not shaped like one or uses another signature algorithm. */
int hy_ca_csr_fields(const uint8_t *der, size_t len, struct hy_ca_csr_fields *f);

/* ----- checking (ca_verify.c) ----- */

/* What hy_ca_check_ca learns of a CA certificate. */
struct hy_ca_ca_info {
    int64_t not_before, not_after; /* Unix seconds */
    bool path_len_zero;            /* pathLenConstraint 0: may sign end entities only */
};

/* The CA must say it is one and may sign certificates: 0, or HY_EVERIFY
 * (not a CA, or keyUsage without keyCertSign) / HY_EINVAL (does not parse)
 * / HY_ENOMEM with *why set to a static sentence. info may be NULL. */
int hy_ca_check_ca(const uint8_t *der, size_t len, struct hy_ca_ca_info *info, const char **why);

#endif
