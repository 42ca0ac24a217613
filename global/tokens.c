/* Zone tokens on the global CP: the signing key in the data dir, issuing
 * (POST /tokens/zone), revocation by jti (POST /tokens/revocations) and
 * the one verify function KDS uses, also reachable as POST
 * /tokens/zone/verify so an operator can ask why a token is refused. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "api.pb-c.h"
#include "ca.pb-c.h"
#include "codec.h"
#include "error.h"
#include "global.h"
#include "log.h"
#include "token.h"
#include "poison.h"

int hy_global_tokens_open(struct hy_global *g)
{
    char path[4096];
    if (hy_cp_path(&g->cp, "token-signing.key", path, sizeof(path)) < 0)
        return HY_ETOOBIG;
    int rc = hy_token_key_load(path, &g->token_key);
    if (rc == 0) {
        hy_log(HY_LOG_INFO, "tokens", "token signing key %s loaded from %s",
               hy_token_key_kid(g->token_key), path);
        return 0;
    }
    if (rc != -ENOENT) {
        hy_log(HY_LOG_ERROR, "tokens", "%s: cannot load the token signing key: %s", path,
               hy_strerror(rc));
        return rc;
    }
    if (!(g->token_key = hy_token_key_generate()))
        return HY_ENOMEM;
    if ((rc = hy_token_key_save(g->token_key, path)) < 0) {
        hy_log(HY_LOG_ERROR, "tokens", "%s: cannot save the token signing key: %s", path,
               hy_strerror(rc));
        return rc;
    }
    hy_log(HY_LOG_INFO, "tokens", "generated token signing key %s in %s",
           hy_token_key_kid(g->token_key), path);
    return 0;
}

void hy_global_tokens_close(struct hy_global *g)
{
    hy_token_key_free(g->token_key);
    g->token_key = NULL;
}

static bool is_revoked(const char *jti, void *arg)
{
    struct hy_global *g = arg;
    struct hy_resource *r = NULL;
    if (hy_store_get(g->cp.store, "TokenRevocation", NULL, jti, &r) < 0)
        return false;
    hy_resource_free(r);
    return true;
}

int hy_global_verify_zone_token(struct hy_global *g, const char *token,
                                struct hy_token_claims *claims, struct hy_token_failure *why)
{
    const struct hy_token_key *keys[] = {g->token_key};
    struct hy_token_policy p = {
        .keys = keys,
        .nkeys = 1,
        .now = time(NULL),
        .kind = HY_TOKEN_KIND_ZONE,
        .revoked = is_revoked,
        .revoked_arg = g,
    };
    return hy_token_verify(token, strlen(token), &p, claims, why);
}

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

static void issue_token(struct hy_global *g, const struct hy_http_req *req,
                        struct hy_http_resp *resp)
{
    Hypha__V1__ZoneTokenRequest *r = (Hypha__V1__ZoneTokenRequest *)decode_body(
        req, resp, &hypha__v1__zone_token_request__descriptor);
    if (!r)
        return;
    struct hy_diag d = {0};
    if (!r->zone || !hy_valid_name(r->zone))
        hy_diag_add(&d, 0, 0, "zone", "required: a zone name (lowercase letters, digits, '-')");
    if (!r->valid_for || r->valid_for->seconds <= 0)
        hy_diag_add(&d, 0, 0, "validFor", "required: a duration of at least 1s, like 720h");
    char *token = NULL, jti[HY_TOKEN_JTI_LEN + 1];
    int rc;
    if (d.n) {
        hy_http_error(resp, 400, "Invalid request", "cannot issue a zone token", &d);
    } else if ((rc = hy_token_sign_zone(g->token_key, r->zone, time(NULL), r->valid_for->seconds,
                                        &token, jti)) < 0) {
        hy_http_error(resp, 500, "Cannot sign", hy_strerror(rc), NULL);
    } else {
        resp->content_type = "text/plain";
        hy_buf_puts(&resp->body, token);
        hy_log(HY_LOG_INFO, "tokens", "%s issued a zone token for %s (jti %s, valid %llds)",
               req->peer, r->zone, jti, (long long)r->valid_for->seconds);
    }
    free(token);
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

static void revoke_token(struct hy_global *g, const struct hy_http_req *req,
                         struct hy_http_resp *resp)
{
    Hypha__V1__TokenRevocationRequest *r = (Hypha__V1__TokenRevocationRequest *)decode_body(
        req, resp, &hypha__v1__token_revocation_request__descriptor);
    if (!r)
        return;
    const char *kind = r->kind ? r->kind : "zone";
    struct hy_resource *res = NULL;
    if (!hex_jti(r->jti)) {
        hy_http_error(resp, 400, "Invalid request",
                      "jti must be the 32 lowercase hex characters of the token's jti claim", NULL);
        goto out;
    }
    if (strcmp(kind, "zone") != 0 && strcmp(kind, "dataplane") != 0) {
        hy_http_error(resp, 400, "Invalid request", "kind must be zone or dataplane", NULL);
        goto out;
    }
    res = hy_resource_new(hy_rtype_by_name("TokenRevocation"));
    if (!res || hy_resource_set_name(res, NULL, r->jti) < 0)
        goto out_nomem;
    Hypha__V1__TokenRevocation *t = (Hypha__V1__TokenRevocation *)res->spec;
    t->kind = strdup(kind);
    t->revoked_at = hy_timestamp_now();
    t->reason = r->reason ? strdup(r->reason) : NULL;
    if (!t->kind || !t->revoked_at)
        goto out_nomem;
    struct hy_store_write w;
    int rc = hy_store_put(g->cp.store, res, HY_VERSION_ANY, &w);
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

static void verify_token(struct hy_global *g, const struct hy_http_req *req,
                         struct hy_http_resp *resp)
{
    Hypha__V1__TokenVerifyRequest *r = (Hypha__V1__TokenVerifyRequest *)decode_body(
        req, resp, &hypha__v1__token_verify_request__descriptor);
    if (!r)
        return;
    struct hy_token_claims c = {0};
    struct hy_token_failure why = {0};
    int rc = hy_global_verify_zone_token(g, r->token ? r->token : "", &c, &why);
    struct hy_buf *b = &resp->body;
    if (rc == 0) {
        hy_buf_puts(b, "{\"valid\":true,\"zone\":");
        hy_codec_json_string(b, c.zone, strlen(c.zone));
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

bool hy_global_tokens_handle(void *ud, const struct hy_http_req *req, struct hy_http_resp *resp)
{
    struct hy_global *g = ud;
    static const struct {
        const char *path;
        void (*fn)(struct hy_global *, const struct hy_http_req *, struct hy_http_resp *);
    } routes[] = {
        {"/tokens/zone", issue_token},
        {"/tokens/revocations", revoke_token},
        {"/tokens/zone/verify", verify_token},
    };
    for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
        if (strcmp(req->path, routes[i].path) != 0)
            continue;
        snprintf(resp->route, sizeof(resp->route), "%s", routes[i].path);
        if (req->method != HY_HTTP_POST) {
            hy_http_error(resp, 405, "Method not allowed", "only POST is allowed here", NULL);
            return true;
        }
        routes[i].fn(g, req, resp);
        return true;
    }
    return false;
}
