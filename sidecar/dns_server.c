/* The sidecar's DNS server (dns.h) on the control loop: UDP and TCP on
 * 127.0.0.1:port and [::1]:port (iptables and ip6tables send the
 * workload's port-53 traffic here). Mesh names are answered from the
 * current config's table; other queries go, as they are, to the host's
 * resolvers one after the other (HY_DNS_TIMEOUT_MS each), over UDP for a
 * UDP query and over TCP for a TCP one, and their answer back to the
 * asker; when none answers, SERVFAIL. TCP messages carry a two-byte
 * length (RFC 1035 4.2.2); a client's query is at most
 * HY_DNS_TCP_MAX_QUERY bytes, HY_DNS_TCP_MAX_CLIENTS clients at once,
 * each closed after HY_DNS_TCP_IDLE_MS of silence; at most
 * HY_DNS_MAX_INFLIGHT queries wait for an upstream. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dns.h"
#include "dns_ldns.h"
#include "dp.h"
#include "error.h"
#include "log.h"
#include "metrics.h"
#include "net.h"
#include "poison.h"

#define RESOLV_CONF "/etc/resolv.conf"
#define RESOLV_RELOAD_MS 5000 /* resolv.conf is read again after this long */
#define WARN_EVERY_MS 1000    /* a flood of bad input logs a warning a second */

enum { R_LOCAL, R_FORWARDED, R_FAILED, R_MALFORMED, R_N };

struct tconn;
struct ftcp;

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
    int uidx;                       /* UDP: the socket it came on (0 IPv4, 1 IPv6) */
    int bound;                      /* UDP: the family sock is bound to; 0 not yet */
    struct tconn *tc;               /* TCP: who asked (NULL once it went) */
    bool tcp;                       /* asked over TCP (tc or not): forwarded over TCP */
    struct ftcp *ft;                /* TCP: the connection to the upstream asked */
    uint8_t buf[65536];
};

/* A TCP connection to one upstream for one query; freed once closed. */
struct ftcp {
    struct fwd *f; /* NULL once f moved on */
    uv_tcp_t tcp;
    uv_connect_t creq;
    uv_write_t wreq;
    uint8_t hdr[2];
    size_t len;
    uint8_t buf[2 + 65535];
};

/* A TCP client: one query at a time. */
struct tconn {
    struct hy_dns *d;
    struct tconn *prev, *next;
    uv_tcp_t tcp;
    uv_timer_t idle;
    unsigned handles;
    struct fwd *pending;
    bool closing;
    char peer[64];
    size_t len;
    uint8_t buf[2 + HY_DNS_TCP_MAX_QUERY];
};

struct hy_dns {
    uv_loop_t *loop;
    struct hy_agent_current *current;
    uint64_t gen;
    struct hy_dns_table *table;
    uv_udp_t udp[2]; /* IPv4, IPv6 */
    uv_tcp_t tcp[2];
    bool udp_init[2], tcp_init[2], stopping;
    unsigned handles;
    size_t ntconns, nfwds;
    uint64_t warned_ms; /* loop ms of the last rate-limited warning */
    uint16_t port;
    struct hy_series *r[R_N];
    struct sockaddr_storage ups[HY_DNS_MAX_UPSTREAMS];
    size_t nups;
    uint64_t ups_read_ms; /* loop ms resolv.conf was read; 0: never */
    struct fwd *fwds;
    struct tconn *tconns;
    uint8_t ubuf[65536];
};

/* A warning about bad input, at most one a WARN_EVERY_MS (the rest at
 * debug level): whoever floods the port does not flood the log. */
static enum hy_log_level warn_level(struct hy_dns *d)
{
    uint64_t now = uv_now(d->loop);
    if (d->warned_ms && now - d->warned_ms < WARN_EVERY_MS)
        return HY_LOG_DEBUG;
    d->warned_ms = now ? now : 1;
    return HY_LOG_WARN;
}

static void addr_name(const struct sockaddr *sa, char *buf, size_t size)
{
    char ip[64] = "?";
    if (sa->sa_family == AF_INET6) {
        uv_ip6_name((const struct sockaddr_in6 *)sa, ip, sizeof(ip));
        snprintf(buf, size, "[%s]:%u", ip,
                 (unsigned)ntohs(((const struct sockaddr_in6 *)sa)->sin6_port));
    } else {
        uv_ip4_name((const struct sockaddr_in *)sa, ip, sizeof(ip));
        snprintf(buf, size, "%s:%u", ip,
                 (unsigned)ntohs(((const struct sockaddr_in *)sa)->sin_port));
    }
}

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

/* Sends data (taken) to a UDP client, from socket uidx. */
static void udp_reply(struct hy_dns *d, int uidx, const struct sockaddr *to, uint8_t *data,
                      size_t len)
{
    struct usend *u = malloc(sizeof(*u));
    if (!u || d->stopping) {
        free(u);
        free(data);
        return;
    }
    u->data = data;
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    if (uv_udp_send(&u->req, &d->udp[uidx], &b, 1, to, on_usent) < 0) {
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
    ldns_write_uint16(t->data, (uint16_t)len);
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
    f->d->nfwds--;
    if (f->prev)
        f->prev->next = f->next;
    else
        f->d->fwds = f->next;
    if (f->next)
        f->next->prev = f->prev;
    free(f->q);
    free(f);
}

static void on_ft_closed(uv_handle_t *h)
{
    free(h->data);
}

/* Lets go of f's TCP connection to an upstream, if any. */
static void ft_drop(struct fwd *f)
{
    struct ftcp *ft = f->ft;
    if (!ft)
        return;
    f->ft = NULL;
    ft->f = NULL; /* its callbacks, cancelled, find nobody */
    uv_close((uv_handle_t *)&ft->tcp, on_ft_closed);
}

/* Ends f with answer (taken; NULL: none) for its asker. */
static void fwd_end(struct fwd *f, uint8_t *answer, size_t len)
{
    if (f->done) {
        free(answer);
        return;
    }
    f->done = true;
    ft_drop(f);
    struct tconn *tc = f->tc;
    if (tc) {
        tc->pending = NULL;
        f->tc = NULL;
    }
    if (answer && tc)
        tcp_reply(tc, answer, len);
    else if (answer && !f->tcp)
        udp_reply(f->d, f->uidx, (const struct sockaddr *)&f->client, answer, len);
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
    ft_drop(f);
    f->up++;
    fwd_try(f);
}

/* The upstream asked over TCP failed: the next one. */
static void ft_next(struct fwd *f)
{
    ft_drop(f);
    uv_timer_stop(&f->timer);
    f->up++;
    fwd_try(f);
}

/* Is answer[0..n) a well-formed answer to f's query (its id)? */
static bool answers(const struct fwd *f, const uint8_t *answer, size_t n)
{
    ldns_pkt *a = NULL;
    bool ok = LDNS->wire2pkt(&a, answer, n) == LDNS_STATUS_OK && LDNS->pkt_qr(a) &&
              LDNS->pkt_id(a) == LDNS_ID_WIRE(f->q);
    LDNS->pkt_free(a);
    return ok;
}

static void on_ft_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct ftcp *ft = h->data;
    (void)hint;
    *buf = uv_buf_init((char *)ft->buf + ft->len, (unsigned)(sizeof(ft->buf) - ft->len));
}

static void on_ft_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct ftcp *ft = st->data;
    struct fwd *f = ft->f;
    (void)buf;
    if (!f || n == 0)
        return;
    if (n < 0) { /* closed before a whole answer */
        ft_next(f);
        return;
    }
    ft->len += (size_t)n;
    size_t ml = 0;
    switch (hy_dns_tcp_frame(ft->buf, ft->len, 65535, &ml)) {
    case HY_DNS_FRAME_MORE:
        return;
    case HY_DNS_FRAME_OK:
        if (answers(f, ft->buf + 2, ml)) {
            uint8_t *copy = malloc(ml);
            if (copy)
                memcpy(copy, ft->buf + 2, ml);
            hy_series_inc(f->d->r[R_FORWARDED]);
            fwd_end(f, copy, ml);
            return;
        }
        break;
    default:
        break;
    }
    hy_log(warn_level(f->d), "dns",
           "a resolver sent a malformed answer over TCP (%zu bytes): "
           "asking the next",
           ml);
    ft_next(f);
}

static void on_ft_written(uv_write_t *req, int status)
{
    struct ftcp *ft = req->data;
    if (ft->f && status < 0)
        ft_next(ft->f);
}

static void on_ft_connect(uv_connect_t *req, int status)
{
    struct ftcp *ft = req->data;
    struct fwd *f = ft->f;
    if (!f)
        return;
    if (status < 0) {
        ft_next(f);
        return;
    }
    ldns_write_uint16(ft->hdr, (uint16_t)f->qlen);
    uv_buf_t b[2] = {uv_buf_init((char *)ft->hdr, 2), uv_buf_init((char *)f->q, (unsigned)f->qlen)};
    ft->wreq.data = ft;
    if (uv_write(&ft->wreq, (uv_stream_t *)&ft->tcp, b, 2, on_ft_written) < 0 ||
        uv_read_start((uv_stream_t *)&ft->tcp, on_ft_alloc, on_ft_read) < 0)
        ft_next(f);
}

/* Connects to upstream to for f's query; 0 or a uv code. */
static int ft_start(struct fwd *f, const struct sockaddr *to)
{
    struct ftcp *ft = malloc(sizeof(*ft));
    if (!ft)
        return UV_ENOMEM;
    ft->f = f;
    ft->len = 0;
    uv_tcp_init(f->d->loop, &ft->tcp);
    ft->tcp.data = ft;
    ft->creq.data = ft;
    int rc = uv_tcp_connect(&ft->creq, &ft->tcp, to, on_ft_connect);
    if (rc < 0) {
        uv_close((uv_handle_t *)&ft->tcp, on_ft_closed);
        return rc;
    }
    f->ft = ft;
    return 0;
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
    if (!answers(f, (const uint8_t *)buf->base, (size_t)n))
        return;
    uint8_t *copy = malloc((size_t)n);
    if (copy)
        memcpy(copy, buf->base, (size_t)n);
    hy_series_inc(f->d->r[R_FORWARDED]);
    fwd_end(f, copy, (size_t)n);
}

/* f's UDP socket, bound to the wildcard of family the first time (it then
 * reaches upstreams of that family only); 0 or a uv code. */
static int udp_bind(struct fwd *f, int family)
{
    if (f->bound)
        return f->bound == family ? 0 : UV_EAFNOSUPPORT;
    struct sockaddr_storage any;
    if (family == AF_INET6)
        uv_ip6_addr("::", 0, (struct sockaddr_in6 *)&any);
    else
        uv_ip4_addr("0.0.0.0", 0, (struct sockaddr_in *)&any);
    int rc = uv_udp_bind(&f->sock, (const struct sockaddr *)&any, 0);
    if (rc == 0)
        rc = uv_udp_recv_start(&f->sock, on_fwd_alloc, on_fwd_recv);
    if (rc == 0)
        f->bound = family;
    return rc;
}

/* Asks upstream f->up, or fails when none is left. */
static void fwd_try(struct fwd *f)
{
    while (!f->done && f->up < f->d->nups) {
        const struct sockaddr *to = (const struct sockaddr *)&f->d->ups[f->up];
        uv_buf_t b = uv_buf_init((char *)f->q, (unsigned)f->qlen);
        if (f->tcp ? ft_start(f, to) == 0
                   : udp_bind(f, to->sa_family) == 0 && uv_udp_try_send(&f->sock, &b, 1, to) >= 0) {
            uv_timer_start(&f->timer, on_fwd_timeout, HY_DNS_TIMEOUT_MS, 0);
            return;
        }
        f->up++;
    }
    if (f->done)
        return;
    fwd_fail(f, f->d->nups ? "each timed out or failed" : "no nameserver in " RESOLV_CONF);
}

/* Forwards query q[0..len) (copied) for a UDP client (to, on socket
 * uidx) or TCP one (tc). */
static void forward(struct hy_dns *d, const uint8_t *q, size_t len, const struct sockaddr *to,
                    int uidx, struct tconn *tc)
{
    upstreams(d);
    if (d->nfwds >= HY_DNS_MAX_INFLIGHT) {
        hy_series_inc(d->r[R_FAILED]);
        hy_log(warn_level(d), "dns", "%d queries already wait for a resolver: SERVFAIL",
               HY_DNS_MAX_INFLIGHT);
        size_t n = 0;
        uint8_t *a = hy_dns_servfail(q, len, &n);
        if (tc && a)
            tcp_reply(tc, a, n);
        else if (tc)
            tconn_close(tc);
        else if (a)
            udp_reply(d, uidx, to, a, n);
        return;
    }
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
    f->uidx = uidx;
    f->tc = tc;
    f->tcp = tc != NULL;
    if (tc)
        tc->pending = f;
    uv_udp_init(d->loop, &f->sock);
    uv_timer_init(d->loop, &f->timer);
    f->sock.data = f->timer.data = f;
    f->handles = 2;
    d->nfwds++;
    f->next = d->fwds;
    if (d->fwds)
        d->fwds->prev = f;
    d->fwds = f;
    fwd_try(f);
}

/* One query from a client: answered, forwarded, or dropped. */
static void query(struct hy_dns *d, const uint8_t *q, size_t len, const struct sockaddr *from,
                  int uidx, struct tconn *tc)
{
    uint8_t *out = NULL;
    size_t outlen = 0;
    switch (hy_dns_handle(table(d), q, len, &out, &outlen)) {
    case HY_DNS_ANSWERED:
        hy_series_inc(d->r[R_LOCAL]);
        break;
    case HY_DNS_FORWARD:
        forward(d, q, len, from, uidx, tc);
        return;
    case HY_DNS_MALFORMED: {
        char peer[80];
        if (tc)
            snprintf(peer, sizeof(peer), "%s", tc->peer);
        else
            addr_name(from, peer, sizeof(peer));
        hy_series_inc(d->r[R_MALFORMED]);
        hy_log(warn_level(d), "dns", "a malformed query of %zu bytes from %s over %s: %s", len,
               peer, tc ? "TCP" : "UDP", out ? "FORMERR" : "dropped");
        break;
    }
    }
    if (!out) {
        if (tc)
            tconn_close(tc);
        return;
    }
    if (tc)
        tcp_reply(tc, out, outlen);
    else
        udp_reply(d, uidx, from, out, outlen);
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
    query(d, (const uint8_t *)buf->base, (size_t)n, from, h == &d->udp[1], NULL);
}

/* ----- TCP ----- */

static void on_tconn_closed(uv_handle_t *h)
{
    struct tconn *tc = h->data;
    struct hy_dns *d = tc->d;
    if (--tc->handles)
        return;
    d->ntconns--;
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
    uv_close((uv_handle_t *)&tc->idle, on_tconn_closed);
}

static void on_idle(uv_timer_t *t)
{
    struct tconn *tc = t->data;
    hy_log(HY_LOG_DEBUG, "dns", "TCP client %s silent for %d ms: closed", tc->peer,
           HY_DNS_TCP_IDLE_MS);
    tconn_close(tc);
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
    size_t want = 0;
    switch (hy_dns_tcp_frame(tc->buf, tc->len, HY_DNS_TCP_MAX_QUERY, &want)) {
    case HY_DNS_FRAME_OK: {
        uint8_t q[HY_DNS_TCP_MAX_QUERY];
        memcpy(q, tc->buf + 2, want);
        memmove(tc->buf, tc->buf + 2 + want, tc->len - 2 - want);
        tc->len -= 2 + want;
        uv_read_stop((uv_stream_t *)&tc->tcp); /* one query at a time */
        uv_timer_again(&tc->idle);
        query(tc->d, q, want, NULL, 0, tc);
        return;
    }
    case HY_DNS_FRAME_SHORT:
    case HY_DNS_FRAME_LONG:
        hy_series_inc(tc->d->r[R_MALFORMED]);
        hy_log(warn_level(tc->d), "dns",
               "TCP client %s sent a message of %zu bytes (a DNS message over TCP is %d to %d "
               "bytes here): closed",
               tc->peer, want, LDNS_HEADER_SIZE, HY_DNS_TCP_MAX_QUERY);
        tconn_close(tc);
        return;
    case HY_DNS_FRAME_MORE:
        break;
    }
    if (uv_read_start((uv_stream_t *)&tc->tcp, on_tcp_alloc, on_tcp_read) < 0)
        tconn_close(tc);
}

static void on_tcp_read(uv_stream_t *st, ssize_t n, const uv_buf_t *buf)
{
    struct tconn *tc = st->data;
    (void)buf;
    if (n < 0) {
        if (n != UV_EOF || tc->len)
            hy_log(HY_LOG_DEBUG, "dns", "TCP client %s: %s with %zu bytes of a message unread",
                   tc->peer, uv_strerror((int)n), tc->len);
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
    struct tconn *tc = d->ntconns < HY_DNS_TCP_MAX_CLIENTS ? calloc(1, sizeof(*tc)) : NULL;
    if (!tc) {
        hy_net_refuse(server);
        if (d->ntconns < HY_DNS_TCP_MAX_CLIENTS)
            hy_log(warn_level(d), "dns", "a TCP client refused: out of memory");
        else
            hy_log(warn_level(d), "dns", "a TCP client refused: %d are connected, the most allowed",
                   HY_DNS_TCP_MAX_CLIENTS);
        return;
    }
    tc->d = d;
    uv_tcp_init(d->loop, &tc->tcp);
    uv_timer_init(d->loop, &tc->idle);
    tc->tcp.data = tc->idle.data = tc;
    tc->handles = 2;
    d->ntconns++;
    tc->next = d->tconns;
    if (d->tconns)
        d->tconns->prev = tc;
    d->tconns = tc;
    if (uv_accept(server, (uv_stream_t *)&tc->tcp) < 0) {
        tconn_close(tc);
        return;
    }
    hy_net_peer_name(&tc->tcp, tc->peer, sizeof(tc->peer));
    uv_timer_start(&tc->idle, on_idle, HY_DNS_TCP_IDLE_MS, HY_DNS_TCP_IDLE_MS);
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

/* Listens on host:port (UDP and TCP) as socket pair i; 0 or a uv code. */
static int listen_on(struct hy_dns *d, int i, const char *host)
{
    struct sockaddr_storage sa;
    unsigned uflags = 0, tflags = 0;
    if (i == 1) {
        uv_ip6_addr(host, d->port, (struct sockaddr_in6 *)&sa);
        uflags = UV_UDP_IPV6ONLY;
        tflags = UV_TCP_IPV6ONLY;
    } else {
        uv_ip4_addr(host, d->port, (struct sockaddr_in *)&sa);
    }
    uv_udp_init(d->loop, &d->udp[i]);
    d->udp[i].data = d;
    d->udp_init[i] = true;
    int rc = uv_udp_bind(&d->udp[i], (const struct sockaddr *)&sa, uflags);
    if (rc == 0)
        rc = uv_udp_recv_start(&d->udp[i], on_udp_alloc, on_udp_recv);
    if (rc == 0) {
        uv_tcp_init(d->loop, &d->tcp[i]);
        d->tcp[i].data = d;
        d->tcp_init[i] = true;
        if ((rc = uv_tcp_bind(&d->tcp[i], (const struct sockaddr *)&sa, tflags)) == 0)
            rc = uv_listen((uv_stream_t *)&d->tcp[i], 128, on_tcp_accept);
    }
    return rc;
}

static void close_pair(struct hy_dns *d, int i)
{
    if (d->udp_init[i]) {
        d->udp_init[i] = false;
        d->handles++;
        uv_close((uv_handle_t *)&d->udp[i], on_closed);
    }
    if (d->tcp_init[i]) {
        d->tcp_init[i] = false;
        d->handles++;
        uv_close((uv_handle_t *)&d->tcp[i], on_closed);
    }
}

int hy_dns_new(uv_loop_t *loop, struct hy_agent_current *current, struct hy_metrics *m,
               uint16_t port, struct hy_dns **out)
{
    *out = NULL;
    char why[512];
    int rc = hy_dns_ldns_load(why, sizeof(why));
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dns", "no DNS on port %u: %s", (unsigned)port, why);
        return rc;
    }
    struct hy_dns *d = calloc(1, sizeof(*d));
    if (!d)
        return HY_ENOMEM;
    d->loop = loop;
    d->current = current;
    d->port = port;
    rc = open_metrics(d, m);
    if (rc == 0)
        rc = listen_on(d, 0, "127.0.0.1");
    *out = d; /* even when it failed: stopped and freed as always */
    if (rc < 0) {
        hy_log(HY_LOG_ERROR, "dns", "cannot listen on 127.0.0.1:%u (UDP and TCP): %s",
               (unsigned)port, rc == HY_ENOMEM ? "out of memory" : uv_strerror(rc));
        return rc; /* uv codes are -errno */
    }
    /* ip6tables sends IPv6 queries to [::1]; a host without IPv6 has none */
    int rc6 = listen_on(d, 1, "::1");
    bool v6 = rc6 == 0;
    if (!v6) {
        close_pair(d, 1);
        hy_log(rc6 == UV_EADDRNOTAVAIL || rc6 == UV_EAFNOSUPPORT ? HY_LOG_INFO : HY_LOG_WARN, "dns",
               "no DNS on [::1]:%u: %s; IPv4 only", (unsigned)port, uv_strerror(rc6));
    }
    char six[32] = "";
    if (v6)
        snprintf(six, sizeof(six), " and [::1]:%u", (unsigned)port);
    hy_log(HY_LOG_INFO, "dns", "DNS on 127.0.0.1:%u%s (UDP and TCP): mesh names, the rest to %s",
           (unsigned)port, six, RESOLV_CONF);
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
    close_pair(d, 0);
    close_pair(d, 1);
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
