/* Signed tokens (JWT, RFC 7519): zone tokens that global issues and zones
 * present on KDS, and later dataplane tokens that zones issue to sidecars.
 * Signed with Ed25519 ("EdDSA", RFC 8037) through wolfSSL, which stays inside
 * token.c. The header and claims are JSON written and read by the codec
 * (proto/token.proto). */
#ifndef HY_TOKEN_H
#define HY_TOKEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HY_TOKEN_MAX_LEN 8192 /* bytes in a token; longer ones are malformed */
#define HY_TOKEN_KID_LEN 16   /* hex chars: the first 8 bytes of SHA-256(public key) */
#define HY_TOKEN_JTI_LEN 32   /* hex chars: 128 random bits */
#define HY_TOKEN_ALG "EdDSA"  /* the only "alg" we sign with or accept */

/* ----- keys ----- */

/* An Ed25519 key: private (signs and verifies) or public only (verifies). */
struct hy_token_key;

/* Makes a new private key. Returns it (caller frees with
 * hy_token_key_free), or NULL when the RNG or allocation fails. */
struct hy_token_key *hy_token_key_generate(void);

/* Frees key (its private part is wiped); NULL does nothing. */
void hy_token_key_free(struct hy_token_key *key);

/* The key's id: HY_TOKEN_KID_LEN lowercase hex chars of SHA-256 over the raw
 * 32-byte public key. Valid as long as key. Cannot fail. */
const char *hy_token_key_kid(const struct hy_token_key *key);

/* True when key holds a private part and can sign. */
bool hy_token_key_can_sign(const struct hy_token_key *key);

/* Writes key as PEM: unencrypted PKCS#8 "PRIVATE KEY" (RFC 8410, the format
 * `openssl genpkey -algorithm ed25519` writes), or with public_only (or a
 * public-only key) SubjectPublicKeyInfo "PUBLIC KEY". *pem is owned by the
 * caller, who should wipe a private one (explicit_bzero) before freeing.
 * Returns 0, HY_ENOMEM or HY_ECRYPTO. */
int hy_token_key_to_pem(const struct hy_token_key *key, bool public_only, char **pem);

/* Reads a key from PEM: "PRIVATE KEY" (PKCS#8 Ed25519) or "PUBLIC KEY". On
 * success *out is owned by the caller (hy_token_key_free). Returns HY_EINVAL
 * when pem is not an Ed25519 key in one of those forms, or HY_ENOMEM. */
int hy_token_key_from_pem(const char *pem, size_t len, struct hy_token_key **out);

/* Writes the private key to path as PKCS#8 PEM with mode 0600, replacing any
 * file there atomically (a temporary file in the same directory, fsync,
 * rename, fsync of the directory). Returns 0, -errno from the file system,
 * HY_EINVAL for a public-only key, HY_ENOMEM or HY_ECRYPTO. */
int hy_token_key_save(const struct hy_token_key *key, const char *path);

/* Reads a key saved by hy_token_key_save (or any PEM hy_token_key_from_pem
 * accepts, at most 64 KiB). On success *out is owned by the caller. Returns
 * -errno (-ENOENT when there is none yet), HY_EINVAL, HY_ETOOBIG or
 * HY_ENOMEM. The file's mode is not checked. */
int hy_token_key_load(const char *path, struct hy_token_key **out);

/* ----- claims ----- */

enum hy_token_kind {
    HY_TOKEN_KIND_ZONE,      /* "zone": a zone CP presents it to global on KDS */
    HY_TOKEN_KIND_DATAPLANE, /* "dataplane": a sidecar presents it to its zone CP */
    HY_TOKEN_KIND_INGRESS,   /* "zone-ingress": a zone ingress presents it to its zone CP */
};

struct hy_token_tag {
    char *key;
    char *value;
};

/* What a token says. hy_token_sign only reads it (the caller owns the
 * strings); hy_token_verify fills one whose strings and arrays it owns
 * (freed with hy_token_claims_fini). Absent strings are NULL. */
struct hy_token_claims {
    enum hy_token_kind kind;
    char *jti; /* unique id, HY_TOKEN_JTI_LEN hex chars from hy_token_jti_new: what revocation names
                */
    int64_t iat, nbf, exp; /* issued at, not before, expires at: Unix seconds */
    char *zone; /* zone: the zone admitted; dataplane, zone-ingress: the zone that accepts it */
    char *mesh; /* dataplane: the sidecar's mesh */
    char *name; /* dataplane: the Dataplane's name; zone-ingress: the ZoneIngress's */
    struct hy_token_tag *tags; /* dataplane: tags the sidecar may claim */
    size_t ntags;
};

/* Frees what hy_token_verify filled and zeroes *c; safe on a zeroed struct. */
void hy_token_claims_fini(struct hy_token_claims *c);

/* The claim value of kind ("zone", "dataplane", "zone-ingress"). Static;
 * never NULL. */
const char *hy_token_kind_str(enum hy_token_kind kind);

/* ----- signing ----- */

/* Writes a new random jti (HY_TOKEN_JTI_LEN hex chars and a NUL). Returns 0
 * or HY_ECRYPTO when the RNG fails. */
int hy_token_jti_new(char jti[HY_TOKEN_JTI_LEN + 1]);

/* Signs claims with key: header {"alg":"EdDSA","typ":"JWT","kid":<kid>},
 * base64url without padding, "header.claims.signature". Claims must have a
 * jti, exp > nbf, and what their kind needs (zone: zone; dataplane: mesh and
 * name; zone-ingress: zone and name). On success *token is a NUL-terminated string owned by the
 * caller. Returns HY_EINVAL (missing claims, public-only key), HY_ETOOBIG (over HY_TOKEN_MAX_LEN),
 * HY_ENOMEM or HY_ECRYPTO. */
int hy_token_sign(const struct hy_token_key *key, const struct hy_token_claims *claims,
                  char **token);

/* Issues a zone token for zone valid from now for validity_seconds, with a
 * new jti copied to jti (if not NULL) so it can be listed and revoked.
 * Ownership and errors as hy_token_sign. */
int hy_token_sign_zone(const struct hy_token_key *key, const char *zone, int64_t now,
                       int64_t validity_seconds, char **token, char jti[HY_TOKEN_JTI_LEN + 1]);

/* ----- verifying ----- */

/* Why a token was refused. */
enum hy_token_reason {
    HY_TOKEN_OK,
    HY_TOKEN_MALFORMED,       /* bad shape, base64 or JSON; typ not JWT; claims missing; too long */
    HY_TOKEN_ALG_NOT_ALLOWED, /* header alg is not HY_TOKEN_ALG ("none", "HS256", "ES256"...) */
    HY_TOKEN_UNKNOWN_KID,     /* no key in the keyset has the header's kid (or it has none) */
    HY_TOKEN_BAD_SIGNATURE,   /* header, claims or signature were changed, or another key signed */
    HY_TOKEN_EXPIRED,         /* exp <= now */
    HY_TOKEN_NOT_YET_VALID,   /* nbf > now */
    HY_TOKEN_REVOKED,         /* the revocation callback named its jti */
    HY_TOKEN_WRONG_KIND,      /* a valid token of another kind (a dataplane token on KDS) */
};

/* Short fixed description of a reason ("token expired"). Static; never NULL. */
const char *hy_token_reason_str(enum hy_token_reason reason);

/* Returns true when the token with this jti has been revoked. */
typedef bool (*hy_token_revoked_fn)(const char *jti, void *arg);

/* What the verifier accepts. Everything is borrowed for the call. */
struct hy_token_policy {
    const struct hy_token_key *const *keys; /* the keyset, looked up by kid */
    size_t nkeys;
    int64_t now;                 /* Unix seconds, usually time(NULL) */
    enum hy_token_kind kind;     /* the one kind this endpoint takes */
    hy_token_revoked_fn revoked; /* NULL: nothing is revoked */
    void *revoked_arg;
};

/* Why hy_token_verify refused a token. */
struct hy_token_failure {
    enum hy_token_reason reason;
    int64_t at;        /* EXPIRED: exp; NOT_YET_VALID: nbf; otherwise 0 */
    char message[256]; /* one line for logs and Reject: "token expired at 2026-11-20T10:00:00Z" */
};

/* Verifies token[0..len) against policy. In order: size (at most
 * HY_TOKEN_MAX_LEN) and shape, header, alg, kid, signature (the claims are
 * parsed only once it holds), required claims (kind, jti, iat, nbf, exp, and
 * what the kind needs), kind, nbf, exp, revocation.
 * Returns 0 and fills *out (caller frees with hy_token_claims_fini) when the
 * token is good. Returns HY_EVERIFY when it is refused, with *why saying
 * which check failed and *out zeroed; HY_EINVAL for a NULL policy or out;
 * HY_ENOMEM. why may be NULL. */
int hy_token_verify(const char *token, size_t len, const struct hy_token_policy *policy,
                    struct hy_token_claims *out, struct hy_token_failure *why);

#endif
