/* Unit tests of the websocket session layer (cp/cp_session.c) on a real
 * control-plane base (store, metrics, data dir) and a real wss client on
 * one loop: Reject-and-close before admission, the expiry timer and the
 * revocation watch ending admitted sessions, what they count, and the
 * session list's open, find and close. */
#include <ftw.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "cp.h"
#include "cp_session.h"
#include "error.h"
#include "kds.pb-c.h"
#include "store_uv.h"
#include "ca.pb-c.h"
#include "poison.h"

#define JTI_EXP "0123456789abcdef0123456789abcdef"
#define JTI_REV "fedcba9876543210fedcba9876543210"

/* What the server side (the ops below) saw. */
struct seen {
    int opens_admitted, closes, finis, dead, changes, revocations_seen;
    int dead_at_revocation; /* dead when the server heard of the TokenRevocation */
    char why[200];
    bool live;  /* hy_cp_session_live at "live?" */
    bool found; /* hy_cp_session_find at "live?" */
};

/* What the client saw. */
struct peer {
    struct hy_ws_client *cli;
    bool open;
    int closes, code;
    char reason[130];
    char rejected[200]; /* the Reject's reason */
};

struct fx {
    char dir[64];
    uv_loop_t loop;
    struct hy_cp_cfg cfg;
    struct hy_cp cp;
    struct hy_addr addr;
    struct hy_cp_session_server *srv;
    struct seen seen;
    struct peer peer;
};

/* a server session: the layer's part first */
struct tsession {
    struct hy_cp_session base;
    char *note; /* something to free (fini) */
};

static struct fx *fx; /* the ops reach the fixture through here */

static int64_t now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static bool run_until(bool (*done)(void), int timeout_ms)
{
    int64_t end = now_ms() + timeout_ms;
    while (!done() && now_ms() < end)
        uv_run(&fx->loop, UV_RUN_NOWAIT), uv_sleep(2);
    return done();
}

/* ----- the server's ops ----- */

static void admit(struct hy_cp_session *s, const char *jti, int64_t exp)
{
    struct hy_token_claims c = {.jti = (char *)jti, .exp = exp};
    hy_cp_session_admit(s, &c);
}

static bool any(const struct hy_cp_session *s, void *ud)
{
    (void)s;
    (void)ud;
    return true;
}

static void t_message(struct hy_cp_session *s, const uint8_t *data, size_t len)
{
    char m[32];
    snprintf(m, sizeof(m), "%.*s", (int)len, (const char *)data);
    if (!strcmp(m, "hello-exp")) {
        admit(s, JTI_EXP, (int64_t)time(NULL) + 1);
        fx->seen.opens_admitted++;
    } else if (!strcmp(m, "hello")) {
        admit(s, JTI_REV, 0);
        fx->seen.opens_admitted++;
    } else if (!strcmp(m, "live?")) {
        fx->seen.live = hy_cp_session_live(s);
        fx->seen.found = hy_cp_session_find(s->srv, NULL, any, NULL) == s &&
                         !hy_cp_session_find(s->srv, s, any, NULL);
    } else {
        hy_cp_session_reject(s, "no thanks");
    }
}

static void t_close(struct hy_cp_session *s, int code, const char *reason)
{
    (void)s;
    (void)code;
    (void)reason;
    fx->seen.closes++;
}

static void t_fini(struct hy_cp_session *s)
{
    free(((struct tsession *)s)->note);
    fx->seen.finis++;
}

static void t_send_reject(struct hy_cp_session *s, const char *reason)
{
    Hypha__V1__Reject r = HYPHA__V1__REJECT__INIT;
    Hypha__V1__KdsMessage m = HYPHA__V1__KDS_MESSAGE__INIT;
    r.reason = (char *)reason;
    m.msg_case = HYPHA__V1__KDS_MESSAGE__MSG_REJECT;
    m.reject = &r;
    hy_cp_session_send(s, &m.base, NULL);
}

static void t_token_dead(struct hy_cp_session *s, const char *why)
{
    fx->seen.dead++;
    snprintf(fx->seen.why, sizeof(fx->seen.why), "%s", why);
    hy_cp_session_reject(s, why);
}

static void t_store_change(void *ud, const struct hy_store_changes *ch)
{
    assert_ptr_equal(ud, fx);
    fx->seen.changes++;
    for (size_t i = 0; ch && i < ch->n; i++)
        if (!strcmp(ch->v[i].type, "TokenRevocation")) {
            fx->seen.revocations_seen++;
            fx->seen.dead_at_revocation = fx->seen.dead;
        }
}

static const char *t_name(struct hy_cp_session *s, char *buf, size_t size)
{
    (void)s;
    snprintf(buf, size, "test peer");
    return buf;
}

static const struct hy_cp_session_ops ops = {
    .size = sizeof(struct tsession),
    .on_message = t_message,
    .on_close = t_close,
    .fini = t_fini,
    .send_reject = t_send_reject,
    .token_dead = t_token_dead,
    .on_store_change = t_store_change,
    .name = t_name,
};

/* ----- the client ----- */

static void c_open(void *ud, struct hy_ws_conn *c, const char *peer)
{
    (void)c;
    (void)peer;
    ((struct peer *)ud)->open = true;
}

static void c_message(void *ud, struct hy_ws_conn *c, const uint8_t *data, size_t len)
{
    struct peer *p = ud;
    (void)c;
    Hypha__V1__KdsMessage *m = hypha__v1__kds_message__unpack(NULL, len, data);
    assert_non_null(m);
    if (m->msg_case == HYPHA__V1__KDS_MESSAGE__MSG_REJECT)
        snprintf(p->rejected, sizeof(p->rejected), "%s", m->reject->reason);
    hypha__v1__kds_message__free_unpacked(m, NULL);
}

static void c_close(void *ud, struct hy_ws_conn *c, int code, const char *reason)
{
    struct peer *p = ud;
    (void)c;
    p->open = false;
    p->closes++;
    p->code = code;
    snprintf(p->reason, sizeof(p->reason), "%s", reason);
    hy_ws_client_stop(p->cli); /* one connection per test */
}

static void send_text(const char *m)
{
    assert_int_equal(hy_ws_send(hy_ws_client_conn(fx->peer.cli), m, strlen(m)), 0);
}

static bool peer_open(void)
{
    return fx->peer.open;
}

static bool peer_closed(void)
{
    return fx->peer.closes > 0 && fx->seen.finis > 0;
}

static bool admitted(void)
{
    return fx->seen.opens_admitted > 0;
}

/* The rendered metrics hold line. */
static bool metric(const char *line)
{
    struct hy_buf b = {0};
    assert_int_equal(hy_metrics_render(fx->cp.metrics, &b), 0);
    bool has = b.data && strstr(b.data, line);
    if (!has)
        fprintf(stderr, "no \"%s\" in:\n%s\n", line, b.data ? b.data : "");
    hy_buf_fini(&b);
    return has;
}

/* ----- fixture ----- */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int setup(void **state)
{
    fx = calloc(1, sizeof(*fx));
    snprintf(fx->dir, sizeof(fx->dir), "/tmp/hy-test-cp-session-XXXXXX");
    if (!mkdtemp(fx->dir) || uv_loop_init(&fx->loop) != 0)
        return -1;
    fx->cfg.data_dir = fx->dir;
    fx->cfg.store_map_size = 64u << 20;
    if (hy_cp_open(&fx->cp, &fx->cfg, "test", &fx->loop) < 0 ||
        hy_addr_parse("127.0.0.1:0", &fx->addr, NULL, 0) < 0)
        return -1;
    struct hy_cp_session_config sc = {
        .cp = &fx->cp,
        .component = "test",
        .what = "test server",
        .hint = "the test trusts anything",
        .address = &fx->addr,
        .subprotocol = HY_KDS_SUBPROTOCOL,
        .metric_prefix = "hypha_test",
        .protocol = "Test",
        .peers = "Test",
        .ops = &ops,
        .ud = fx,
    };
    if (hy_cp_session_server_new(&sc, &fx->srv) < 0 || hy_cp_session_server_start(fx->srv) < 0)
        return -1;
    char url[64];
    snprintf(url, sizeof(url), "wss://127.0.0.1:%d/", hy_cp_session_server_port(fx->srv));
    struct hy_ws_client_config cc = {
        .loop = &fx->loop,
        .url = url,
        .skip_verify = true,
        .subprotocol = HY_KDS_SUBPROTOCOL,
        .cb = {c_open, c_message, c_close},
        .ud = &fx->peer,
    };
    if (hy_ws_client_new(&cc, &fx->peer.cli) < 0)
        return -1;
    *state = fx;
    return run_until(peer_open, 5000) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    hy_ws_client_stop(fx->peer.cli);
    hy_cp_session_server_stop(fx->srv);
    int64_t end = now_ms() + 2000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) && now_ms() < end)
        uv_sleep(2);
    hy_ws_client_free(fx->peer.cli);
    hy_cp_session_server_free(fx->srv);
    end = now_ms() + 2000;
    while (uv_run(&fx->loop, UV_RUN_NOWAIT) && now_ms() < end)
        uv_sleep(2);
    hy_cp_close(&fx->cp);
    int rc = uv_loop_close(&fx->loop);
    nftw(fx->dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    free(fx);
    fx = NULL;
    return rc == 0 ? 0 : -1;
}

/* ----- tests ----- */

static void test_clean(void **state)
{
    (void)state;
    char buf[8];
    assert_string_equal(hy_cp_session_clean("a\nb\x7f", buf, sizeof(buf)), "a?b?");
    assert_string_equal(hy_cp_session_clean("0123456789", buf, sizeof(buf)), "0123456");
    assert_string_equal(hy_cp_session_clean(NULL, buf, sizeof(buf)), "");
}

/* A stranger's bad first message: Reject, 1008, counted as a refused
 * Hello; the session is closed, then freed once. */
static void test_reject_before_admission(void **state)
{
    (void)state;
    assert_true(metric("hypha_test_unauthenticated_connections 1\n"));
    send_text("garbage");
    assert_true(run_until(peer_closed, 5000));
    assert_string_equal(fx->peer.rejected, "no thanks");
    assert_int_equal(fx->peer.code, 1008);
    assert_string_equal(fx->peer.reason, "no thanks");
    assert_int_equal(fx->seen.closes, 1);
    assert_int_equal(fx->seen.finis, 1);
    assert_null(hy_cp_session_first(fx->srv));
    assert_true(metric("hypha_test_hellos_refused_total 1\n"));
    assert_true(metric("hypha_test_unauthenticated_connections 0\n"));
}

/* Admitted with a token that expires in a second: the timer ends it. */
static void test_expiry(void **state)
{
    (void)state;
    send_text("hello-exp");
    assert_true(run_until(admitted, 5000));
    assert_true(metric("hypha_test_unauthenticated_connections 0\n"));
    assert_true(run_until(peer_closed, 4000));
    assert_int_equal(fx->seen.dead, 1);
    assert_non_null(strstr(fx->seen.why, "token expired at"));
    assert_string_equal(fx->peer.rejected, fx->seen.why);
    assert_int_equal(fx->peer.code, 1008);
    assert_true(metric("hypha_test_sessions_closed_total{reason=\"token_expired\"} 1\n"));
    assert_true(metric("hypha_test_hellos_refused_total 0\n")); /* it had been admitted */
}

static bool dead(void)
{
    return fx->seen.dead > 0;
}

static bool live_asked(void)
{
    return fx->seen.live;
}

/* Admitted, found and live; a TokenRevocation for its jti ends it before
 * the server hears of the change. */
static void test_revocation(void **state)
{
    (void)state;
    send_text("hello");
    assert_true(run_until(admitted, 5000));
    send_text("live?");
    assert_true(run_until(live_asked, 5000));
    assert_true(fx->seen.found);
    assert_int_equal(fx->seen.dead, 0);

    struct hy_resource *r = hy_resource_new(hy_rtype_by_name("TokenRevocation"));
    assert_non_null(r);
    assert_int_equal(hy_resource_set_name(r, NULL, JTI_REV), 0);
    Hypha__V1__TokenRevocation *t = (Hypha__V1__TokenRevocation *)r->spec;
    t->kind = strdup("zone");
    struct hy_store_write w;
    assert_int_equal(hy_store_put(fx->cp.store, r, HY_VERSION_ANY, &w), 0);
    hy_resource_free(r);

    assert_true(run_until(dead, 5000));
    assert_non_null(strstr(fx->seen.why, "token " JTI_REV " was revoked"));
    assert_true(fx->seen.changes >= 1);
    assert_int_equal(fx->seen.revocations_seen, 1);
    assert_int_equal(fx->seen.dead_at_revocation, 1);
    assert_true(run_until(peer_closed, 5000));
    assert_string_equal(fx->peer.rejected, fx->seen.why);
    assert_true(metric("hypha_test_sessions_closed_total{reason=\"token_revoked\"} 1\n"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_clean),
        cmocka_unit_test_setup_teardown(test_reject_before_admission, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expiry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
