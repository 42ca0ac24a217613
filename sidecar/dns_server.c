/* The sidecar's DNS server (dns.h) on the control loop: UDP and TCP on
 * 127.0.0.1:port (iptables sends the workload's port-53 traffic here).
 * Mesh names are answered from the current config's table; other queries
 * go, as they are, to the host's resolvers one after the other (UDP,
 * HY_DNS_TIMEOUT_MS each) and their answer back to the asker; when none
 * answers, SERVFAIL. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "dp.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "poison.h"

#define RESOLV_CONF "/etc/resolv.conf"
#define RESOLV_RELOAD_MS 5000 /* resolv.conf is read again after this long */
#define TCP_MAX 65537         /* a length and the largest message */

enum { R_LOCAL, R_FORWARDED, R_FAILED, R_MALFORMED, R_N };

struct tconn;

/* A query on its way to the upstreams. */
struct fwd {
    struct hy_dns *d;
    struct fwd *prev, *next;
    uv_udp_t sock;
    uv_timer_t timer;
    unsigned handles;
    bool done;
    size_t up; /* the upstream asked last */
    uint8_t *q;
    size_t qlen;
    struct sockaddr_storage client; /* UDP: who asked */
    struct tconn *tc;               /* TCP: who asked (NULL once it went) */
    bool tcp;                       /* asked over TCP (tc or not) */
    uint8_t buf[65536];
};

/* A TCP client: one query at a time. */
struct tconn {
    struct hy_dns *d;
    struct tconn *prev, *next;
    uv_tcp_t tcp;
    struct fwd *pending;
    bool closing;
    size_t len;
    uint8_t buf[TCP_MAX];
};

struct hy_dns {
    uv_loop_t *loop;
    struct hy_agent_current *current;
    uint64_t gen;
    struct hy_dns_table *table;
    uv_udp_t udp;
    uv_tcp_t tcp;
    bool udp_init, tcp_init, stopping;
    unsigned handles;
    uint16_t port;
    struct hy_series *r[R_N];
    struct sockaddr_storage ups[HY_DNS_MAX_UPSTREAMS];
    size_t nups;
    uint64_t ups_read_ms; /* loop ms resolv.conf was read; 0: never */
    struct fwd *fwds;
    struct tconn *tconns;
    uint8_t ubuf[65536];
};

static const struct hy_dns_table *table(struct hy_dns *d)
{
    if (!d->table || hy_agent_current_generation(d->current) != d->gen) {
        uint64_t gen;
        struct hy_sidecar_snapshot *s = hy_sidecar_snapshot_get(d->current, &gen);
        struct hy_dns_table *t;
        if (hy_dns_table_new(s ? s->config : NULL, &t) == 0) {
            hy_dns_table_free(d->table);
            d->table = t;
            d->gen = gen;
            hy_log(HY_LOG_DEBUG, "dns", "%zu mesh names", hy_dns_table_count(t));
        }
        hy_sidecar_snapshot_unref(s);
    }
    return d->table;
}

static void upstreams(struct hy_dns *d)
{
    uint64_t now = uv_now(d->loop);
    if (d->ups_read_ms && now - d->ups_read_ms < RESOLV_RELOAD_MS)
        return;
    d->ups_read_ms = now ? now : 1;
    char text[8192];
    FILE *f = fopen(RESOLV_CONF, "r");
    size_t n = f ? fread(text, 1, sizeof(text) - 1, f) : 0;
    if (f)
        fclose(f);
    text[n] = '\0';
    d->nups = hy_dns_parse_resolv(text, d->port == 53, d->ups, HY_DNS_MAX_UPSTREAMS);
}

/* ----- answers ----- */

struct usend {
    uv_udp_send_t req;
    uint8_t *data;
};

static void on_usent(uv_udp_send_t *req, int status)
{
    struct usend *u = (struct usend *)req;
    (void)status;
    free(u->data);
    free(u);
}

/* Sends data (taken) to a UDP client. */
static void udp_reply(struct hy_dns *d, const struct sockaddr *to, uint8_t *data, size_t len)
{
    struct usend *u = malloc(sizeof(*u));
    if (!u || d->stopping) {
        free(u);
        free(data);
        return;
    }
    u->data = data;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (uv_udp_send(&u->req, &d->udp, &b, 1, to, on_usent) < 0) {
        free(data);
        free(u);
    }
}

static void tconn_close(struct tconn *tc);
static void tcp_next(struct tconn *tc);

struct tsend {
    uv_write_t req;
    struct tconn *tc;
    uint8_t data[];
};

static void on_tsent(uv_write_t *req, int status)
{
    struct tsend *t = (struct tsend *)req;
    struct tconn *tc = req->data;
    free(t);
    if (status < 0) {
        tconn_close(tc);
        return;
    }
    tcp_next(tc);
}

/* Sends data (taken) to a TCP client, with its length before it. */
static void tcp_reply(struct tconn *tc, uint8_t *data, size_t len)
{
    struct tsend *t = len <= 65535 && !tc->closing ? malloc(sizeof(*t) + len + 2) : NULL;
    if (!t) {
        free(data);
        tconn_close(tc);
        return;
    }
    t->data[0] = (uint8_t)(len >> 8);
    t->data[1] = (uint8_t)len;
    memcpy(t->data + 2, data, len);
    free(data);
    t->req.data = tc;
    uv_buf_t b = uv_buf_init((char *)t->data, (unsigned)len + 2);
    if (uv_write(&t->req, (uv_stream_t *)&tc->tcp, &b, 1, on_tsent) < 0) {
        free(t);
        tconn_close(tc);
    }
}

/* ----- forwarding ----- */

static void on_fwd_closed(uv_handle_t *h)
{
    struct fwd *f = h->data;
    if (--f->handles)
        return;
    if (f->prev)
        f->prev->next = f->next;
    else
        f->d->fwds = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f->q);
    free(f);
}

/* Ends f with answer (taken; NULL: none) for its asker. */
static void fwd_end(struct fwd *f, uint8_t *answer, size_t len)
{
    if (f->done) {
        free(answer);
        return;
    }
    f->done = true;
    struct tconn *tc = f->tc;
    if (tc) {
        tc->pending = NULL;
        f->tc = NULL;
    }
    if (answer && tc)
        tcp_reply(tc, answer, len);
    else if (answer && !f->tcp)
        udp_reply(f->d, (const struct sockaddr *)&f->client, answer, len);
    else if (tc)
        tconn_close(tc);
    else
        free(answer); /* its TCP client went */
    uv_close((uv_handle_t *)&f->sock, on_fwd_closed);
    uv_close((uv_handle_t *)&f->timer, on_fwd_closed);
}

static void fwd_fail(struct fwd *f, const char *why)
{
    hy_series_inc(f->d->r[R_FAILED]);
    hy_log(HY_LOG_WARN, "dns", "no resolver answered a query (%s): SERVFAIL", why);
    size_t len = 0;
    uint8_t *a = hy_dns_servfail(f->q, f->qlen, &len);
    fwd_end(f, a, len);
}

static void fwd_try(struct fwd *f);

static void on_fwd_timeout(uv_timer_t *t)
{
    struct fwd *f = t->data;
    f->up++;
    fwd_try(f);
}

static void on_fwd_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct fwd *f = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)f->buf, sizeof(f->buf));
}

static bool same_addr(const struct sockaddr *a, const struct sockaddr_storage *b)
{
    if (a->sa_family != b->ss_family)
        return false;
    if (a->sa_family == AF_INET)
        return !memcmp(&((const struct sockaddr_in *)a)->sin_addr,
                       &((const struct sockaddr_in *)b)->sin_addr, 4) &&
               ((const struct sockaddr_in *)a)->sin_port ==
                   ((const struct sockaddr_in *)b)->sin_port;
    return !memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
                   &((const struct sockaddr_in6 *)b)->sin6_addr, 16) &&
           ((const struct sockaddr_in6 *)a)->sin6_port ==
               ((const struct sockaddr_in6 *)b)->sin6_port;
}

static void on_fwd_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                        unsigned flags)
{
    struct fwd *f = h->data;
    (void)flags;
    if (f->done || n <= 0 || !from || f->up >= f->d->nups || !same_addr(from, &f->d->ups[f->up]))
        return;
    /* only a well-formed answer to this query (its id) goes back */
    uint16_t id;
    bool qr;
    if (!hy_dns_wire_ok((const uint8_t *)buf->base, (size_t)n, &id, &qr) || !qr ||
        id != (uint16_t)(f->q[0] << 8 | f->q[1]))
        return;
    uint8_t *copy = malloc((size_t)n);
    if (copy)
        memcpy(copy, buf->base, (size_t)n);
    hy_series_inc(f->d->r[R_FORWARDED]);
    fwd_end(f, copy, (size_t)n);
}

/* Asks upstream f->up, or fails when none is left. */
static void fwd_try(struct fwd *f)
{
    while (f->up < f->d->nups) {
        uv_buf_t b = uv_buf_init((char *)f->q, (unsigned)f->qlen);
        if (uv_udp_try_send(&f->sock, &b, 1, (const struct sockaddr *)&f->d->ups[f->up]) >= 0) {
            uv_timer_start(&f->timer, on_fwd_timeout, HY_DNS_TIMEOUT_MS, 0);
            return;
        }
        f->up++;
    }
    fwd_fail(f, f->d->nups ? "each timed out or failed" : "no nameserver in " RESOLV_CONF);
}

/* Forwards query q[0..len) (copied) for a UDP client (to) or TCP one (tc). */
static void forward(struct hy_dns *d, const uint8_t *q, size_t len, const struct sockaddr *to,
                    struct tconn *tc)
{
    upstreams(d);
    struct fwd *f = calloc(1, sizeof(*f));
    if (f && !(f->q = malloc(len))) {
        free(f);
        f = NULL;
    }
    if (!f) {
        hy_series_inc(d->r[R_FAILED]);
        if (tc)
            tconn_close(tc);
        return;
    }
    memcpy(f->q, q, len);
    f->qlen = len;
    f->d = d;
    if (to)
        memcpy(&f->client, to,
               to->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                         : sizeof(struct sockaddr_in));
    f->tc = tc;
    f->tcp = tc != NULL;
    if (tc)
        tc->pending = f;
    uv_udp_init(d->loop, &f->sock);
    uv_timer_init(d->loop, &f->timer);
    f->sock.data = f->timer.data = f;
    f->handles = 2;
    f->next = d->fwds;
    if (d->fwds)
        d->fwds->prev = f;
    d->fwds = f;
    int rc = uv_udp_recv_start(&f->sock, on_fwd_alloc, on_fwd_recv);
    if (rc < 0) { /* binds an ephemeral port first */
        fwd_fail(f, uv_strerror(rc));
        return;
    }
    fwd_try(f);
}

/* One query from a client: answered, forwarded, or dropped. */
static void query(struct hy_dns *d, const uint8_t *q, size_t len, const struct sockaddr *from,
                  struct tconn *tc)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    switch (hy_dns_handle(table(d), q, len, &out, &outlen)) {
    case HY_DNS_ANSWERED:
        hy_series_inc(d->r[R_LOCAL]);
        break;
    case HY_DNS_FORWARD:
        forward(d, q, len, from, tc);
        return;
    case HY_DNS_MALFORMED:
        hy_series_inc(d->r[R_MALFORMED]);
        hy_log(HY_LOG_DEBUG, "dns", "a malformed query of %zu bytes: %s", len,
               out ? "FORMERR" : "dropped");
        break;
    }
    if (!out) {
        if (tc)
            tconn_close(tc);
        return;
    }
    if (tc)
        tcp_reply(tc, out, outlen);
    else
        udp_reply(d, from, out, outlen);
}

/* ----- UDP ----- */

static void on_udp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct hy_dns *d = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)d->ubuf, sizeof(d->ubuf));
}

static void on_udp_recv(uv_udp_t *h, ssize_t n, const uv_buf_t *buf, const struct sockaddr *from,
                        unsigned flags)
{
    struct hy_dns *d = h->data;
    if (n <= 0 || !from || (flags & UV_UDP_PARTIAL) || d->stopping)
        return;
    query(d, (const uint8_t *)buf->base, (size_t)n, from, NULL);
}

/* ----- TCP ----- */

static void on_tconn_closed(uv_handle_t *h)
{
    struct tconn *tc = h->data;
    struct hy_dns *d = tc->d;
    if (tc->prev)
        tc->prev->next = tc->next;
    else
        d->tconns = tc->next;
    if (tc->next)
        tc->next->prev = tc->prev;
    free(tc);
}

static void tconn_close(struct tconn *tc)
{
    if (tc->closing)
        return;
    tc->closing = true;
    if (tc->pending) /* its answer, when it comes, has nowhere to go */
        tc->pending->tc = NULL;
    tc->pending = NULL;
    uv_close((uv_handle_t *)&tc->tcp, on_tconn_closed);
}

static void on_tcp_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct tconn *tc = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)tc->buf + tc->len, (unsigned)(sizeof(tc->buf) - tc->len));
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf);

/* Handles the next whole message read, or reads on. */
static void tcp_next(struct tconn *tc)
{
    if (tc->closing)
        return;
    if (tc->len >= 2) {
        size_t want = (size_t)tc->buf[0] << 8 | tc->buf[1];
        if (tc->len >= want + 2) {
            uint8_t q[65535];
            memcpy(q, tc->buf + 2, want);
            memmove(tc->buf, tc->buf + 2 + want, tc->len - 2 - want);
            tc->len -= 2 + want;
            uv_read_stop((uv_stream_t *)&tc->tcp); /* one query at a time */
            query(tc->d, q, want, NULL, tc);
            return;
        }
    }
    if (uv_read_start((uv_stream_t *)&tc->tcp, on_tcp_alloc, on_tcp_read) < 0)
        tconn_close(tc);
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tconn *tc = st->data;
    (void)buf;
    if (n < 0) {
        tconn_close(tc);
        return;
    }
    tc->len += (size_t)n;
    tcp_next(tc);
}

static void on_tcp_accept(uv_stream_t *server, int status)
{
    struct hy_dns *d = server->data;
    if (status < 0 || d->stopping)
        return;
    struct tconn *tc = calloc(1, sizeof(*tc));
    if (!tc) {
        hy_net_refuse(server);
        return;
    }
    tc->d = d;
    uv_tcp_init(d->loop, &tc->tcp);
    tc->tcp.data = tc;
    tc->next = d->tconns;
    if (d->tconns)
        d->tconns->prev = tc;
    d->tconns = tc;
    if (uv_accept(server, (uv_stream_t *)&tc->tcp) < 0) {
        tconn_close(tc);
        return;
    }
    tcp_next(tc);
}

/* ----- life ----- */

static int open_metrics(struct hy_dns *d, struct hy_metrics *m)
{
    static const char *const names[R_N] = {"local", "forwarded", "failed", "malformed"};
    struct hy_metric *q = hy_metric_counter(
        m, "hypha_dp_dns_queries_total",
        "DNS queries to the sidecar (transparent mode), by result: answered from the mesh's "
        "names, forwarded to a resolver and answered, failed (no resolver answered: "
        "SERVFAIL), malformed (FORMERR or dropped)",
        1, "result");
    for (int i = 0; q && i < R_N; i++)
        if (!(d->r[i] = hy_metric_series(q, names[i])))
            return HY_ENOMEM;
    return q ? 0 : HY_ENOMEM;
}

static void on_closed(uv_handle_t *h)
{
    struct hy_dns *d = h->data;
    d->handles--;
}

int hy_dns_new(uv_loop_t *loop, struct hy_agent_current *current, struct hy_metrics *m,
               uint16_t port, struct hy_dns **out)
{
    struct hy_dns *d = calloc(1, sizeof(*d));
    *out = NULL;
    if (!d)
        return HY_ENOMEM;
    d->loop = loop;
    d->current = current;
    d->port = port;
    int rc = open_metrics(d, m);
    struct sockaddr_in sa;
    uv_ip4_addr("127.0.0.1", port, &sa);
    if (rc == 0) {
        uv_udp_init(loop, &d->udp);
        d->udp.data = d;
        d->udp_init = true;
        if ((rc = uv_udp_bind(&d->udp, (const struct sockaddr *)&sa, 0)) == 0)
            rc = uv_udp_recv_start(&d->udp, on_udp_alloc, on_udp_recv);
    }
    if (rc == 0) {
        uv_tcp_init(loop, &d->tcp);
        d->tcp.data = d;
        d->tcp_init = true;
        if ((rc = uv_tcp_bind(&d->tcp, (const struct sockaddr *)&sa, 0)) == 0)
            rc = uv_listen((uv_stream_t *)&d->tcp, 128, on_tcp_accept);
    }
    *out = d; /* even when it failed: stopped and freed as always */
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dns", "cannot listen on 127.0.0.1:%u (UDP and TCP): %s",
               (unsigned)port, rc == HY_ENOMEM ? "out of memory" : uv_strerror(rc));
        return rc; /* uv codes are -errno */
    }
    hy_log(HY_LOG_INFO, "dns", "DNS on 127.0.0.1:%u (UDP and TCP): mesh names, the rest to %s",
           (unsigned)port, RESOLV_CONF);
    return 0;
}

void hy_dns_stop(struct hy_dns *d)
{
    if (!d || d->stopping)
        return;
    d->stopping = true;
    for (struct fwd *f = d->fwds; f; f = f->next)
        fwd_end(f, NULL, 0);
    for (struct tconn *tc = d->tconns; tc; tc = tc->next)
        tconn_close(tc);
    if (d->udp_init) {
        d->handles++;
        uv_close((uv_handle_t *)&d->udp, on_closed);
    }
    if (d->tcp_init) {
        d->handles++;
        uv_close((uv_handle_t *)&d->tcp, on_closed);
    }
}

void hy_dns_free(struct hy_dns *d)
{
    if (!d)
        return;
    if (d->handles || d->fwds || d->tconns)
        hy_log(HY_LOG_ERROR, "dns", "freed with handles open (a bug)");
    hy_dns_table_free(d->table);
    free(d);
}
