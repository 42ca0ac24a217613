/* Certificates for the mesh CAs and control-plane TLS: ECDSA P-256 keys,
 * X.509 v3 generation, inspection, chain and key checks. wolfSSL stays inside
 * ca.c; callers see PEM text and HY_E* codes only. */
#ifndef HY_CA_H
#define HY_CA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HY_CA_CN_MAX 64          /* printable ASCII bytes in a subject CN (RFC 5280) */
#define HY_CA_FINGERPRINT_LEN 64 /* SHA-256 as lowercase hex, without separators */

/* A certificate and its private key, both PEM, NUL-terminated. */
struct hy_ca_pem {
    char *cert; /* owned: one "-----BEGIN CERTIFICATE-----" block */
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

/* What hy_ca_inspect reads from a certificate. */
struct hy_ca_info {
    char *subject_cn;   /* owned; "" when the subject has no CN */
    char *issuer_cn;    /* owned; "" when the issuer has no CN */
    int64_t not_before; /* Unix seconds */
    int64_t not_after;  /* Unix seconds */
    bool is_ca;         /* basicConstraints CA:true */
    char **sans;        /* owned array of owned strings: "DNS:localhost", "IP:::1", "URI:..." */
    size_t nsans;
    char fingerprint[HY_CA_FINGERPRINT_LEN + 1]; /* SHA-256 of the DER, lowercase hex */
};

/* Reads the first certificate of cert_pem. On success fills *out (caller
 * frees with hy_ca_info_fini) and returns 0; on failure returns HY_EINVAL
 * (not a PEM certificate, or one wolfSSL cannot parse) or HY_ENOMEM and
 * leaves *out zeroed. */
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

/* Checks that key_pem (PKCS#8 "PRIVATE KEY" or SEC1 "EC PRIVATE KEY", P-256,
 * unencrypted) is the private key of the first certificate in cert_pem. The
 * public key is recomputed from the private scalar, so a key file whose
 * embedded public key was altered does not match.
 * Returns 0 on a match, HY_EVERIFY when they are different keys, HY_EINVAL
 * when either PEM does not parse or the key is not a valid P-256 key,
 * HY_ENOMEM or HY_ECRYPTO. */
int hy_ca_check_key(const char *cert_pem, const char *key_pem);

#endif
