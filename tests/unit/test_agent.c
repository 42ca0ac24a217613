/* Unit tests of what the two data-plane binaries share (agent/): config
 * snapshots published across threads, the endpoint table the workers
 * share, a side's writes that complete at once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_eps.h"
#include "agent_side.h"
#include "agent_snap.h"
#include "log.h"
#include "poison.h"

/* ----- snapshots across threads ----- */

struct fake_snap {
    struct hy_agent_snap base;
    char version[16];
    char *payload; /* owned: freed with the snapshot */
};

/* fake_of, fake_ref, fake_unref, fake_get */
HY_AGENT_SNAP_TYPE(struct fake_snap, fake)

static atomic_int freed;

static void fake_free(struct hy_agent_snap *s)
{
    struct fake_snap *f = (struct fake_snap *)s;
    free(f->payload);
    free(f);
    atomic_fetch_add(&freed, 1);
}

static struct hy_agent_snap *fake_snap(int n)
{
    struct fake_snap *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->version, sizeof(f->version), "v%d", n);
    f->payload = strdup("payload");
    hy_agent_snap_init(&f->base, fake_free, f->version);
    return &f->base;
}

static struct hy_agent_current shared;
static atomic_bool readers_stop;
static atomic_int readers_reading;

/* A worker's loop: check the generation, take a new snapshot when it
 * moved, read it. */
static void *reader(void *arg)
{
    (void)arg;
    uint64_t mine = 0;
    struct fake_snap *s = NULL;
    unsigned long reads = 0;
    while (!atomic_load(&readers_stop)) {
        if (hy_agent_current_generation(&shared) != mine) {
            fake_unref(s);
            s = fake_get(&shared, &mine);
        }
        if (s && s->base.version[0] == 'v' && !strcmp(s->payload, "payload") && !reads++)
            atomic_fetch_add(&readers_reading, 1);
    }
    fake_unref(s);
    return (void *)reads;
}

static int publishes;

static void count_publish(void *arg)
{
    assert_ptr_equal(arg, &publishes);
    publishes++;
}

static void test_snapshot_publish(void **state)
{
    (void)state;
    atomic_store(&freed, 0);
    hy_agent_current_init(&shared);
    hy_agent_current_on_publish(&shared, count_publish, &publishes);
    uint64_t gen = 7;
    assert_null(hy_agent_current_get(&shared, &gen));
    assert_int_equal(gen, 0);
    assert_int_equal(hy_agent_current_generation(&shared), 0);
    struct hy_agent_snap *a = fake_snap(0);
    hy_agent_current_publish(&shared, hy_agent_snap_ref(a));
    assert_int_equal(publishes, 1);
    assert_int_equal(hy_agent_current_generation(&shared), 1);
    struct hy_agent_snap *got = hy_agent_current_get(&shared, &gen);
    assert_ptr_equal(got, a);
    assert_int_equal(gen, 1);
    assert_int_equal(atomic_load(&a->refs), 3);
    hy_agent_current_publish(&shared, fake_snap(1));
    /* the old one lives on while held */
    assert_int_equal(atomic_load(&a->refs), 2);
    hy_agent_snap_unref(got);
    assert_string_equal(a->version, "v0");
    assert_int_equal(atomic_load(&freed), 0);
    hy_agent_snap_unref(a);
    assert_int_equal(atomic_load(&freed), 1);
    assert_null(hy_agent_snap_ref(NULL));
    hy_agent_snap_unref(NULL);
    assert_null(fake_ref(NULL));
    fake_unref(NULL);
    assert_null(fake_of(NULL));
    hy_agent_current_on_publish(&shared, NULL, &publishes);

    pthread_t t[4];
    atomic_store(&readers_stop, false);
    for (int i = 0; i < 4; i++)
        assert_int_equal(pthread_create(&t[i], NULL, reader, NULL), 0);
    while (atomic_load(&readers_reading) < 4)
        usleep(1000);
    for (int i = 2; i < 2000; i++)
        hy_agent_current_publish(&shared, fake_snap(i));
    atomic_store(&readers_stop, true);
    for (int i = 0; i < 4; i++) {
        void *reads;
        pthread_join(t[i], &reads);
        assert_true((unsigned long)reads > 0);
    }
    assert_int_equal(publishes, 2);
    assert_int_equal(hy_agent_current_generation(&shared), 2000);
    got = hy_agent_current_get(&shared, NULL);
    assert_string_equal(got->version, "v1999");
    hy_agent_snap_unref(got);
    hy_agent_current_fini(&shared);
    assert_int_equal(atomic_load(&freed), 2000);
}

/* ----- endpoints every worker shares ----- */

static struct hy_agent_eps table;

static void *fail_from_another_thread(void *arg)
{
    hy_agent_eps_failed(&table, arg);
    return NULL;
}

static void test_endpoints(void **state)
{
    (void)state;
    char key[HY_AGENT_EP_KEY];
    Hypha__V1__DpEndpoint e = HYPHA__V1__DP_ENDPOINT__INIT;
    e.address = "10.0.0.7";
    e.port = 8080;
    hy_agent_endpoint_key(&e, key, sizeof(key));
    assert_string_equal(key, "10.0.0.7:8080");
    e.address = "fd00::7";
    hy_agent_endpoint_key(&e, key, sizeof(key));
    assert_string_equal(key, "[fd00::7]:8080");
    e.address = NULL;
    hy_agent_endpoint_key(&e, key, sizeof(key));
    assert_string_equal(key, ":8080");

    hy_agent_eps_init(&table);
    uint64_t now = hy_agent_now_ms();
    assert_null(hy_agent_eps_slot(&table, "a:1", false, now)); /* unknown */
    assert_false(hy_agent_ep_avoided(NULL, now));
    /* a failure on one thread is seen by every other, for HY_AGENT_BAD_MS */
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, fail_from_another_thread, "a:1"), 0);
    pthread_join(t, NULL);
    now = hy_agent_now_ms();
    pthread_mutex_lock(&table.lock);
    struct hy_agent_ep *a = hy_agent_eps_slot(&table, "a:1", false, now);
    assert_non_null(a);
    assert_true(hy_agent_ep_avoided(a, now));
    assert_true(a->bad_until <= now + HY_AGENT_BAD_MS);
    assert_false(hy_agent_ep_avoided(a, now + HY_AGENT_BAD_MS + 1));
    /* a healthy endpoint with connections keeps its slot; an unhealthy one
     * is avoided */
    struct hy_agent_ep *b = hy_agent_eps_slot(&table, "b:2", true, now);
    assert_non_null(b);
    assert_ptr_equal(hy_agent_eps_slot(&table, "b:2", true, now), b);
    b->active = 1;
    assert_false(hy_agent_ep_avoided(b, now));
    b->unhealthy = true;
    assert_true(hy_agent_ep_avoided(b, now));
    b->unhealthy = false;
    /* full: nothing more is taken, until a slot's failure expires */
    for (int i = 0; i < HY_AGENT_MAX_EPS - 2; i++) {
        snprintf(key, sizeof(key), "x:%d", i);
        struct hy_agent_ep *x = hy_agent_eps_slot(&table, key, true, now);
        assert_non_null(x);
        x->active = 1;
    }
    assert_null(hy_agent_eps_slot(&table, "late:1", true, now));
    struct hy_agent_ep *late = hy_agent_eps_slot(&table, "late:1", true, a->bad_until);
    assert_ptr_equal(late, a); /* a's failure is over: its slot is free again */
    assert_string_equal(late->key, "late:1");
    assert_int_equal(late->bad_until, 0);
    late->active = 1; /* a slot with nothing to remember would be free again at once */
    assert_non_null(hy_agent_eps_slot(&table, "b:2", false, now));
    pthread_mutex_unlock(&table.lock);
    hy_agent_eps_failed(&table, "full:1"); /* no slot: not remembered */
    pthread_mutex_lock(&table.lock);
    assert_null(hy_agent_eps_slot(&table, "full:1", false, hy_agent_now_ms()));
    pthread_mutex_unlock(&table.lock);
    hy_agent_eps_fini(&table);
}

/* ----- writes the kernel takes at once ----- */

struct pair {
    uv_loop_t loop;
    uv_tcp_t server;
    struct hy_agent_defer defer;
    struct hy_agent_side side; /* the client: written */
    uv_tcp_t peer;             /* its accepted end: read */
    uv_connect_t creq;
    bool connected, accepted;
    size_t got;
    unsigned dones, closed;
    int last_status;
};

static void on_conn(uv_stream_t *srv, int status)
{
    struct pair *p = srv->data;
    assert_int_equal(status, 0);
    uv_tcp_init(&p->loop, &p->peer);
    p->peer.data = p;
    assert_int_equal(uv_accept(srv, (uv_stream_t *)&p->peer), 0);
    p->accepted = true;
}

static void on_connected(uv_connect_t *req, int status)
{
    struct pair *p = req->data;
    assert_int_equal(status, 0);
    p->connected = true;
}

static void on_done(struct hy_agent_side *s, int status)
{
    struct pair *p = s->tcp.data;
    p->dones++;
    p->last_status = status;
}

static void on_peer_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    (void)hint;
    static char b[65536];
    *buf = uv_buf_init(b, sizeof(b));
}

static void on_peer_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)buf;
    struct pair *p = st->data;
    if (n > 0)
        p->got += (size_t)n;
}

static void on_handle_closed(uv_handle_t *h)
{
    struct pair *p = h->data;
    p->closed++;
}

static void pair_open(struct pair *p)
{
    memset(p, 0, sizeof(*p));
    assert_int_equal(uv_loop_init(&p->loop), 0);
    hy_agent_defer_open(&p->defer, &p->loop);
    uv_tcp_init(&p->loop, &p->server);
    p->server.data = p;
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", 0, &sa);
    assert_int_equal(uv_tcp_bind(&p->server, (struct sockaddr *)&sa, 0), 0);
    assert_int_equal(uv_listen((uv_stream_t *)&p->server, 4, on_conn), 0);
    int len = sizeof(sa);
    uv_tcp_getsockname(&p->server, (struct sockaddr *)&sa, &len);
    assert_int_equal(hy_agent_side_init(&p->side, &p->loop, &p->defer), 0);
    p->side.tcp.data = p;
    p->creq.data = p;
    assert_int_equal(uv_tcp_connect(&p->creq, &p->side.tcp, (struct sockaddr *)&sa, on_connected),
                     0);
    while (!p->connected || !p->accepted)
        uv_run(&p->loop, UV_RUN_ONCE);
    uv_read_start((uv_stream_t *)&p->peer, on_peer_alloc, on_peer_read);
}

static void pair_close(struct pair *p)
{
    if (!uv_is_closing((uv_handle_t *)&p->side.tcp))
        hy_agent_side_close(&p->side, on_handle_closed);
    uv_close((uv_handle_t *)&p->peer, on_handle_closed);
    uv_close((uv_handle_t *)&p->server, NULL);
    hy_agent_defer_close(&p->defer);
    uv_run(&p->loop, UV_RUN_DEFAULT);
    assert_int_equal(uv_loop_close(&p->loop), 0);
}

static void test_side_write_at_once(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    /* three small writes: out at once, nothing queued, done not yet run */
    for (int i = 0; i < 3; i++)
        assert_int_equal(hy_agent_side_write(&p.side, "hello", 5, on_done), 0);
    assert_int_equal(hy_agent_side_queued(&p.side), 0);
    assert_int_equal(p.dones, 0);
    /* the loop's next round runs done once for the three */
    while (p.dones == 0 || p.got < 15)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.dones, 1);
    assert_int_equal(p.last_status, 0);
    assert_int_equal(p.got, 15);
    /* a write larger than the socket takes: the rest is queued, done runs
     * when all of it is out */
    size_t big = 16u << 20;
    char *data = calloc(1, big);
    assert_non_null(data);
    p.dones = 0;
    assert_int_equal(hy_agent_side_write(&p.side, data, big, on_done), 0);
    free(data); /* what was not taken is a copy */
    assert_true(hy_agent_side_queued(&p.side) > 0);
    while (p.got < 15 + big)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_true(p.dones >= 1);
    assert_int_equal(hy_agent_side_queued(&p.side), 0);
    pair_close(&p);
}

static void on_shut_done(struct hy_agent_side *s)
{
    struct pair *p = s->tcp.data;
    p->dones += 100;
}

static void on_peer_read_eof(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct pair *p = st->data;
    on_peer_read(st, n, buf);
    if (n == UV_EOF)
        p->closed += 10;
}

static void test_side_shut_at_once(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    uv_read_stop((uv_stream_t *)&p.peer);
    uv_read_start((uv_stream_t *)&p.peer, on_peer_alloc, on_peer_read_eof);
    assert_int_equal(hy_agent_side_write(&p.side, "last", 4, on_done), 0);
    assert_true(hy_agent_side_shut(&p.side, on_shut_done));
    assert_false(hy_agent_side_shut(&p.side, on_shut_done)); /* once */
    assert_int_equal(p.dones, 0);                            /* neither done inside the calls */
    while (p.dones < 101 || p.closed < 10)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.dones, 101); /* the write's done, then the shutdown's, once each */
    assert_true(p.side.shut_done);
    assert_int_equal(p.got, 4); /* the bytes, then EOF */
    pair_close(&p);
}

static void test_side_closed_before_done(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    assert_int_equal(hy_agent_side_write(&p.side, "bye", 3, on_done), 0);
    /* closed before the loop came round: its done never runs (it would
     * see a side whose owner is gone) */
    hy_agent_side_close(&p.side, on_handle_closed);
    while (p.closed < 1)
        uv_run(&p.loop, UV_RUN_ONCE);
    uv_run(&p.loop, UV_RUN_NOWAIT);
    assert_int_equal(p.dones, 0);
    pair_close(&p);
    assert_int_equal(p.dones, 0);
}

/* ----- a read before the loop reports the socket readable ----- */

struct now_read {
    char buf[16];
    ssize_t n;
    unsigned calls;
};

static struct now_read now_got;

static void on_now_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    (void)h;
    assert_true(hint > 0);
    *buf = uv_buf_init(now_got.buf, sizeof(now_got.buf));
}

static void on_now_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    (void)st;
    assert_ptr_equal(buf->base, now_got.buf);
    now_got.n = n;
    now_got.calls++;
}

/* Waits (without the loop) until s's socket has something to read. */
static void wait_readable(struct hy_agent_side *s)
{
    uv_os_fd_t fd;
    assert_int_equal(uv_fileno((uv_handle_t *)&s->tcp, &fd), 0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    assert_int_equal(poll(&pfd, 1, 5000), 1);
}

static void test_side_read_now(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    memset(&now_got, 0, sizeof(now_got));
    /* nothing sent yet: false, and read is not called */
    assert_false(hy_agent_side_read_now(&p.side, on_now_alloc, on_now_read));
    assert_int_equal(now_got.calls, 0);
    /* the peer's bytes, at once, without uv_run */
    uv_buf_t b = uv_buf_init("ping", 4);
    assert_int_equal(uv_try_write((uv_stream_t *)&p.peer, &b, 1), 4);
    wait_readable(&p.side);
    assert_true(hy_agent_side_read_now(&p.side, on_now_alloc, on_now_read));
    assert_int_equal(now_got.calls, 1);
    assert_int_equal(now_got.n, 4);
    assert_memory_equal(now_got.buf, "ping", 4);
    assert_false(hy_agent_side_read_now(&p.side, on_now_alloc, on_now_read));
    /* the peer's FIN: UV_EOF, as libuv reports it */
    uv_os_fd_t pfd;
    assert_int_equal(uv_fileno((uv_handle_t *)&p.peer, &pfd), 0);
    assert_int_equal(shutdown(pfd, SHUT_WR), 0);
    wait_readable(&p.side);
    assert_true(hy_agent_side_read_now(&p.side, on_now_alloc, on_now_read));
    assert_int_equal(now_got.calls, 2);
    assert_int_equal(now_got.n, UV_EOF);
    /* a closing side is not read */
    hy_agent_side_close(&p.side, on_handle_closed);
    assert_false(hy_agent_side_read_now(&p.side, on_now_alloc, on_now_read));
    assert_int_equal(now_got.calls, 2);
    pair_close(&p);
    assert_int_equal(p.closed, 2);
}

static void test_side_without_defer(void **state)
{
    (void)state;
    struct pair p;
    pair_open(&p);
    p.side.defer = NULL; /* queued with uv_write as before */
    assert_int_equal(hy_agent_side_write(&p.side, "queued", 6, on_done), 0);
    while (p.dones == 0 || p.got < 6)
        uv_run(&p.loop, UV_RUN_ONCE);
    assert_int_equal(p.dones, 1);
    pair_close(&p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_snapshot_publish),   cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_side_write_at_once), cmocka_unit_test(test_side_closed_before_done),
        cmocka_unit_test(test_side_shut_at_once),  cmocka_unit_test(test_side_read_now),
        cmocka_unit_test(test_side_without_defer),
    };
    hy_log_threshold = getenv("HY_TEST_LOG") ? HY_LOG_DEBUG : HY_LOG_ERROR + 1;
    if (getenv("HY_TEST_FILTER"))
        cmocka_set_test_filter(getenv("HY_TEST_FILTER"));
    return cmocka_run_group_tests(tests, NULL, NULL);
}
