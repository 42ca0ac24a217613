/* Inbound connections: mTLS from a peer sidecar, its identity (SPIFFE ID
 * and tags, from its certificate) checked against the inbound's
 * MeshTrafficPermission entries and rules, then plain TCP to the local
 * app. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "metrics.h"
#include "proxy_int.h"
#include "poison.h"

void hy_px_peer_add_uri(struct hy_px_peer *p, const char *uri)
{
    if (strncmp(uri, "kuma://", 7) != 0 || p->n == HY_PX_PEER_TAGS)
        return;
    const char *body = uri + 7, *slash = strrchr(body, '/');
    size_t klen = slash ? (size_t)(slash - body) : 0;
    if (!klen || klen + strlen(slash) + 1 > sizeof(p->buf) - p->used)
        return;
    char *key = p->buf + p->used, *value = key + klen + 1;
    memcpy(key, body, klen);
    key[klen] = '\0';
    char *o = value;
    for (const char *s = slash + 1; *s; s++) {
        if (s[0] == '%' && s[1] == '2' && (s[2] == 'F' || s[2] == 'f')) {
            *o++ = '/';
            s += 2;
        } else {
            *o++ = *s;
        }
    }
    *o++ = '\0';
    p->used = (size_t)(o - p->buf);
    p->key[p->n] = key;
    p->value[p->n++] = value;
}

static bool peer_has(const struct hy_px_peer *p, const char *key, const char *value)
{
    for (size_t i = 0; i < p->n; i++)
        if (!strcmp(p->key[i], key) && !strcmp(p->value[i], value))
            return true;
    return false;
}

/* Does the caller carry every tag of a permission (none: any caller)? */
static bool permits_caller(const Hypha__V1__DpPermission *perm, const struct hy_px_peer *peer)
{
    for (size_t i = 0; i < perm->n_tags; i++)
        if (!perm->tags[i]->key || !perm->tags[i]->value ||
            !peer_has(peer, perm->tags[i]->key, perm->tags[i]->value))
            return false;
    return true;
}

static const Hypha__V1__DpSpiffeMatch *id_matches(Hypha__V1__DpSpiffeMatch *const *v, size_t n,
                                                  const char *id)
{
    for (size_t i = 0; i < n; i++) {
        const char *want = v[i]->value ? v[i]->value : "";
        if (v[i]->prefix ? !strncmp(id, want, strlen(want)) : !strcmp(id, want))
            return v[i];
    }
    return NULL;
}

static void shadow(struct hy_px_conn *c, const char *origin)
{
    hy_series_inc(c->m->shadow_denied);
    hy_log(HY_LOG_INFO, "dp", "inbound %u: %s would be denied by %s (AllowWithShadowDeny): let in",
           c->l->port, c->id, origin ? origin : "MeshTrafficPermission");
}

void hy_px_inbound_accept(struct hy_px_conn *c)
{
    const Hypha__V1__DpConfig *cf = c->snap ? c->snap->config : NULL;
    for (size_t i = 0; cf && i < cf->n_inbounds; i++)
        if (cf->inbounds[i]->port == c->l->port)
            c->in = cf->inbounds[i];
    if (!c->in) {
        hy_px_conn_close(c, "no_config", "no inbound on this port in the current config");
        return;
    }
    if (hy_px_tls_start(c, c->w->tls.server, NULL) < 0) {
        hy_px_conn_close(c, "error", NULL);
        return;
    }
    hy_px_conn_handshake(c);
}

static void on_app_connected(struct hy_px_conn *c, int status)
{
    if (status < 0) {
        hy_px_conn_close(c, "upstream_failed", "cannot connect to the app at %s: %s", c->endpoint,
                         uv_strerror(status));
        return;
    }
    hy_series_observe(c->m->connect_s[c->dir],
                      (double)(uv_now(&c->w->loop) - c->connect_start_ms) / 1000.0);
    hy_px_conn_relay(c);
}

const char *hy_px_inbound_refusal(struct hy_px_conn *c, const struct hy_px_peer *peer)
{
    const Hypha__V1__DpInbound *in = c->in;
    char mesh[256], prefix[300];
    hy_px_mesh(c->snap, mesh, sizeof(mesh));
    snprintf(prefix, sizeof(prefix), "spiffe://%s/", mesh);
    if (!in)
        return "no inbound on this port in the current config";
    if (!c->id[0])
        return "the peer's certificate has no SPIFFE ID";
    if (strncmp(c->id, prefix, strlen(prefix)) != 0)
        return "the peer is not in this mesh";
    const Hypha__V1__DpSpiffeMatch *m = id_matches(in->deny, in->n_deny, c->id);
    if (m)
        return m->origin ? m->origin : "a MeshTrafficPermission deny rule";
    /* the last `from` entry the caller matches decides */
    const Hypha__V1__DpPermission *last = NULL;
    for (size_t i = in->n_permissions; i-- > 0 && !last;)
        if (permits_caller(in->permissions[i], peer))
            last = in->permissions[i];
    if (last && last->action == HYPHA__V1__DP_PERMISSION__ACTION__Deny)
        return last->origin ? last->origin : "a MeshTrafficPermission Deny";
    if (last && last->action == HYPHA__V1__DP_PERMISSION__ACTION__Allow)
        return NULL;
    if (id_matches(in->allow, in->n_allow, c->id))
        return NULL;
    if (last) { /* AllowWithShadowDeny */
        shadow(c, last->origin);
        return NULL;
    }
    if ((m = id_matches(in->allow_with_shadow_deny, in->n_allow_with_shadow_deny, c->id))) {
        shadow(c, m->origin);
        return NULL;
    }
    return "no MeshTrafficPermission allows this caller";
}

void hy_px_inbound_denied(struct hy_px_conn *c, const char *why)
{
    hy_series_inc(c->m->denied);
    hy_px_conn_close(c, "denied", "%s", why);
}

void hy_px_inbound_handshake_done(struct hy_px_conn *c)
{
    const Hypha__V1__DpInbound *in = c->in;
    /* the verify callback checked this already; checked again here on the
     * certificate the session kept, should the callback not have run */
    const char *why = c->peer_allowed ? NULL : hy_px_tls_peer_refusal(c);
    if (why) {
        hy_px_tls_close_notify(c);
        hy_px_inbound_denied(c, why);
        return;
    }
    const char *host =
        in->service_address && in->service_address[0] ? in->service_address : "127.0.0.1";
    int rc = hy_px_conn_connect(c, host, in->service_port, HY_PX_CONNECT_MS, on_app_connected);
    if (rc < 0)
        hy_px_conn_close(c, "upstream_failed", "cannot connect to the app at %s: %s", c->endpoint,
                         uv_strerror(rc));
}
