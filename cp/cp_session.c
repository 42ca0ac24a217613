/* The websocket session layer the KDS and DP servers share (cp_session.h):
 * listener, session list, admission, token liveness, store watch, sending,
 * Reject-and-close and their metrics. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cp.h"
#include "cp_session.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "store_uv.h"
#include "poison.h"

struct hy_cp_session_server {
    struct hy_cp_session_config cfg;
    struct hy_cp *cp;
    const struct hy_cp_session_ops *ops;
    struct hy_ws_server *ws;
    struct hy_cp_session *sessions;
    struct hy_store_uv_watch watch;
    bool watching;
    uint64_t seen;     /* store revision on_store_change last read up to */
    uv_timer_t expiry; /* the earliest token expiry among the sessions */
    bool expiry_init;
    struct hy_series *closed_revoked, *closed_expired;   /* sessions closed: token no longer live */
    struct hy_series *refused_hello, *refused_unauth[3]; /* Hellos refused; ws limits (below) */
    struct hy_ws_server_stats synced;                    /* ws stats already counted */
};

const char *hy_cp_session_clean(const char *v, char *buf, size_t size)
{
    size_t n = 0;
    if (!size)
        return buf;
    for (; v && *v && n + 1 < size; v++)
        buf[n++] = (unsigned char)*v >= 0x20 && (unsigned char)*v < 0x7f ? *v : '?';
    buf[n] = '\0';
    return buf;
}

/* ----- sending and closing ----- */

/* A peer that lets its queue fill is closed. */
static int sent(struct hy_cp_session *s, int rc)
{
    if (rc == -ENOBUFS) {
        char name[300];
        hy_log(HY_LOG_WARN, s->srv->cfg.component, "%s: send queue full (a slow peer): closing",
               s->srv->ops->name(s, name, sizeof(name)));
        hy_ws_close(s->conn, HY_WS_CLOSE_POLICY, "send queue full");
        s->closing = true;
    }
    return rc;
}

int hy_cp_session_send(struct hy_cp_session *s, const ProtobufCMessage *m, size_t *len)
{
    return sent(s, hy_ws_send_msg(s->conn, m, len));
}

int hy_cp_session_send_packed(struct hy_cp_session *s, const void *data, size_t len)
{
    return sent(s, hy_ws_send(s->conn, data, len));
}

void hy_cp_session_reject(struct hy_cp_session *s, const char *reason)
{
    if (!s->admitted)
        hy_series_inc(s->srv->refused_hello);
    s->srv->ops->send_reject(s, reason);
    char short_reason[120];
    snprintf(short_reason, sizeof(short_reason), "%s", reason);
    hy_ws_close(s->conn, HY_WS_CLOSE_POLICY, short_reason);
    s->closing = true;
}

/* ----- the token's liveness ----- */

static void arm_expiry(struct hy_cp_session_server *srv);

bool hy_cp_session_live(struct hy_cp_session *s)
{
    char why[200];
    if (hy_cp_token_live(s->srv->cp, s->jti, s->exp, why, sizeof(why)))
        return true;
    bool expired = s->exp > 0 && (int64_t)time(NULL) >= s->exp;
    hy_series_inc(expired ? s->srv->closed_expired : s->srv->closed_revoked);
    s->srv->ops->token_dead(s, why);
    return false;
}

/* Every admitted session whose token was revoked or expired is ended. */
static void check_tokens(struct hy_cp_session_server *srv)
{
    for (struct hy_cp_session *s = srv->sessions; s; s = s->next)
        if (s->admitted && !s->closing)
            hy_cp_session_live(s);
    arm_expiry(srv);
}

static void on_expiry(uv_timer_t *t)
{
    check_tokens(t->data);
}

static int64_t wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Arms the timer for the earliest expiry of a live session (just past it:
 * hy_cp_token_live counts whole seconds). */
static void arm_expiry(struct hy_cp_session_server *srv)
{
    int64_t first = 0;
    if (!srv->expiry_init)
        return;
    for (struct hy_cp_session *s = srv->sessions; s; s = s->next)
        if (s->admitted && !s->closing && s->exp > 0 && (!first || s->exp < first))
            first = s->exp;
    if (!first) {
        uv_timer_stop(&srv->expiry);
        return;
    }
    int64_t delay = first * 1000 - wall_ms() + 20;
    uv_timer_start(&srv->expiry, on_expiry, delay > 0 ? (uint64_t)delay : 0, 0);
}

void hy_cp_session_admit(struct hy_cp_session *s, const struct hy_token_claims *claims)
{
    snprintf(s->jti, sizeof(s->jti), "%s", claims->jti ? claims->jti : "");
    s->exp = claims->exp;
    s->admitted = true;
    hy_ws_conn_authenticated(s->conn);
    arm_expiry(s->srv);
}

/* Only a TokenRevocation revokes: other writes leave every token as it
 * was. Unsure (the change log compacted, an error): check them all. */
static void on_store_change(struct hy_store_uv_watch *w, uint64_t revision)
{
    struct hy_cp_session_server *srv = w->data;
    struct hy_store_changes ch = {0};
    bool known = hy_store_changes(srv->cp->store, srv->seen, 0, &ch) == 0;
    bool revoked = !known;
    for (size_t i = 0; known && i < ch.n && !revoked; i++)
        revoked = !strcmp(ch.v[i].type, "TokenRevocation");
    srv->seen = revision;
    if (revoked) /* before the server acts: a revoked session gets nothing more */
        check_tokens(srv);
    if (srv->ops->on_store_change)
        srv->ops->on_store_change(srv->cfg.ud, known ? &ch : NULL);
    if (known)
        hy_store_changes_fini(&ch);
}

/* ----- the session list ----- */

static void on_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    struct hy_cp_session_server *srv = ud;
    struct hy_cp_session *s = calloc(1, srv->ops->size);
    if (!s) {
        hy_ws_close(c, HY_WS_CLOSE_INTERNAL, "out of memory");
        return;
    }
    s->srv = srv;
    s->conn = c;
    s->ud = srv->cfg.ud;
    s->next = srv->sessions;
    srv->sessions = s;
    hy_ws_conn_set_user(c, s);
    hy_log(HY_LOG_DEBUG, srv->cfg.component, "connection from %s", peer);
}

static void on_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct hy_cp_session_server *srv = ud;
    struct hy_cp_session *s = hy_ws_conn_user(c);
    if (s && !s->closing)
        srv->ops->on_message(s, data, len);
}

static void session_free(struct hy_cp_session_server *srv, struct hy_cp_session *s)
{
    if (srv->ops->fini)
        srv->ops->fini(s);
    free(s);
}

static void on_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct hy_cp_session_server *srv = ud;
    struct hy_cp_session *s = hy_ws_conn_user(c);
    if (!s)
        return;
    if (srv->ops->on_close)
        srv->ops->on_close(s, code, reason);
    for (struct hy_cp_session **p = &srv->sessions; *p; p = &(*p)->next)
        if (*p == s) {
            *p = s->next;
            break;
        }
    hy_ws_conn_set_user(c, NULL);
    session_free(srv, s);
}

struct hy_cp_session *hy_cp_session_first(const struct hy_cp_session_server *srv)
{
    return srv->sessions;
}

struct hy_cp_session *hy_cp_session_find(const struct hy_cp_session_server *srv,
                                         const struct hy_cp_session *except,
                                         bool (*match)(const struct hy_cp_session *s, void *ud),
                                         void *ud)
{
    for (struct hy_cp_session *s = srv->sessions; s; s = s->next)
        if (s != except && s->admitted && !s->closing && match(s, ud))
            return s;
    return NULL;
}

/* ----- metrics ----- */

/* The websocket layer's pre-Hello refusals, as counters: called at every
 * render, before the counter families registered after it are written, it
 * adds what happened since the last call. */
static double unauthenticated(void *ud)
{
    struct hy_cp_session_server *srv = ud;
    struct hy_ws_server_stats now;
    hy_ws_server_stats(srv->ws, &now);
    hy_series_add(srv->refused_unauth[0],
                  (double)(now.unauth_refused - srv->synced.unauth_refused));
    hy_series_add(srv->refused_unauth[1],
                  (double)(now.hello_timeouts - srv->synced.hello_timeouts));
    hy_series_add(srv->refused_unauth[2],
                  (double)(now.unauth_too_big - srv->synced.unauth_too_big));
    srv->synced = now;
    return (double)now.unauth;
}

static int metrics_init(struct hy_cp_session_server *srv)
{
    struct hy_metrics *m = srv->cp->metrics;
    const char *pre = srv->cfg.metric_prefix, *proto = srv->cfg.protocol;
    char name[4][120], help[4][300];
    snprintf(name[0], sizeof(name[0]), "%s_unauthenticated_connections", pre);
    snprintf(help[0], sizeof(help[0]), "%s connections open and waiting for an accepted Hello",
             proto);
    snprintf(name[1], sizeof(name[1]), "%s_sessions_closed_total", pre);
    snprintf(help[1], sizeof(help[1]),
             "%s sessions closed because their token stopped being valid (revoked, expired)",
             srv->cfg.peers);
    snprintf(name[2], sizeof(name[2]), "%s_hellos_refused_total", pre);
    snprintf(help[2], sizeof(help[2]),
             "%s connections refused before admission (invalid message or resource, bad token)",
             proto);
    snprintf(name[3], sizeof(name[3]), "%s_unauthenticated_closed_total", pre);
    snprintf(help[3], sizeof(help[3]),
             "%s connections closed by the pre-Hello limits: too_many (cap on connections "
             "waiting for Hello), hello_timeout, too_big (message)",
             proto);
    /* the gauge first: rendering calls it before the counters after it */
    if (!hy_metric_gauge_fn(m, name[0], help[0], unauthenticated, srv))
        return HY_ENOMEM;
    struct hy_metric *closed = hy_metric_counter(m, name[1], help[1], 1, "reason");
    struct hy_metric *hello = hy_metric_counter(m, name[2], help[2], 0);
    struct hy_metric *unauth = hy_metric_counter(m, name[3], help[3], 1, "reason");
    if (!closed || !hello || !unauth)
        return HY_ENOMEM;
    srv->closed_revoked = hy_metric_series(closed, "token_revoked");
    srv->closed_expired = hy_metric_series(closed, "token_expired");
    srv->refused_hello = hy_metric_series(hello);
    srv->refused_unauth[0] = hy_metric_series(unauth, "too_many");
    srv->refused_unauth[1] = hy_metric_series(unauth, "hello_timeout");
    srv->refused_unauth[2] = hy_metric_series(unauth, "too_big");
    return 0;
}

/* ----- lifecycle ----- */

int hy_cp_session_server_new(const struct hy_cp_session_config *cfg,
                             struct hy_cp_session_server **out)
{
    struct hy_cp_session_server *srv = calloc(1, sizeof(*srv));
    if (!srv)
        return HY_ENOMEM;
    srv->cfg = *cfg;
    srv->cp = cfg->cp;
    srv->ops = cfg->ops;
    int rc = metrics_init(srv);
    if (rc < 0) {
        free(srv);
        return rc;
    }
    *out = srv;
    return 0;
}

int hy_cp_session_server_start(struct hy_cp_session_server *srv)
{
    const struct hy_cp_session_config *cfg = &srv->cfg;
    struct hy_cp *cp = srv->cp;
    char cert[4200], key[4200], addr[300];
    int rc = hy_cp_server_cert(cp, cfg->component, cfg->what, cfg->hint, cfg->tls_cert,
                               cfg->tls_key, cfg->address, cert, key, sizeof(cert));
    if (rc < 0)
        return rc;
    struct hy_ws_server_config wc = {
        .loop = cp->loop,
        .address = hy_addr_format(cfg->address, addr, sizeof(addr)),
        .tls_cert = cert,
        .tls_key = key,
        .subprotocol = cfg->subprotocol,
        .limits = cfg->limits,
        .cb = {on_open, on_message, on_close},
        .ud = srv,
    };
    if ((rc = hy_ws_server_new(&wc, &srv->ws)) < 0)
        return rc;
    srv->watch.data = srv;
    srv->seen = hy_store_revision(cp->store);
    if ((rc = hy_store_uv_watch_start(cp->loop, cp->store, &srv->watch, on_store_change)) < 0)
        return rc;
    srv->watching = true;
    uv_timer_init(cp->loop, &srv->expiry);
    srv->expiry.data = srv;
    srv->expiry_init = true;
    struct hy_addr bound = *cfg->address;
    bound.port = (uint16_t)hy_ws_server_port(srv->ws);
    hy_log(HY_LOG_INFO, cfg->component, "%s listening on wss://%s", cfg->what,
           hy_addr_format(&bound, addr, sizeof(addr)));
    return 0;
}

void hy_cp_session_server_stop(struct hy_cp_session_server *srv)
{
    if (!srv)
        return;
    hy_ws_server_stop(srv->ws);
    if (srv->watching)
        hy_store_uv_watch_stop(&srv->watch, NULL);
    srv->watching = false;
    if (srv->expiry_init)
        uv_close((uv_handle_t *)&srv->expiry, NULL);
    srv->expiry_init = false;
}

void hy_cp_session_server_free(struct hy_cp_session_server *srv)
{
    if (!srv)
        return;
    hy_ws_server_free(srv->ws);
    while (srv->sessions) {
        struct hy_cp_session *s = srv->sessions;
        srv->sessions = s->next;
        session_free(srv, s);
    }
    free(srv);
}

int hy_cp_session_server_port(const struct hy_cp_session_server *srv)
{
    return srv && srv->ws ? hy_ws_server_port(srv->ws) : 0;
}
