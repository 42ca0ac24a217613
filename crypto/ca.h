/* Certificates for the mesh CAs and control-plane TLS: ECDSA P-256 keys,
 * X.509 v3 generation, certificate requests, zone intermediate CAs and
 * sidecar leaves issued for them, inspection, chain and key checks. wolfSSL
 * stays inside common/ca*.c; callers see PEM text and HY_E* codes only. */
#ifndef HY_CA_H
#define HY_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HY_CA_CN_MAX 64          /* printable ASCII bytes in a subject CN (RFC 5280) */
#define HY_CA_FINGERPRINT_LEN 64 /* SHA-256 as lowercase hex, without separators */
#define HY_CA_URI_MAX 2048       /* bytes in a URI SAN (SPIFFE's limit for an ID) */
#define HY_CA_CHAIN_MAX 8        /* certificates in a chain */
#define HY_CA_BUNDLE_MAX 64      /* certificates in a trust bundle: roots and MeshTrust CAs */
/* Every certificate we issue starts this long before it is signed, for
 * peers whose clocks run a little behind; its life starts at signing. */
#define HY_CA_BACKDATE_SECONDS 60

/* A certificate (or, from hy_ca_make_csr, a certificate request) and its
 * private key, both PEM, NUL-terminated. */
struct hy_ca_pem {
    char *cert; /* owned: one "-----BEGIN CERTIFICATE-----" (or "CERTIFICATE REQUEST") block */
    char *key;  /* owned: PKCS#8 "-----BEGIN PRIVATE KEY-----" (unencrypted EC P-256) */
};

/* Frees both strings (the key is wiped first) and zeroes the struct; safe on a
 * zeroed struct. */
void hy_ca_pem_fini(struct hy_ca_pem *p);

/* Makes a mesh root CA: a new ECDSA P-256 key and a self-signed X.509 v3
 * certificate with subject and issuer "O=Hypha, CN=<cn>", a random 16-byte
 * serial, basicConstraints CA:true (critical), keyUsage keyCertSign+cRLSign
 * (critical), subject and authority key identifiers (RFC 7093 method 1:
 * SHA-256 of the public key, cut to 160 bits), ecdsa-with-SHA256,
 * valid from now - 60 s to now + validity_seconds (now in Unix seconds,
 * usually time(NULL)).
 * On success fills *out (caller frees with hy_ca_pem_fini) and returns 0. On
 * failure returns HY_EINVAL (cn empty, longer than HY_CA_CN_MAX or not
 * printable ASCII; validity <= 0 or ending past year 9999), HY_ENOMEM or
 * HY_ECRYPTO, and leaves *out zeroed. */
int hy_ca_make_root(const char *cn, int64_t now, int64_t validity_seconds, struct hy_ca_pem *out);

/* What a server leaf certificate is for. Everything is borrowed for the call. */
struct hy_ca_server_req {
    const char *cn;         /* subject CN; NULL: the first DNS name, else the first IP */
    const char *const *dns; /* DNS SANs, e.g. "localhost", "*.mesh.local" */
    size_t ndns;
    const char *const *ips; /* IP SANs as text, IPv4 or IPv6: "127.0.0.1", "::1" */
    size_t nips;
    int64_t now;              /* Unix seconds; not-before is now - 60 s */
    int64_t validity_seconds; /* not-after is now + validity_seconds */
};

/* Issues a server certificate signed by ca (cert and key PEM, e.g. from
 * hy_ca_make_root, or any CA with basicConstraints CA:true): a new P-256 key,
 * subject "O=Hypha, CN=<cn>", the issuer copied byte for byte from the CA's
 * subject, basicConstraints CA:false (critical), keyUsage digitalSignature
 * (critical), extKeyUsage serverAuth, the SANs of req, a subject key
 * identifier and the CA's own as authority key identifier,
 * ecdsa-with-SHA256. At least one SAN is required.
 * On success fills *out (caller frees with hy_ca_pem_fini) and returns 0. On
 * failure returns HY_EINVAL (bad request, a DNS name that is not a hostname
 * or "*." wildcard, an IP that does not parse, a CA certificate that does not
 * parse, is not a CA, or whose key is not ca->key), HY_ENOMEM or HY_ECRYPTO,
 * and leaves *out zeroed. */
int hy_ca_sign_server(const struct hy_ca_pem *ca, const struct hy_ca_server_req *req,
                      struct hy_ca_pem *out);

/* For control-plane TLS at first start: makes a root CA named ca_cn (as
 * hy_ca_make_root, with req's now and validity) and a server certificate
 * signed by it (as hy_ca_sign_server). Clients trust ca->cert.
 * On success fills *ca and *leaf (caller frees both with hy_ca_pem_fini) and
 * returns 0; on failure returns the code of the failing step and leaves both
 * zeroed. */
int hy_ca_make_self_signed_server(const char *ca_cn, const struct hy_ca_server_req *req,
                                  struct hy_ca_pem *ca, struct hy_ca_pem *leaf);

/* Makes a key pair and a request for a certificate, to be signed elsewhere
 * (hy_ca_sign_intermediate, hy_ca_sign_leaf) without the key ever leaving
 * the caller: a new ECDSA P-256 key and a PKCS#10 CertificationRequest with
 * subject "O=Hypha, CN=<cn>", that key, no attributes, signed with the key
 * (ecdsa-with-SHA256).
 * On success fills *out (out->cert: "-----BEGIN CERTIFICATE REQUEST-----",
 * out->key: PKCS#8; caller frees with hy_ca_pem_fini) and returns 0. On
 * failure returns HY_EINVAL (cn empty, longer than HY_CA_CN_MAX or not
 * printable ASCII), HY_ENOMEM or HY_ECRYPTO, and leaves *out zeroed. */
int hy_ca_make_csr(const char *cn, struct hy_ca_pem *out);

/* Issues a zone's intermediate CA for a request (from hy_ca_make_csr or any
 * P-256 PKCS#10 request signed with ecdsa-with-SHA256), signed by root (cert
 * and key PEM, e.g. from hy_ca_make_root; any CA that may sign CAs):
 * the request's own signature is checked first. Only the request's key and
 * CN are used: the subject is "O=Hypha, CN=<cn_override, else the request's
 * CN>", whatever else the request names or asks for. The issuer is copied
 * byte for byte from root's subject; basicConstraints CA:true pathLen 0
 * (critical: it signs leaves, never CAs), keyUsage keyCertSign+cRLSign
 * (critical), subject key identifier and root's as authority key identifier,
 * a random 16-byte serial, ecdsa-with-SHA256. Valid from now - 60 s to
 * now + validity_seconds, cut short at root's own notAfter.
 * On success sets *cert_pem (one "CERTIFICATE" block, caller frees) and
 * returns 0. On failure sets *cert_pem to NULL and returns HY_EVERIFY (the
 * request's signature does not verify), HY_EINVAL (a request that does not
 * parse or whose key is not P-256; no usable CN: cn_override and the
 * request's CN both missing or not valid as in hy_ca_make_root; validity
 * <= 0 or past year 9999; a root certificate that does not parse, is not a
 * CA, has pathLen 0, has expired, or whose key is not root->key), HY_ENOMEM
 * or HY_ECRYPTO. */
int hy_ca_sign_intermediate(const struct hy_ca_pem *root, const char *csr_pem, int64_t now,
                            int64_t validity_seconds, const char *cn_override, char **cert_pem);

/* Issues a workload's leaf certificate for a request (as for
 * hy_ca_sign_intermediate, the request's signature checked first and only
 * its key and CN used), signed by ca: a root or an intermediate (cert and
 * key PEM; a chain root -> intermediate -> leaf verifies with
 * hy_ca_verify_chain). The identity is the signer's to decide: the SANs are
 * exactly uris[0..nuris) as URIs (e.g. "spiffe://default/web"; up to
 * HY_CA_URI_MAX bytes of printable ASCII, with a scheme), the request's own
 * SANs are ignored. Subject "O=Hypha, CN=<last path segment of uris[0]>",
 * or the request's CN when there is no URI or its path has no last segment
 * that fits a CN. basicConstraints CA:false (critical), keyUsage
 * digitalSignature (critical), extKeyUsage serverAuth+clientAuth, key
 * identifiers, a random serial, ecdsa-with-SHA256; valid from now - 60 s to
 * now + validity_seconds, cut short at ca's own notAfter.
 * On success sets *cert_pem (caller frees) and returns 0. On failure sets
 * *cert_pem to NULL and returns HY_EVERIFY (the request's signature),
 * HY_EINVAL (as hy_ca_sign_intermediate, a URI that is not one, no usable
 * CN, a CA that has expired or whose key is not ca->key), HY_ENOMEM or
 * HY_ECRYPTO. */
int hy_ca_sign_leaf(const struct hy_ca_pem *ca, const char *csr_pem, int64_t now,
                    int64_t validity_seconds, const char *const *uris, size_t nuris,
                    char **cert_pem);

/* What hy_ca_inspect reads from a certificate or a certificate request. */
struct hy_ca_info {
    char *subject_cn;   /* owned; "" when the subject has no CN */
    char *issuer_cn;    /* owned; "" when the issuer has no CN */
    int64_t not_before; /* Unix seconds */
    int64_t not_after;  /* Unix seconds */
    bool is_ca;         /* basicConstraints CA:true */
    char **sans;        /* owned array of owned strings: "DNS:localhost", "IP:::1", "URI:..." */
    size_t nsans;
    char fingerprint[HY_CA_FINGERPRINT_LEN + 1]; /* SHA-256 of the DER, lowercase hex */
    bool is_request; /* a PKCS#10 request: only subject_cn and fingerprint are set */
};

/* Reads the first certificate of cert_pem or, when it holds none, its first
 * certificate request (its subject CN, only when a valid CN; its signature
 * is not checked). On success fills *out (caller frees with
 * hy_ca_info_fini) and returns 0; on failure returns HY_EINVAL (neither a
 * PEM certificate nor a request, or one that does not parse) or HY_ENOMEM
 * and leaves *out zeroed. */
int hy_ca_inspect(const char *cert_pem, struct hy_ca_info *out);

/* Frees what hy_ca_inspect filled and zeroes *info; safe on a zeroed struct. */
void hy_ca_info_fini(struct hy_ca_info *info);

/* Checks that the first certificate of cert_pem was signed by the CA in
 * ca_pem and that both are within their validity now (the system clock). A
 * self-signed root verifies against itself. The CA must have
 * basicConstraints CA:true.
 * Returns 0 when it verifies; HY_EVERIFY when it does not, with *why (if why
 * is not NULL) set to a static sentence such as "certificate has expired" or
 * "certificate was not issued by this CA"; HY_EINVAL when either PEM does not
 * parse (also with *why); HY_ENOMEM or HY_ECRYPTO. */
int hy_ca_verify(const char *cert_pem, const char *ca_pem, const char **why);

/* Checks the first certificate of leaf_pem through a chain: it must have
 * been issued, directly or through CA certificates in chain_pem (the
 * intermediates, in any order; NULL or "" for none), by a root in roots_pem
 * (one or more self-issued CA certificates: during a root rotation the trust
 * bundle holds the old root and the new). Every certificate on the path must
 * be within its validity now (the system clock), every issuer a CA that may
 * sign certificates, pathLen constraints are honoured; certificates in the
 * bundle that cannot anchor anything (expired, not CAs, not self-issued) are
 * passed over. At most HY_CA_CHAIN_MAX certificates in chain_pem and
 * HY_CA_BUNDLE_MAX in roots_pem.
 * Returns 0 when it verifies; HY_EVERIFY when it does not, with *why (if why
 * is not NULL) set to a static sentence ("certificate has expired", "an
 * intermediate certificate was not issued by a root in the bundle", ...);
 * HY_EINVAL when a PEM does not parse or roots_pem holds no certificate
 * (also with *why); HY_ETOOBIG past HY_CA_CHAIN_MAX (chain) or
 * HY_CA_BUNDLE_MAX (roots); HY_ENOMEM. */
int hy_ca_verify_chain(const char *leaf_pem, const char *chain_pem, const char *roots_pem,
                       const char **why);

/* One CA certificate of a PEM bundle, as hy_ca_bundle_each hands it over.
 * Valid only during the callback. */
struct hy_ca_bundle_cert {
    const char *pem; /* its block, "-----BEGIN" to the END line, inside the caller's text */
    size_t len;      /* bytes of the block (pem is not NUL-terminated there) */
    char fingerprint[HY_CA_FINGERPRINT_LEN + 1]; /* SHA-256 of the DER, lowercase hex */
    int64_t not_before, not_after;               /* Unix seconds */
};

/* Walks a trust bundle a user wrote (a MeshTrust's pem.value): every PEM
 * block must be a "CERTIFICATE" that parses as X.509 and is a CA that may
 * sign certificates (basicConstraints CA:true; keyUsage, when present, with
 * keyCertSign); text between blocks is ignored, any other block (a private
 * key, a request) is refused; at most HY_CA_BUNDLE_MAX certificates. Times
 * are not judged here: the callback gets them. fn (NULL: none) is called
 * for each certificate in order; a negative return stops the walk.
 * Returns 0 with *count (may be NULL) set to the number of certificates;
 * HY_EINVAL (no certificate, a block not closed, another kind of block, one
 * that does not decode or parse, not a CA) or HY_ETOOBIG with *index set to
 * the 0-based certificate it stopped at and *why to a static sentence;
 * HY_ENOMEM; or fn's code (*index set too). index and why may be NULL. */
int hy_ca_bundle_each(const char *pem, int (*fn)(void *ud, const struct hy_ca_bundle_cert *c),
                      void *ud, size_t *count, size_t *index, const char **why);

/* Checks that key_pem (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY", P-256,
 * unencrypted) is the private key of the first certificate in cert_pem. The
 * public key is recomputed from the private scalar, so a key file whose
 * embedded public key was altered does not match.
 * Returns 0 on a match, HY_EVERIFY when they are different keys, HY_EINVAL
 * when either PEM does not parse or the key is not a valid P-256 key,
 * HY_ENOMEM or HY_ECRYPTO. */
int hy_ca_check_key(const char *cert_pem, const char *key_pem);

#endif
