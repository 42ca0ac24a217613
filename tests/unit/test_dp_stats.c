/* Unit tests of the zone's questions to sidecars for their metrics
 * (zone/dp_stats.c), on a real libuv loop with a short timeout: an answer
 * reaches the question of its id on its session only (an unknown id, or
 * another session's, is dropped and counted), a question nobody answers
 * gets 504, a session that ends answers its own 503, the per-session cap,
 * a failed send, and the zone stopping with questions in flight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "dp_stats.h"
#include "error.h"
#include "metrics.h"
#include "poison.h"

/* A session as the server sees it: what it was sent. */
struct peer {
    struct hy_zone_dp_stats_session ss;
    uint64_t last_id;
    unsigned sent;
    int fail; /* what send returns */
};

static int peer_send(void *to, const void *data, size_t len)
{
    struct peer *p = to;
    if (p->fail)
        return p->fail;
    Hypha__V1__DpMessage *m = hypha__v1__dp_message__unpack(NULL, len, data);
    assert_non_null(m);
    assert_int_equal(m->msg_case, HYPHA__V1__DP_MESSAGE__MSG_STATS_REQUEST);
    assert_true(m->stats_request->has_id);
    p->last_id = m->stats_request->id;
    p->sent++;
    hypha__v1__dp_message__free_unpacked(m, NULL);
    return 0;
}

/* What one question came to. */
struct result {
    int status; /* 0: not yet */
    char text[64], note[200];
    unsigned calls;
};

static void on_done(void *ud, int status, const char *text, size_t len, const char *note)
{
    struct result *r = ud;
    r->calls++;
    r->status = status;
    assert_int_equal(strlen(text), len);
    snprintf(r->text, sizeof(r->text), "%s", text);
    snprintf(r->note, sizeof(r->note), "%s", note ? note : "");
}

struct fixture {
    uv_loop_t loop;
    struct hy_metrics *m;
    struct hy_zone_dp_stats st;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    assert_int_equal(uv_loop_init(&f->loop), 0);
    f->m = hy_metrics_new();
    assert_int_equal(hy_zone_dp_stats_init(&f->st, &f->loop, f->m, 30), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    hy_zone_dp_stats_stop(&f->st);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    hy_metrics_free(f->m);
    free(f);
    return 0;
}

static void answer(struct fixture *f, struct peer *p, uint64_t id, const char *text,
                   const char *error, bool want)
{
    Hypha__V1__DpStats m = HYPHA__V1__DP_STATS__INIT;
    m.has_id = 1;
    m.id = id;
    m.text = (char *)text;
    m.error = (char *)error;
    assert_int_equal(hy_zone_dp_stats_answer(&f->st, &p->ss, &m), want);
}

static void test_answer(void **state)
{
    struct fixture *f = *state;
    struct peer p = {0};
    struct result r = {0};
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &r), 0);
    assert_int_equal(p.sent, 1);
    assert_int_equal(p.ss.n, 1);
    assert_int_equal(r.calls, 0); /* never from within ask */
    answer(f, &p, p.last_id, "hypha_dp_connections_total 3\n", NULL, true);
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.text, "hypha_dp_connections_total 3\n");
    assert_string_equal(r.note, "");
    assert_int_equal(p.ss.n, 0);
    /* the same answer again: nobody waits for it any more */
    answer(f, &p, p.last_id, "again\n", NULL, false);
    assert_int_equal(r.calls, 1);
    assert_true(hy_series_value(f->st.dropped) == 1);
    assert_true(hy_series_value(f->st.ok) == 1);
}

static void test_notes(void **state)
{
    struct fixture *f = *state;
    struct peer p = {0};
    struct result cut = {0}, failed = {0};
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &cut), 0);
    uint64_t first = p.last_id;
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &failed), 0);
    assert_true(p.last_id != first);
    /* answers in any order, each to its own question */
    answer(f, &p, p.last_id, "", "out of memory", true);
    assert_int_equal(failed.status, 502);
    assert_string_equal(failed.note, "out of memory");
    assert_int_equal(cut.calls, 0);
    answer(f, &p, first, "a 1\n", "metrics truncated", true);
    assert_int_equal(cut.status, 200);
    assert_string_equal(cut.text, "a 1\n");
    assert_string_equal(cut.note, "metrics truncated");
}

/* An unknown id, and another session's id, are dropped; the question
 * still waits, and times out with 504. */
static void test_dropped_then_timeout(void **state)
{
    struct fixture *f = *state;
    struct peer p = {0}, other = {0};
    struct result r = {0};
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &r), 0);
    answer(f, &p, p.last_id + 1000, "forged 1\n", NULL, false);
    answer(f, &other, p.last_id, "not yours 1\n", NULL, false);
    Hypha__V1__DpStats noid = HYPHA__V1__DP_STATS__INIT;
    assert_false(hy_zone_dp_stats_answer(&f->st, &p.ss, &noid));
    assert_true(hy_series_value(f->st.dropped) == 3);
    assert_int_equal(r.calls, 0);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* the timer is the only handle: runs until it fired */
    assert_int_equal(r.calls, 1);
    assert_int_equal(r.status, 504);
    assert_non_null(strstr(r.note, "did not answer within 30 ms"));
    assert_int_equal(p.ss.n, 0);
    assert_true(hy_series_value(f->st.timeouts) == 1);
    /* the answer arriving after the timeout is dropped too */
    answer(f, &p, p.last_id, "late 1\n", NULL, false);
    assert_int_equal(r.calls, 1);
}

static void test_cap_and_end(void **state)
{
    struct fixture *f = *state;
    struct peer p = {0}, other = {0};
    struct result r[HY_ZONE_DP_STATS_PER_SESSION + 1] = {{0}}, o = {0};
    for (int i = 0; i < HY_ZONE_DP_STATS_PER_SESSION; i++)
        assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &r[i]), 0);
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done,
                                          &r[HY_ZONE_DP_STATS_PER_SESSION]),
                     HY_EFULL);
    assert_int_equal(p.sent, HY_ZONE_DP_STATS_PER_SESSION);
    assert_true(hy_series_value(f->st.refused) == 1);
    /* another session is not held back by this one */
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &other.ss, peer_send, &other, on_done, &o), 0);
    hy_zone_dp_stats_end(&f->st, &p.ss);
    for (int i = 0; i < HY_ZONE_DP_STATS_PER_SESSION; i++) {
        assert_int_equal(r[i].calls, 1);
        assert_int_equal(r[i].status, 503);
    }
    assert_int_equal(r[HY_ZONE_DP_STATS_PER_SESSION].calls, 0);
    assert_int_equal(o.calls, 0);
    assert_int_equal(p.ss.n, 0);
    answer(f, &other, other.last_id, "x 1\n", NULL, true);
    assert_int_equal(o.status, 200);
}

static void test_send_fails(void **state)
{
    struct fixture *f = *state;
    struct peer p = {.fail = -ENOBUFS};
    struct result r = {0};
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &r), -ENOBUFS);
    assert_int_equal(p.ss.n, 0);
    assert_int_equal(f->st.n, 0);
    assert_int_equal(r.calls, 0);
}

/* The zone stops: every question in flight gets 503, and no more is
 * taken. */
static void test_stop(void **state)
{
    struct fixture *f = *state;
    struct peer p = {0};
    struct result r = {0}, after = {0};
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &r), 0);
    hy_zone_dp_stats_stop(&f->st);
    assert_int_equal(r.status, 503);
    assert_int_equal(hy_zone_dp_stats_ask(&f->st, &p.ss, peer_send, &p, on_done, &after), HY_EFULL);
    assert_int_equal(after.calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_answer, setup, teardown),
        cmocka_unit_test_setup_teardown(test_notes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_dropped_then_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cap_and_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_send_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
