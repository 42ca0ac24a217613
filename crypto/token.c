/* Zone and dataplane tokens: Ed25519 keys on wolfCrypt's native API, JWT
 * signing, and the one verifier the KDS and DP servers call. wolfSSL's codes
 * become HY_E* here and nowhere else. */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ed25519.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include "base64.h"
#include "buf.h"
#include "codec.h"
#include "error.h"
#include "token.h"
#include "token.pb-c.h"
#include "poison.h"

#if !defined(HAVE_ED25519) || !defined(HAVE_ED25519_SIGN) || !defined(HAVE_ED25519_VERIFY)
#error "token.c needs wolfSSL built with Ed25519 (Debian's is)"
#endif

#define MAX_KEY_FILE (64u << 10)
#define MAX_JTI 64       /* what we accept from others; ours are HY_TOKEN_JTI_LEN */
#define MAX_JSON_DEPTH 4 /* claims -> tags -> value */
#define SHOWN 48         /* chars of an untrusted string quoted in a failure message */

/* Read-only once made, so one key may sign and verify from many threads. */
struct hy_token_key {
    ed25519_key k;
    bool priv;
    char kid[HY_TOKEN_KID_LEN + 1];
};

static int wc_err(int rc)
{
    return rc == MEMORY_E ? HY_ENOMEM : HY_ECRYPTO;
}

static void wipe_free(void *p, size_t n)
{
    if (p)
        explicit_bzero(p, n);
    free(p);
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

/* ----- keys ----- */

static int set_kid(struct hy_token_key *key)
{
    uint8_t digest[WC_SHA256_DIGEST_SIZE];
    int rc = wc_Sha256Hash(key->k.p, ED25519_PUB_KEY_SIZE, digest);
    if (rc != 0)
        return wc_err(rc);
    hex(digest, HY_TOKEN_KID_LEN / 2, key->kid);
    return 0;
}

static struct hy_token_key *key_new(void)
{
    struct hy_token_key *key = calloc(1, sizeof(*key));
    if (key && wc_ed25519_init(&key->k) != 0) {
        free(key);
        return NULL;
    }
    return key;
}

void hy_token_key_free(struct hy_token_key *key)
{
    if (!key)
        return;
    wc_ed25519_free(&key->k);
    explicit_bzero(key, sizeof(*key));
    free(key);
}

struct hy_token_key *hy_token_key_generate(void)
{
    struct hy_token_key *key = key_new();
    if (!key)
        return NULL;
    WC_RNG rng;
    if (wc_InitRng(&rng) != 0)
        goto out_free_key;
    int rc = wc_ed25519_make_key(&rng, ED25519_KEY_SIZE, &key->k);
    wc_FreeRng(&rng);
    if (rc != 0)
        goto out_free_key;
    key->priv = true;
    if (set_kid(key) < 0)
        goto out_free_key;
    return key;
out_free_key:
    hy_token_key_free(key);
    return NULL;
}

const char *hy_token_key_kid(const struct hy_token_key *key)
{
    return key->kid;
}

bool hy_token_key_can_sign(const struct hy_token_key *key)
{
    return key->priv;
}

int hy_token_key_to_pem(const struct hy_token_key *key, bool public_only, char **pem)
{
    ed25519_key *k = (ed25519_key *)&key->k; /* wolfSSL takes it non-const; nothing changes */
    uint8_t der[128];
    bool priv = key->priv && !public_only;
    int n = priv ? wc_Ed25519PrivateKeyToDer(k, der, sizeof(der))
                 : wc_Ed25519PublicKeyToDer(k, der, sizeof(der), 1);
    int type = priv ? PKCS8_PRIVATEKEY_TYPE : PUBLICKEY_TYPE;
    int rc = HY_ECRYPTO;
    if (n <= 0) {
        rc = wc_err(n);
        goto out_wipe;
    }
    int size = wc_DerToPem(der, (word32)n, NULL, 0, type);
    if (size <= 0) {
        rc = wc_err(size);
        goto out_wipe;
    }
    char *out = malloc((size_t)size + 1);
    if (!out) {
        rc = HY_ENOMEM;
        goto out_wipe;
    }
    int m = wc_DerToPem(der, (word32)n, (byte *)out, (word32)size, type);
    if (m <= 0 || m > size) {
        wipe_free(out, (size_t)size + 1);
        rc = wc_err(m);
        goto out_wipe;
    }
    out[m] = '\0';
    *pem = out;
    rc = 0;
out_wipe:
    explicit_bzero(der, sizeof(der));
    return rc;
}

/* Loads the private key in PKCS#8 DER; the public half is recomputed from
 * the seed rather than trusted from the file. */
static int import_private(struct hy_token_key *key, const uint8_t *der, size_t n)
{
    ed25519_key tmp;
    uint8_t seed[ED25519_KEY_SIZE], pub[ED25519_PUB_KEY_SIZE];
    word32 idx = 0, seed_len = sizeof(seed);
    int rc = wc_ed25519_init(&tmp);
    if (rc != 0)
        return wc_err(rc);
    rc = HY_EINVAL;
    if (wc_Ed25519PrivateKeyDecode(der, &idx, &tmp, (word32)n) != 0 ||
        wc_ed25519_export_private_only(&tmp, seed, &seed_len) != 0 || seed_len != sizeof(seed) ||
        wc_ed25519_make_public(&tmp, pub, sizeof(pub)) != 0 ||
        wc_ed25519_import_private_key(seed, sizeof(seed), pub, sizeof(pub), &key->k) != 0)
        goto out_wipe;
    key->priv = true;
    rc = 0;
out_wipe:
    wc_ed25519_free(&tmp);
    explicit_bzero(seed, sizeof(seed));
    return rc;
}

int hy_token_key_from_pem(const char *pem, size_t len, struct hy_token_key **out)
{
    static const char priv_hdr[] = "-----BEGIN PRIVATE KEY-----";
    static const char pub_hdr[] = "-----BEGIN PUBLIC KEY-----";
    if (!pem || len == 0 || len > MAX_KEY_FILE)
        return HY_EINVAL;
    bool priv = memmem(pem, len, priv_hdr, sizeof(priv_hdr) - 1) != NULL;
    if (!priv && !memmem(pem, len, pub_hdr, sizeof(pub_hdr) - 1))
        return HY_EINVAL;
    uint8_t *der = malloc(len);
    if (!der)
        return HY_ENOMEM;
    struct hy_token_key *key = key_new();
    int rc = HY_ENOMEM;
    if (!key)
        goto out_free_der;
    int n = priv ? wc_KeyPemToDer((const byte *)pem, (int)len, der, (int)len, NULL)
                 : wc_PubKeyPemToDer((const byte *)pem, (int)len, der, (int)len);
    if (n <= 0) {
        rc = n == MEMORY_E ? HY_ENOMEM : HY_EINVAL;
        goto out_free_key;
    }
    word32 idx = 0;
    if (priv)
        rc = import_private(key, der, (size_t)n);
    else
        rc = wc_Ed25519PublicKeyDecode(der, &idx, &key->k, (word32)n) == 0 ? 0 : HY_EINVAL;
    if (rc == 0)
        rc = set_kid(key);
    if (rc == 0) {
        *out = key;
        key = NULL;
    }
out_free_key:
    hy_token_key_free(key);
out_free_der:
    wipe_free(der, len);
    return rc;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync of the directory holding path, so a rename into it survives a crash. */
static int sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return HY_ENOMEM;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(dir);
    if (fd < 0)
        return -errno;
    int rc = fsync(fd) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

int hy_token_key_save(const struct hy_token_key *key, const char *path)
{
    if (!key->priv || !path || !*path)
        return HY_EINVAL;
    char *pem;
    int rc = hy_token_key_to_pem(key, false, &pem);
    if (rc < 0)
        return rc;
    size_t pem_len = strlen(pem);
    struct hy_buf tmp = {0};
    if (hy_buf_printf(&tmp, "%s.tmpXXXXXX", path) < 0) {
        rc = HY_ENOMEM;
        goto out_wipe;
    }
    /* mkostemp creates the file 0600; fchmod says so whatever it did */
    int fd = mkostemp(tmp.data, O_CLOEXEC);
    if (fd < 0) {
        rc = -errno;
        goto out_free_tmp;
    }
    if (fchmod(fd, S_IRUSR | S_IWUSR) < 0 || (rc = write_all(fd, pem, pem_len)) < 0 ||
        fsync(fd) < 0) {
        rc = rc < 0 ? rc : -errno;
        close(fd);
        goto out_unlink;
    }
    if (close(fd) < 0 || rename(tmp.data, path) < 0) {
        rc = -errno;
        goto out_unlink;
    }
    rc = sync_dir(path);
    goto out_free_tmp;
out_unlink:
    unlink(tmp.data);
out_free_tmp:
    hy_buf_fini(&tmp);
out_wipe:
    wipe_free(pem, pem_len);
    return rc;
}

int hy_token_key_load(const char *path, struct hy_token_key **out)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    char *buf = malloc(MAX_KEY_FILE + 1);
    int rc = 0;
    size_t n = 0;
    if (!buf) {
        close(fd);
        return HY_ENOMEM;
    }
    while (n <= MAX_KEY_FILE) {
        ssize_t r = read(fd, buf + n, MAX_KEY_FILE + 1 - n);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = -errno;
            break;
        }
        if (r == 0)
            break;
        n += (size_t)r;
    }
    close(fd);
    if (rc == 0 && n > MAX_KEY_FILE)
        rc = HY_ETOOBIG;
    if (rc == 0)
        rc = hy_token_key_from_pem(buf, n, out);
    wipe_free(buf, MAX_KEY_FILE + 1);
    return rc;
}

/* ----- claims ----- */

const char *hy_token_kind_str(enum hy_token_kind kind)
{
    return kind == HY_TOKEN_KIND_DATAPLANE ? "dataplane"
           : kind == HY_TOKEN_KIND_INGRESS ? "zone-ingress"
                                           : "zone";
}

static bool kind_parse(const char *s, enum hy_token_kind *kind)
{
    if (strcmp(s, "zone") == 0)
        *kind = HY_TOKEN_KIND_ZONE;
    else if (strcmp(s, "dataplane") == 0)
        *kind = HY_TOKEN_KIND_DATAPLANE;
    else if (strcmp(s, "zone-ingress") == 0)
        *kind = HY_TOKEN_KIND_INGRESS;
    else
        return false;
    return true;
}

void hy_token_claims_fini(struct hy_token_claims *c)
{
    free(c->jti);
    free(c->zone);
    free(c->mesh);
    free(c->name);
    for (size_t i = 0; i < c->ntags; i++) {
        free(c->tags[i].key);
        free(c->tags[i].value);
    }
    free(c->tags);
    memset(c, 0, sizeof(*c));
}

static bool valid_jti(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n > MAX_JTI)
        return false;
    for (size_t i = 0; i < n; i++) {
        char ch = s[i];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '-' || ch == '_'))
            return false;
    }
    return true;
}

static bool present(const char *s)
{
    return s && *s;
}

/* What is missing from c for its kind, or NULL when nothing is. */
static const char *missing_claim(const struct hy_token_claims *c)
{
    if (c->kind == HY_TOKEN_KIND_ZONE && !present(c->zone))
        return "zone";
    if (c->kind == HY_TOKEN_KIND_DATAPLANE && !present(c->mesh))
        return "mesh";
    if (c->kind == HY_TOKEN_KIND_DATAPLANE && !present(c->name))
        return "name";
    if (c->kind == HY_TOKEN_KIND_INGRESS && !present(c->zone))
        return "zone";
    if (c->kind == HY_TOKEN_KIND_INGRESS && !present(c->name))
        return "name";
    return NULL;
}

/* ----- signing ----- */

int hy_token_jti_new(char jti[HY_TOKEN_JTI_LEN + 1])
{
    uint8_t raw[HY_TOKEN_JTI_LEN / 2];
    WC_RNG rng;
    int rc = wc_InitRng(&rng);
    if (rc != 0)
        return wc_err(rc);
    rc = wc_RNG_GenerateBlock(&rng, raw, sizeof(raw));
    wc_FreeRng(&rng);
    if (rc != 0)
        return wc_err(rc);
    hex(raw, sizeof(raw), jti);
    return 0;
}

static int put_b64(struct hy_buf *out, const void *p, size_t n)
{
    char *enc = malloc(hy_base64_encoded_size(n));
    if (!enc)
        return HY_ENOMEM;
    size_t m = hy_base64_encode(p, n, enc, true);
    int rc = hy_buf_append(out, enc, m);
    free(enc);
    return rc;
}

/* Appends base64url(JSON of m). */
static int put_json_b64(struct hy_buf *out, const ProtobufCMessage *m)
{
    struct hy_buf json = {0};
    int rc = hy_codec_encode_message(m, HY_FORMAT_JSON, &json);
    if (rc == 0)
        rc = put_b64(out, json.data, json.len);
    hy_buf_fini(&json);
    return rc;
}

static int put_claims(struct hy_buf *out, const struct hy_token_claims *c)
{
    Hypha__V1__TokenClaims m = HYPHA__V1__TOKEN_CLAIMS__INIT;
    /* the codec only reads the message: the casts lend it the caller's strings */
    m.kind = (char *)hy_token_kind_str(c->kind);
    m.zone = c->zone;
    m.mesh = c->mesh;
    m.name = c->name;
    m.jti = c->jti;
    m.has_iat = m.has_nbf = m.has_exp = 1;
    m.iat = c->iat;
    m.nbf = c->nbf;
    m.exp = c->exp;
    Hypha__V1__TokenClaims__TagsEntry *entries = NULL;
    if (c->ntags) {
        entries = calloc(c->ntags, sizeof(*entries));
        m.tags = calloc(c->ntags, sizeof(*m.tags));
        if (!entries || !m.tags) {
            free(entries);
            free(m.tags);
            return HY_ENOMEM;
        }
        for (size_t i = 0; i < c->ntags; i++) {
            hypha__v1__token_claims__tags_entry__init(&entries[i]);
            entries[i].key = c->tags[i].key;
            entries[i].value = c->tags[i].value;
            m.tags[i] = &entries[i];
        }
        m.n_tags = c->ntags;
    }
    int rc = put_json_b64(out, &m.base);
    free(m.tags);
    free(entries);
    return rc;
}

int hy_token_sign(const struct hy_token_key *key, const struct hy_token_claims *claims,
                  char **token)
{
    if (!key || !key->priv || !claims || !valid_jti(claims->jti) || claims->exp <= claims->nbf ||
        missing_claim(claims))
        return HY_EINVAL;
    for (size_t i = 0; i < claims->ntags; i++)
        if (!claims->tags[i].key || !claims->tags[i].value)
            return HY_EINVAL;
    Hypha__V1__TokenHeader h = HYPHA__V1__TOKEN_HEADER__INIT;
    h.alg = (char *)HY_TOKEN_ALG;
    h.typ = (char *)"JWT";
    h.kid = (char *)key->kid;

    struct hy_buf out = {0};
    int rc = put_json_b64(&out, &h.base);
    if (rc == 0)
        rc = hy_buf_puts(&out, ".");
    if (rc == 0)
        rc = put_claims(&out, claims);
    if (rc < 0)
        goto out_fini;
    uint8_t sig[ED25519_SIG_SIZE];
    word32 sig_len = sizeof(sig);
    rc = wc_ed25519_sign_msg((const byte *)out.data, (word32)out.len, sig, &sig_len,
                             (ed25519_key *)&key->k);
    if (rc != 0) {
        rc = wc_err(rc);
        goto out_fini;
    }
    if ((rc = hy_buf_puts(&out, ".")) < 0 || (rc = put_b64(&out, sig, sig_len)) < 0)
        goto out_fini;
    if (out.len > HY_TOKEN_MAX_LEN) {
        rc = HY_ETOOBIG;
        goto out_fini;
    }
    *token = out.data;
    return 0;
out_fini:
    hy_buf_fini(&out);
    return rc;
}

int hy_token_sign_zone(const struct hy_token_key *key, const char *zone, int64_t now,
                       int64_t validity_seconds, char **token, char jti[HY_TOKEN_JTI_LEN + 1])
{
    char id[HY_TOKEN_JTI_LEN + 1];
    if (validity_seconds <= 0 || now > INT64_MAX - validity_seconds)
        return HY_EINVAL;
    int rc = hy_token_jti_new(id);
    if (rc < 0)
        return rc;
    struct hy_token_claims c = {
        .kind = HY_TOKEN_KIND_ZONE,
        .jti = id,
        .iat = now,
        .nbf = now,
        .exp = now + validity_seconds,
        .zone = (char *)zone,
    };
    rc = hy_token_sign(key, &c, token);
    if (rc == 0 && jti)
        memcpy(jti, id, sizeof(id));
    return rc;
}

/* ----- verifying ----- */

const char *hy_token_reason_str(enum hy_token_reason reason)
{
    switch (reason) {
    case HY_TOKEN_OK:
        return "token is valid";
    case HY_TOKEN_MALFORMED:
        return "token is malformed";
    case HY_TOKEN_ALG_NOT_ALLOWED:
        return "token signing algorithm is not allowed";
    case HY_TOKEN_UNKNOWN_KID:
        return "token was signed by an unknown key";
    case HY_TOKEN_BAD_SIGNATURE:
        return "token signature is invalid";
    case HY_TOKEN_EXPIRED:
        return "token expired";
    case HY_TOKEN_NOT_YET_VALID:
        return "token is not valid yet";
    case HY_TOKEN_REVOKED:
        return "token was revoked";
    case HY_TOKEN_WRONG_KIND:
        return "token is of the wrong kind";
    }
    return "token was refused";
}

__attribute__((format(printf, 3, 4))) static int
refuse(struct hy_token_failure *why, enum hy_token_reason reason, const char *fmt, ...)
{
    why->reason = reason;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why->message, sizeof(why->message), fmt, ap);
    va_end(ap);
    return HY_EVERIFY;
}

/* An untrusted string made safe to quote: printable ASCII, cut to SHOWN. */
static const char *shown(const char *s, char out[SHOWN + 4])
{
    size_t i = 0;
    for (; s && s[i] && i < SHOWN; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? s[i] : '?';
    if (s && s[i]) {
        memcpy(out + i, "...", 3);
        i += 3;
    }
    out[i] = '\0';
    return out;
}

/* Decodes one base64url part: no padding, canonical (re-encoding gives the
 * same text, so a token has one spelling). Returns 0, HY_EINVAL or
 * HY_ENOMEM; *out is owned by the caller. */
static int b64_part(const char *s, size_t n, uint8_t **out, size_t *out_len)
{
    if (memchr(s, '=', n))
        return HY_EINVAL;
    uint8_t *buf = malloc(n * 3 / 4 + 3);
    if (!buf)
        return HY_ENOMEM;
    size_t m;
    if (!hy_base64_decode(s, n, buf, &m, true)) {
        free(buf);
        return HY_EINVAL;
    }
    char *again = malloc(hy_base64_encoded_size(m));
    if (!again) {
        free(buf);
        return HY_ENOMEM;
    }
    bool same = hy_base64_encode(buf, m, again, true) == n && memcmp(again, s, n) == 0;
    free(again);
    if (!same) {
        free(buf);
        return HY_EINVAL;
    }
    *out = buf;
    *out_len = m;
    return 0;
}

/* Decodes the base64url JSON object s[0..n) into a message of type desc. */
static int decode_part(const char *what, const char *s, size_t n,
                       const ProtobufCMessageDescriptor *desc, ProtobufCMessage **m,
                       struct hy_token_failure *why)
{
    uint8_t *json;
    size_t len;
    int rc = b64_part(s, n, &json, &len);
    if (rc == HY_ENOMEM)
        return rc;
    if (rc < 0)
        return refuse(why, HY_TOKEN_MALFORMED, "the %s is not base64url", what);
    /* the codec reads YAML, of which JSON is a part: insist on an object */
    if (len < 2 || json[0] != '{' || json[len - 1] != '}') {
        free(json);
        return refuse(why, HY_TOKEN_MALFORMED, "the %s is not a JSON object", what);
    }
    struct hy_diag d = {0};
    struct hy_codec_limits lim = {.max_bytes = HY_TOKEN_MAX_LEN, .max_depth = MAX_JSON_DEPTH};
    rc = hy_codec_decode_message(what, (const char *)json, len, &lim, desc, m, &d);
    free(json);
    if (rc < 0 && rc != HY_ENOMEM) {
        char line[160] = "";
        if (d.n)
            hy_diag_format(&d, 0, line, sizeof(line));
        rc = refuse(why, HY_TOKEN_MALFORMED, "the %s is not valid: %s", what, line);
    }
    hy_diag_fini(&d);
    return rc;
}

static const struct hy_token_key *find_key(const struct hy_token_policy *p, const char *kid)
{
    for (size_t i = 0; kid && i < p->nkeys; i++)
        if (p->keys[i] && strcmp(p->keys[i]->kid, kid) == 0)
            return p->keys[i];
    return NULL;
}

/* Header checks: alg, typ, then the key named by kid. */
static int check_header(const Hypha__V1__TokenHeader *h, const struct hy_token_policy *p,
                        const struct hy_token_key **key, struct hy_token_failure *why)
{
    char a[SHOWN + 4];
    if (!h->alg || strcmp(h->alg, HY_TOKEN_ALG) != 0)
        return refuse(why, HY_TOKEN_ALG_NOT_ALLOWED, "alg \"%s\" is not allowed (only %s)",
                      shown(h->alg ? h->alg : "", a), HY_TOKEN_ALG);
    if (h->typ && strcmp(h->typ, "JWT") != 0)
        return refuse(why, HY_TOKEN_MALFORMED, "typ \"%s\" is not JWT", shown(h->typ, a));
    if (!present(h->kid))
        return refuse(why, HY_TOKEN_UNKNOWN_KID, "the header names no signing key (kid)");
    if (!(*key = find_key(p, h->kid)))
        return refuse(why, HY_TOKEN_UNKNOWN_KID, "no signing key has kid \"%s\"", shown(h->kid, a));
    return 0;
}

/* Copies the decoded claims into out, checking the ones every token needs. */
static int take_claims(const Hypha__V1__TokenClaims *m, struct hy_token_claims *out,
                       struct hy_token_failure *why)
{
    char a[SHOWN + 4];
    const char *missing = !m->kind      ? "kind"
                          : !m->jti     ? "jti"
                          : !m->has_iat ? "iat"
                          : !m->has_nbf ? "nbf"
                          : !m->has_exp ? "exp"
                                        : NULL;
    if (missing)
        return refuse(why, HY_TOKEN_MALFORMED, "claim \"%s\" is missing", missing);
    if (!kind_parse(m->kind, &out->kind))
        return refuse(why, HY_TOKEN_MALFORMED, "unknown kind \"%s\"", shown(m->kind, a));
    if (!valid_jti(m->jti))
        return refuse(why, HY_TOKEN_MALFORMED, "jti \"%s\" is not a token id", shown(m->jti, a));
    if (m->iat <= 0 || m->nbf <= 0 || m->exp <= 0)
        return refuse(why, HY_TOKEN_MALFORMED, "claim \"%s\" is not a time after 1970",
                      m->iat <= 0   ? "iat"
                      : m->nbf <= 0 ? "nbf"
                                    : "exp");
    if (m->exp <= m->nbf)
        return refuse(why, HY_TOKEN_MALFORMED, "claim \"exp\" is not after \"nbf\"");
    out->iat = m->iat;
    out->nbf = m->nbf;
    out->exp = m->exp;
    if (!(out->jti = strdup(m->jti)) || (m->zone && !(out->zone = strdup(m->zone))) ||
        (m->mesh && !(out->mesh = strdup(m->mesh))) || (m->name && !(out->name = strdup(m->name))))
        return HY_ENOMEM;
    if (m->n_tags) {
        if (!(out->tags = calloc(m->n_tags, sizeof(*out->tags))))
            return HY_ENOMEM;
        for (size_t i = 0; i < m->n_tags; i++, out->ntags++)
            if (!(out->tags[i].key = strdup(m->tags[i]->key ? m->tags[i]->key : "")) ||
                !(out->tags[i].value = strdup(m->tags[i]->value ? m->tags[i]->value : "")))
                return HY_ENOMEM; /* the half-made tag is freed with the rest */
    }
    if ((missing = missing_claim(out)))
        return refuse(why, HY_TOKEN_MALFORMED, "a %s token needs claim \"%s\"",
                      hy_token_kind_str(out->kind), missing);
    return 0;
}

/* Kind, then time, then revocation: the cheap and certain checks first. */
static int check_claims(const struct hy_token_claims *c, const struct hy_token_policy *p,
                        struct hy_token_failure *why)
{
    char t[64], now[64];
    if (c->kind != p->kind)
        return refuse(why, HY_TOKEN_WRONG_KIND, "this is a %s token; a %s token is required",
                      hy_token_kind_str(c->kind), hy_token_kind_str(p->kind));
    hy_timestamp_format(p->now, 0, now, sizeof(now));
    if (c->nbf > p->now) {
        why->at = c->nbf;
        hy_timestamp_format(c->nbf, 0, t, sizeof(t));
        return refuse(why, HY_TOKEN_NOT_YET_VALID, "token is not valid before %s (now %s)", t, now);
    }
    if (c->exp <= p->now) {
        why->at = c->exp;
        hy_timestamp_format(c->exp, 0, t, sizeof(t));
        return refuse(why, HY_TOKEN_EXPIRED, "token expired at %s (now %s)", t, now);
    }
    if (p->revoked && p->revoked(c->jti, p->revoked_arg))
        return refuse(why, HY_TOKEN_REVOKED, "token %s has been revoked", c->jti);
    return 0;
}

int hy_token_verify(const char *token, size_t len, const struct hy_token_policy *policy,
                    struct hy_token_claims *out, struct hy_token_failure *why)
{
    struct hy_token_failure ignored;
    if (!why)
        why = &ignored;
    memset(why, 0, sizeof(*why));
    if (!policy || !out)
        return HY_EINVAL;
    memset(out, 0, sizeof(*out));
    if (!token || len == 0)
        return refuse(why, HY_TOKEN_MALFORMED, "the token is empty");
    if (len > HY_TOKEN_MAX_LEN)
        return refuse(why, HY_TOKEN_MALFORMED, "the token is %zu bytes, over the limit of %d", len,
                      HY_TOKEN_MAX_LEN);
    const char *end = token + len;
    const char *dot1 = memchr(token, '.', len);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', (size_t)(end - dot1 - 1)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', (size_t)(end - dot2 - 1)) || dot1 == token ||
        dot2 == dot1 + 1)
        return refuse(why, HY_TOKEN_MALFORMED, "the token is not three dot-separated parts");

    ProtobufCMessage *hm = NULL, *cm = NULL;
    uint8_t *sig = NULL;
    size_t sig_len;
    const struct hy_token_key *key;
    int rc = decode_part("header", token, (size_t)(dot1 - token),
                         &hypha__v1__token_header__descriptor, &hm, why);
    if (rc < 0)
        return rc;
    if ((rc = check_header((Hypha__V1__TokenHeader *)hm, policy, &key, why)) < 0)
        goto out_free;
    rc = b64_part(dot2 + 1, (size_t)(end - dot2 - 1), &sig, &sig_len);
    if (rc == HY_EINVAL)
        rc = refuse(why, HY_TOKEN_MALFORMED, "the signature is not base64url");
    if (rc < 0)
        goto out_free;
    int ok = 0;
    if (sig_len != ED25519_SIG_SIZE) {
        rc = refuse(why, HY_TOKEN_BAD_SIGNATURE, "the signature is %zu bytes, not %d", sig_len,
                    ED25519_SIG_SIZE);
        goto out_free;
    }
    rc = wc_ed25519_verify_msg(sig, (word32)sig_len, (const byte *)token, (word32)(dot2 - token),
                               &ok, (ed25519_key *)&key->k);
    if (rc == MEMORY_E) {
        rc = HY_ENOMEM;
        goto out_free;
    }
    if (rc != 0 || ok != 1) {
        rc = refuse(why, HY_TOKEN_BAD_SIGNATURE, "the signature does not verify with key %s",
                    key->kid);
        goto out_free;
    }
    /* only signed claims reach the parser */
    rc = decode_part("claims", dot1 + 1, (size_t)(dot2 - dot1 - 1),
                     &hypha__v1__token_claims__descriptor, &cm, why);
    if (rc == 0)
        rc = take_claims((Hypha__V1__TokenClaims *)cm, out, why);
    if (rc == 0)
        rc = check_claims(out, policy, why);
out_free:
    if (rc < 0)
        hy_token_claims_fini(out);
    if (rc == HY_ENOMEM)
        memset(why, 0, sizeof(*why));
    free(sig);
    if (cm)
        protobuf_c_message_free_unpacked(cm, NULL);
    protobuf_c_message_free_unpacked(hm, NULL);
    return rc;
}
