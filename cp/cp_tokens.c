/* Tokens on a control plane: its signing key in the data dir, issuing zone
 * tokens (global CP) and dataplane tokens (both: a zone for itself, the
 * global CP for a named zone), revocation by jti, and the one verify
 * function of each kind, also reachable over the API so an operator can
 * ask why a token is refused. A zone accepts dataplane tokens signed by
 * its own key or by the global CP's, whose public half KDS brings it. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "ca.pb-c.h"
#include "codec.h"
#include "cp.h"
#include "error.h"
#include "log.h"
#include "token.h"
#include "poison.h"

#define MAX_KEYS 8

/* The global CP publishes its public key so zones can check what it signs. */
static int publish_key(struct hy_cp *cp)
{
    char *pem = NULL, name[64];
    int rc = hy_token_key_to_pem(cp->token_key, true, &pem);
    if (rc < 0)
        return rc;
    snprintf(name, sizeof(name), "global-%s", hy_token_key_kid(cp->token_key));
    struct hy_resource *r = hy_resource_new(hy_rtype_by_name("TokenSigningKey"));
    rc = HY_ENOMEM;
    if (r && hy_resource_set_name(r, NULL, name) == 0) {
        Hypha__V1__TokenSigningKey *k = (Hypha__V1__TokenSigningKey *)r->spec;
        k->kid = strdup(hy_token_key_kid(cp->token_key));
        k->public_key = pem;
        pem = NULL;
        struct hy_store_write w;
        rc = k->kid ? hy_store_put(cp->store, r, HY_VERSION_ANY, &w) : HY_ENOMEM;
    }
    hy_resource_free(r);
    free(pem);
    return rc;
}

int hy_cp_tokens_open(struct hy_cp *cp)
{
    char path[4096];
    if (hy_cp_path(cp, "token-signing.key", path, sizeof(path)) < 0)
        return HY_ETOOBIG;
    int rc = hy_token_key_load(path, &cp->token_key);
    if (rc == -ENOENT) {
        if (!(cp->token_key = hy_token_key_generate()))
            return HY_ENOMEM;
        if ((rc = hy_token_key_save(cp->token_key, path)) == 0)
            hy_log(HY_LOG_INFO, "tokens", "generated token signing key %s in %s",
                   hy_token_key_kid(cp->token_key), path);
    } else if (rc == 0) {
        hy_log(HY_LOG_INFO, "tokens", "token signing key %s loaded from %s",
               hy_token_key_kid(cp->token_key), path);
    }
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "tokens", "%s: cannot load or save the token signing key: %s", path,
               hy_strerror(rc));
        return rc;
    }
    return cp->zone ? 0 : publish_key(cp);
}

void hy_cp_tokens_close(struct hy_cp *cp)
{
    hy_token_key_free(cp->token_key);
    cp->token_key = NULL;
}

static bool is_revoked(const char *jti, void *arg)
{
    struct hy_resource *r = NULL;
    if (hy_store_get(((struct hy_cp *)arg)->store, "TokenRevocation", NULL, jti, &r) < 0)
        return false;
    hy_resource_free(r);
    return true;
}

struct keyset {
    struct hy_token_key *owned[MAX_KEYS];
    const struct hy_token_key *keys[MAX_KEYS + 1];
    size_t n, nowned;
};

static int add_published(void *ud, struct hy_resource *r, bool *take)
{
    struct keyset *ks = ud;
    const Hypha__V1__TokenSigningKey *k = (const Hypha__V1__TokenSigningKey *)r->spec;
    (void)take;
    struct hy_token_key *key = NULL;
    if (ks->nowned < MAX_KEYS && k->public_key &&
        hy_token_key_from_pem(k->public_key, strlen(k->public_key), &key) == 0) {
        ks->owned[ks->nowned++] = key;
        ks->keys[ks->n++] = key;
    }
    return 0;
}

int hy_cp_verify_token(struct hy_cp *cp, int kind, const char *token,
                       struct hy_token_claims *claims, struct hy_token_failure *why)
{
    struct keyset ks = {.keys = {cp->token_key}, .n = 1};
    /* a zone also trusts the keys the global CP published (dataplane tokens
     * it issues for this zone); the global CP trusts only its own */
    if (cp->zone && kind != HY_TOKEN_KIND_ZONE)
        hy_store_each(cp->store, "TokenSigningKey", add_published, &ks);
    struct hy_token_policy p = {
        .keys = ks.keys,
        .nkeys = ks.n,
        .now = time(NULL),
        .kind = (enum hy_token_kind)kind,
        .revoked = is_revoked,
        .revoked_arg = cp,
    };
    int rc = hy_token_verify(token, strlen(token), &p, claims, why);
    if (rc == 0 && kind != HY_TOKEN_KIND_ZONE && cp->zone &&
        (!claims->zone || strcmp(claims->zone, cp->zone) != 0)) {
        why->reason = HY_TOKEN_WRONG_KIND;
        snprintf(why->message, sizeof(why->message),
                 "the %s token is for zone %s, not this zone (%s)",
                 hy_token_kind_str((enum hy_token_kind)kind), claims->zone ? claims->zone : "?",
                 cp->zone);
        hy_token_claims_fini(claims);
        rc = HY_EVERIFY;
    }
    for (size_t i = 0; i < ks.nowned; i++)
        hy_token_key_free(ks.owned[i]);
    return rc;
}

bool hy_cp_token_live(struct hy_cp *cp, const char *jti, int64_t exp, char *why, size_t size)
{
    time_t now = time(NULL);
    if (exp > 0 && (int64_t)now >= exp) {
        char when[32];
        struct tm tm;
        time_t t = (time_t)exp;
        gmtime_r(&t, &tm);
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
        snprintf(why, size, "token expired at %s", when);
        return false;
    }
    if (jti && jti[0] && is_revoked(jti, cp)) {
        snprintf(why, size, "token %s was revoked", jti);
        return false;
    }
    return true;
}

/* ----- endpoints ----- */

/* Decodes a JSON/YAML body into a message of desc, answering 400 itself. */
static ProtobufCMessage *decode_body(const struct hy_http_req *req, struct hy_http_resp *resp,
                                     const ProtobufCMessageDescriptor *desc)
{
    struct hy_diag d = {0};
    ProtobufCMessage *m = NULL;
    if (hy_codec_decode_message("request body", req->body, req->body_len, NULL, desc, &m, &d) < 0) {
        hy_http_error(resp, 400, "Invalid request", "the request body is not valid", &d);
        m = NULL;
    }
    hy_diag_fini(&d);
    return m;
}

static void answer_token(struct hy_http_resp *resp, const char *token)
{
    resp->content_type = "text/plain";
    hy_buf_puts(&resp->body, token);
}

static void issue_zone_token(struct hy_cp *cp, const struct hy_http_req *req,
                             struct hy_http_resp *resp)
{
    Hypha__V1__ZoneTokenRequest *r = (Hypha__V1__ZoneTokenRequest *)decode_body(
        req, resp, &hypha__v1__zone_token_request__descriptor);
    if (!r)
        return;
    struct hy_diag d = {0};
    if (!r->zone || !hy_valid_zone_name(r->zone))
        hy_diag_add(&d, 0, 0, "zone", "required: %s", HY_ZONE_NAME_RULE);
    if (!r->valid_for || r->valid_for->seconds <= 0)
        hy_diag_add(&d, 0, 0, "validFor", "required: a duration of at least 1s, like 720h");
    char *token = NULL, jti[HY_TOKEN_JTI_LEN + 1];
    int rc;
    if (d.n) {
        hy_http_error(resp, 400, "Invalid request", "cannot issue a zone token", &d);
    } else if ((rc = hy_token_sign_zone(cp->token_key, r->zone, time(NULL), r->valid_for->seconds,
                                        &token, jti)) < 0) {
        hy_http_error(resp, 500, "Cannot sign", hy_strerror(rc), NULL);
    } else {
        answer_token(resp, token);
        hy_log(HY_LOG_INFO, "tokens", "%s issued a zone token for %s (jti %s, valid %llds)",
               req->peer, r->zone, jti, (long long)r->valid_for->seconds);
    }
    free(token);
    hy_diag_fini(&d);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

/* The zone a dataplane or zone-ingress token is for: the one asked for,
 * which a zone CP must be itself; a cause in d when there is none. */
static const char *token_zone(struct hy_cp *cp, const char *asked, struct hy_diag *d)
{
    const char *zone = asked ? asked : cp->zone;
    if (!zone || !hy_valid_zone_name(zone))
        hy_diag_add(d, 0, 0, "zone",
                    "required on the global control plane: the zone that "
                    "will accept the token");
    else if (cp->zone && strcmp(zone, cp->zone) != 0)
        hy_diag_add(d, 0, 0, "zone",
                    "this zone (%s) issues tokens for itself only; ask the global control plane "
                    "for zone %s",
                    cp->zone, zone);
    return zone;
}

/* The common end of issuing a dataplane or zone-ingress token: 400 with
 * d's causes, or c (kind, zone, name and the rest set by the caller) given
 * a new jti and a validity from now, signed and answered (500 when that
 * fails). True when issued; c->jti then names it, for the caller's log. */
static bool issue_token(struct hy_cp *cp, struct hy_http_resp *resp, const struct hy_diag *d,
                        struct hy_token_claims *c, int64_t valid_for,
                        char jti[HY_TOKEN_JTI_LEN + 1])
{
    if (d->n) {
        char what[64];
        snprintf(what, sizeof(what), "cannot issue a %s token", hy_token_kind_str(c->kind));
        hy_http_error(resp, 400, "Invalid request", what, d);
        return false;
    }
    char *token = NULL;
    int rc = hy_token_jti_new(jti);
    if (rc == 0) {
        c->jti = jti;
        c->iat = c->nbf = time(NULL);
        c->exp = c->iat + valid_for;
        rc = hy_token_sign(cp->token_key, c, &token);
    }
    if (rc < 0)
        hy_http_error(resp, 500, "Cannot sign", hy_strerror(rc), NULL);
    else
        answer_token(resp, token);
    free(token);
    return rc == 0;
}

static void issue_dataplane_token(struct hy_cp *cp, const struct hy_http_req *req,
                                  struct hy_http_resp *resp)
{
    Hypha__V1__DataplaneTokenRequest *r = (Hypha__V1__DataplaneTokenRequest *)decode_body(
        req, resp, &hypha__v1__dataplane_token_request__descriptor);
    if (!r)
        return;
    struct hy_diag d = {0};
    const char *zone = token_zone(cp, r->zone, &d);
    if (!r->mesh || !hy_valid_name(r->mesh))
        hy_diag_add(&d, 0, 0, "mesh", "required: the Dataplane's mesh");
    if (!r->name || !hy_valid_name(r->name))
        hy_diag_add(&d, 0, 0, "name", "required: the Dataplane's name");
    if (!r->valid_for || r->valid_for->seconds <= 0)
        hy_diag_add(&d, 0, 0, "validFor", "required: a duration of at least 1s, like 24h");
    for (size_t i = 0; i < r->n_tags; i++)
        if (!hy_valid_tag_key(r->tags[i]->key) || !hy_valid_tag_value(r->tags[i]->value))
            hy_diag_add(&d, 0, 0, "tags", "invalid tag %s=%s", r->tags[i]->key,
                        r->tags[i]->value ? r->tags[i]->value : "");
    char jti[HY_TOKEN_JTI_LEN + 1];
    struct hy_token_tag tags[32];
    if (r->n_tags > 32)
        hy_diag_add(&d, 0, 0, "tags", "at most 32 tags");
    for (size_t i = 0; !d.n && i < r->n_tags; i++)
        tags[i] = (struct hy_token_tag){r->tags[i]->key, r->tags[i]->value};
    struct hy_token_claims c = {.kind = HY_TOKEN_KIND_DATAPLANE,
                                .zone = (char *)zone,
                                .mesh = r->mesh,
                                .name = r->name,
                                .tags = tags,
                                .ntags = d.n ? 0 : r->n_tags};
    if (issue_token(cp, resp, &d, &c, d.n ? 0 : r->valid_for->seconds, jti))
        hy_log(HY_LOG_INFO, "tokens",
               "%s issued a dataplane token for %s in mesh %s, zone %s (jti %s, valid %llds)",
               req->peer, r->name, r->mesh, zone, jti, (long long)r->valid_for->seconds);
    hy_diag_fini(&d);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void issue_ingress_token(struct hy_cp *cp, const struct hy_http_req *req,
                                struct hy_http_resp *resp)
{
    Hypha__V1__ZoneIngressTokenRequest *r = (Hypha__V1__ZoneIngressTokenRequest *)decode_body(
        req, resp, &hypha__v1__zone_ingress_token_request__descriptor);
    if (!r)
        return;
    struct hy_diag d = {0};
    const char *zone = token_zone(cp, r->zone, &d);
    if (!r->name || !hy_valid_name(r->name))
        hy_diag_add(&d, 0, 0, "name", "required: the ZoneIngress's name");
    if (!r->valid_for || r->valid_for->seconds <= 0)
        hy_diag_add(&d, 0, 0, "validFor", "required: a duration of at least 1s, like 24h");
    char jti[HY_TOKEN_JTI_LEN + 1];
    struct hy_token_claims c = {
        .kind = HY_TOKEN_KIND_INGRESS, .zone = (char *)zone, .name = r->name};
    if (issue_token(cp, resp, &d, &c, d.n ? 0 : r->valid_for->seconds, jti))
        hy_log(HY_LOG_INFO, "tokens",
               "%s issued a zone-ingress token for %s in zone %s (jti %s, valid %llds)", req->peer,
               r->name, zone, jti, (long long)r->valid_for->seconds);
    hy_diag_fini(&d);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static bool hex_jti(const char *s)
{
    if (!s || strlen(s) != HY_TOKEN_JTI_LEN)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static void revoke_token(struct hy_cp *cp, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    Hypha__V1__TokenRevocationRequest *r = (Hypha__V1__TokenRevocationRequest *)decode_body(
        req, resp, &hypha__v1__token_revocation_request__descriptor);
    if (!r)
        return;
    const char *kind = r->kind ? r->kind : cp->zone ? "dataplane" : "zone";
    struct hy_resource *res = NULL;
    if (!hex_jti(r->jti)) {
        hy_http_error(resp, 400, "Invalid request",
                      "jti must be the 32 lowercase hex characters of the token's jti claim", NULL);
        goto out;
    }
    if (strcmp(kind, "zone") != 0 && strcmp(kind, "dataplane") != 0 &&
        strcmp(kind, "zone-ingress") != 0) {
        hy_http_error(resp, 400, "Invalid request", "kind must be zone, dataplane or zone-ingress",
                      NULL);
        goto out;
    }
    res = hy_resource_new(hy_rtype_by_name("TokenRevocation"));
    if (!res || hy_resource_set_name(res, NULL, r->jti) < 0)
        goto out_nomem;
    Hypha__V1__TokenRevocation *t = (Hypha__V1__TokenRevocation *)res->spec;
    t->kind = strdup(kind);
    t->revoked_at = hy_timestamp_now();
    t->reason = r->reason ? strdup(r->reason) : NULL;
    /* a zone's own revocations are its own: KDS neither sends them up nor
     * lets a snapshot from the global CP remove them */
    if (cp->zone && !(res->origin = strdup(cp->zone)))
        goto out_nomem;
    if (!t->kind || !t->revoked_at)
        goto out_nomem;
    struct hy_store_write w;
    int rc = hy_store_put(cp->store, res, HY_VERSION_ANY, &w);
    if (rc < 0) {
        hy_http_error(resp, 500, "Store error", hy_strerror(rc), NULL);
        goto out;
    }
    resp->status = w.result == HY_STORE_CREATED ? 201 : 200;
    hy_buf_puts(&resp->body, "{}");
    hy_log(HY_LOG_INFO, "tokens", "%s revoked %s token %s", req->peer, kind, r->jti);
    goto out;
out_nomem:
    hy_http_error(resp, 500, "Out of memory", "cannot revoke", NULL);
out:
    hy_resource_free(res);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static const char *reason_code(enum hy_token_reason r)
{
    static const char *const codes[] = {
        [HY_TOKEN_OK] = "ok",
        [HY_TOKEN_MALFORMED] = "malformed",
        [HY_TOKEN_ALG_NOT_ALLOWED] = "alg_not_allowed",
        [HY_TOKEN_UNKNOWN_KID] = "unknown_kid",
        [HY_TOKEN_BAD_SIGNATURE] = "bad_signature",
        [HY_TOKEN_EXPIRED] = "expired",
        [HY_TOKEN_NOT_YET_VALID] = "not_yet_valid",
        [HY_TOKEN_REVOKED] = "revoked",
        [HY_TOKEN_WRONG_KIND] = "wrong_kind",
    };
    return (size_t)r < sizeof(codes) / sizeof(codes[0]) ? codes[r] : "unknown";
}

static void verify(struct hy_cp *cp, const struct hy_http_req *req, struct hy_http_resp *resp,
                   int kind)
{
    /* both verify requests are {token}: one message reads either */
    Hypha__V1__TokenVerifyRequest *r = (Hypha__V1__TokenVerifyRequest *)decode_body(
        req, resp, &hypha__v1__token_verify_request__descriptor);
    if (!r)
        return;
    struct hy_token_claims c = {0};
    struct hy_token_failure why = {0};
    int rc = hy_cp_verify_token(cp, kind, r->token ? r->token : "", &c, &why);
    struct hy_buf *b = &resp->body;
    if (rc == 0) {
        const char *who = kind == HY_TOKEN_KIND_ZONE ? c.zone : c.name;
        hy_buf_printf(b, "{\"valid\":true,\"%s\":", kind == HY_TOKEN_KIND_ZONE ? "zone" : "name");
        hy_codec_json_string(b, who ? who : "", who ? strlen(who) : 0);
        if (kind == HY_TOKEN_KIND_DATAPLANE) {
            hy_buf_puts(b, ",\"mesh\":");
            hy_codec_json_string(b, c.mesh ? c.mesh : "", c.mesh ? strlen(c.mesh) : 0);
        }
        if (kind != HY_TOKEN_KIND_ZONE) {
            hy_buf_puts(b, ",\"zone\":");
            hy_codec_json_string(b, c.zone ? c.zone : "", c.zone ? strlen(c.zone) : 0);
        }
        hy_buf_printf(b, ",\"jti\":\"%s\",\"expires\":%lld}", c.jti, (long long)c.exp);
    } else if (rc == HY_EVERIFY) {
        hy_buf_printf(b,
                      "{\"valid\":false,\"reason\":\"%s\",\"message\":", reason_code(why.reason));
        hy_codec_json_string(b, why.message, strlen(why.message));
        hy_buf_puts(b, "}");
    } else {
        hy_http_error(resp, 500, "Cannot verify", hy_strerror(rc), NULL);
    }
    hy_token_claims_fini(&c);
    protobuf_c_message_free_unpacked(&r->base, NULL);
}

static void verify_zone(struct hy_cp *cp, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    verify(cp, req, resp, HY_TOKEN_KIND_ZONE);
}

static void verify_dataplane(struct hy_cp *cp, const struct hy_http_req *req,
                             struct hy_http_resp *resp)
{
    verify(cp, req, resp, HY_TOKEN_KIND_DATAPLANE);
}

static void verify_ingress(struct hy_cp *cp, const struct hy_http_req *req,
                           struct hy_http_resp *resp)
{
    verify(cp, req, resp, HY_TOKEN_KIND_INGRESS);
}

bool hy_cp_tokens_handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_cp *cp = ud;
    static const struct {
        const char *path;
        bool global_only;
        void (*fn)(struct hy_cp *, const struct hy_http_req *, struct hy_http_resp *);
    } routes[] = {
        {"/tokens/zone", true, issue_zone_token},
        {"/tokens/zone/verify", true, verify_zone},
        {"/tokens/dataplane", false, issue_dataplane_token},
        {"/tokens/dataplane/verify", false, verify_dataplane},
        {"/tokens/zone-ingress", false, issue_ingress_token},
        {"/tokens/zone-ingress/verify", false, verify_ingress},
        {"/tokens/revocations", false, revoke_token},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path, routes[i].path) != 0 || (routes[i].global_only && cp->zone))
            continue;
        snprintf(resp->route, sizeof(resp->route), "%s", routes[i].path);
        if (req->method != HY_HTTP_POST) {
            hy_http_error(resp, 405, "Method not allowed", "only POST is allowed here", NULL);
            return true;
        }
        routes[i].fn(cp, req, resp);
        return true;
    }
    return false;
}
